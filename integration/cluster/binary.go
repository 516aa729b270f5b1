package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

var (
	buildOnce sync.Once
	builtPath string
	buildErr  error
)

// build compiles cmd/herd into a temporary directory. The directory lives
// for the test process; the OS temp cleaner takes it afterwards.
func build() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "herd-bin-")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "herd")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/herd")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, msg)
	}
	return out, nil
}

// moduleRoot finds the directory holding go.mod, starting from this file.
func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate the source tree")
	}
	dir := filepath.Dir(file)
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(data), "module github.com/herd-io/herd") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod of github.com/herd-io/herd not found above %s", file)
		}
		dir = parent
	}
}
