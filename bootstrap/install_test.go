package bootstrap

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/unit"
)

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
