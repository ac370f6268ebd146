package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/ccboot/ccboot/bootstrap"
)

// install is what UserData runs: put ccboot in place as a systemd unit, run
// it, and exit with its outcome so cloud-init reports it.
func install(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newFlags("install", "Copy this binary to /usr/local/bin/ccboot, write and enable ccboot.service, then start it\nand wait for the run (under --root: only write and enable). Exit with the run's outcome.", stderr)
	s, code := start(c, args, stdout, stderr)
	if s == nil {
		return code
	}
	defer s.Close()
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "ccboot install: cannot find own binary: %v\n", err)
		return exitFailed
	}
	res, installErr := s.Install(ctx, self)
	fmt.Fprintf(stdout, "ccboot install: binary %s, unit %s\n", changedWord(res.BinaryChanged), changedWord(res.UnitChanged))
	if !res.Started {
		if installErr != nil {
			fmt.Fprintf(stderr, "ccboot install: %v\n", installErr)
			return exitFailed
		}
		return exitOK
	}
	// Whatever systemctl said, the state file has the per-step story.
	report, err := s.Status(ctx, false)
	if err == nil && report != nil {
		bootstrap.PrintStatus(stdout, report)
	}
	if installErr != nil {
		fmt.Fprintf(stderr, "ccboot install: %v\n", installErr)
		return exitFailed
	}
	if report != nil && report.Failed() {
		return exitFailed
	}
	return exitOK
}

func changedWord(changed bool) string {
	if changed {
		return "updated"
	}
	return "unchanged"
}
