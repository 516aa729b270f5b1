package cli

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"

	ucli "github.com/urfave/cli/v2"
)

func keygenCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "keygen",
		Usage: "print a new random cluster gossip key",
		Description: `Prints a 32-byte AES key in base64 for --encrypt. Every node of a cluster needs
the same key; keep it secret (a file readable by root only).

  herd keygen > /etc/herd/key && chmod 600 /etc/herd/key`,
		Action: func(c *ucli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			key := make([]byte, 32)
			if _, err := rand.Read(key); err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			_, err := fmt.Fprintln(c.App.Writer, base64.StdEncoding.EncodeToString(key))
			return err
		},
	}
}
