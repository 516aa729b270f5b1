//go:build !linux

package mesh

import "errors"

// diskUsage is only implemented on Linux, where herd agents run; elsewhere
// (a developer's laptop) the disk fields of Health stay zero.
func diskUsage(string) (total, free uint64, err error) {
	return 0, 0, errors.New("disk usage is only collected on Linux")
}
