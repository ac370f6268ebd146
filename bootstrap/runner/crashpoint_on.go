//go:build crashhook

package runner

import (
	"path/filepath"

	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

// crashPoint shares fsroot's hook, so one process has one count of points.
// The command's base name is the detail (for chroot, the command run in
// the root): its other arguments hold the root's temp path, which differs
// between runs.
func crashPoint(site string, c Cmd) {
	name := filepath.Base(c.Name)
	if name == "chroot" && len(c.Args) > 1 {
		name += " " + filepath.Base(c.Args[1])
	}
	fsroot.CrashPoint(site, name)
}
