//go:build !linux

package gpssim

import (
	"context"
	"errors"
)

// Run fails: gpssim needs Linux pseudo-terminals.
func (s *Sim) Run(context.Context) error {
	return errors.New("gpssim: needs Linux pseudo-terminals")
}
