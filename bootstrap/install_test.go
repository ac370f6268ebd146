package bootstrap

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/unit"
	"go.uber.org/zap"

	"github.com/ccboot/ccboot/bootstrap/fsroot"
	"github.com/ccboot/ccboot/bootstrap/metadata"
	"github.com/ccboot/ccboot/bootstrap/runner"
)

// TestInstallRerunsUnitWhenBinaryChanges: on a live system where
// ccboot.service already ran (RemainAfterExit keeps it active, so start
// alone does nothing), installing a different binary restarts the unit so
// the new binary runs now, before install returns; installing the same
// binary again only starts it (a no-op when active). A failed re-run is
// install's error.
func TestInstallRerunsUnitWhenBinaryChanges(t *testing.T) {
	sys, err := fsroot.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sys.Close() })
	fake := &runner.Fake{}
	var restartErr bool
	fake.On("systemctl try-restart ccboot.service", func(c runner.Cmd) (runner.Result, error) {
		if restartErr {
			return runner.Result{ExitCode: 1}, &runner.ExitError{Cmd: c.String(), Code: 1, Stderr: "Job for ccboot.service failed."}
		}
		return runner.Result{}, nil
	})
	fake.OnOutput("systemctl ", "")
	// Root "/" makes the session live (systemctl without --root); the
	// files still go to the temp tree through Sys.
	s := &Session{Env: &Env{Root: "/", Sys: sys, Run: fake, Meta: metadata.Static{}, Log: zap.NewNop(), Config: DefaultConfig(), Progress: func(string) {}}}
	bin := filepath.Join(t.TempDir(), "ccboot")
	install := func(content string) ([]string, error) {
		t.Helper()
		if err := os.WriteFile(bin, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
		before := len(fake.Calls())
		_, err := s.Install(context.Background(), bin)
		var unitCalls []string
		for _, c := range fake.Calls()[before:] {
			if strings.Contains(c, "ccboot.service") && !strings.Contains(c, "enable") {
				unitCalls = append(unitCalls, c)
			}
		}
		return unitCalls, err
	}
	if _, err := install("v1"); err != nil {
		t.Fatal(err)
	}
	got, err := install("v1")
	if err != nil || strings.Join(got, "; ") != "systemctl start ccboot.service" {
		t.Errorf("install of the same binary: %v, %v; want only a start", got, err)
	}
	got, err = install("v2")
	if err != nil || strings.Join(got, "; ") != "systemctl try-restart ccboot.service; systemctl start ccboot.service" {
		t.Errorf("install of a new binary: %v, %v; want try-restart (the new binary runs now), then start", got, err)
	}
	restartErr = true
	if _, err := install("v3"); err == nil || !strings.Contains(err.Error(), "ccboot.service failed") {
		t.Errorf("install whose re-run fails: %v, want ccboot.service failed", err)
	}
}

// The unit's sandbox must leave writable what a step writes under it. With
// ProtectKernelTunables=yes alone /proc/sys is read-only, and the
// user-privileges step's `sysctl -w kernel.yama.ptrace_scope=1` failed
// EACCES at the first boot of an enforced instance (e2e scenario 13q, on a
// kernel with Yama).
func TestUnitFileLeavesPtraceScopeWritable(t *testing.T) {
	opts, err := unit.DeserializeOptions(bytes.NewReader(UnitFile()))
	if err != nil {
		t.Fatal(err)
	}
	var protected bool
	var writable []string
	for _, o := range opts {
		if o.Section != "Service" {
			continue
		}
		switch o.Name {
		case "ProtectKernelTunables":
			protected = o.Value == "yes"
		case "ReadWritePaths":
			writable = append(writable, strings.Fields(o.Value)...)
		}
	}
	if !protected {
		t.Skip("ProtectKernelTunables is off: every tunable is writable")
	}
	// "-": a kernel without Yama has no such directory, and the unit must
	// still start there (user-privileges then says why enforced mode fails).
	if !slices.Contains(writable, "-"+YamaSysctlDir) {
		t.Errorf("ccboot.service has ProtectKernelTunables=yes but ReadWritePaths %q lacks -%s: user-privileges cannot set kernel.yama.ptrace_scope in the unit", writable, YamaSysctlDir)
	}
}
