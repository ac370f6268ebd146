//go:build linux

package steps

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/nstest"
	"github.com/ccboot/ccboot/bootstrap/runner"
)

// The proof Check relies on, against the real sudo: in a mount namespace
// of its own the test puts a cloud-init style rule for nobody in
// /etc/sudoers.d (a private copy bound over the host's), and proveNoSudo
// must fail naming the rule; with the rule removed the way Apply removes it
// (withoutUserRules, checked by the real visudo) it must pass.
func TestUserPrivilegesSudoProofWithRealSudo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes a mount namespace")
	}
	for _, tool := range []string{"sudo", "visudo"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (packaging/dev-deps.sh installs sudo)", tool)
		}
	}
	if fi, err := os.Stat("/etc/sudoers.d"); err != nil || !fi.IsDir() {
		t.Skip("no /etc/sudoers.d to stand in for")
	}
	dir := t.TempDir()
	rule := filepath.Join(dir, "90-cloud-init-users")
	content := "# User rules for nobody\nnobody ALL=(ALL) NOPASSWD:ALL\n"
	if err := os.WriteFile(rule, []byte(content), 0o440); err != nil {
		t.Fatal(err)
	}
	env := &bootstrap.Env{Run: &runner.Exec{}}
	ctx := context.Background()
	// The bind mount lives in a mount namespace of this test's alone, so
	// nothing else ever sees the stand-in.
	nstest.Run(t, syscall.CLONE_NEWNS, func() {
		if err := syscall.Mount(dir, "/etc/sudoers.d", "", syscall.MS_BIND, ""); err != nil {
			t.Errorf("bind %s over /etc/sudoers.d: %v", dir, err)
			return
		}
		err := proveNoSudo(ctx, env, "nobody")
		if err == nil || !strings.Contains(err.Error(), "nobody still has sudo rules (sudo -l -U nobody lists (ALL) NOPASSWD: ALL)") || !strings.Contains(err.Error(), "visudo") {
			t.Errorf("with cloud-init's rule: %v", err)
		}
		kept, removed := withoutUserRules([]byte(content), "nobody")
		if !removed {
			t.Error("withoutUserRules kept nobody's rule")
		}
		if _, err := env.Run.Run(ctx, runner.Cmd{Name: "visudo", Args: []string{"-c", "-q", "-f", "-"}, Stdin: kept}); err != nil {
			t.Errorf("visudo refuses the rewritten file: %v", err)
		}
		if err := os.WriteFile(rule, kept, 0o440); err != nil {
			t.Error(err)
			return
		}
		if err := proveNoSudo(ctx, env, "nobody"); err != nil {
			t.Errorf("with the rule removed: %v", err)
		}
	})
}
