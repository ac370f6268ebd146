//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ccboot/ccboot/packaging/distributor"
)

// Versions of the two Distributor packages scenario 14 installs over the
// suite's ccboot (which UserData installs first).
const (
	distNewVersion    = "e2e-dist-new"
	distBrokenVersion = "e2e-dist-broken"
)

// --- 14. Distributor package: upgrade, failed update, rollback, uninstall ---

func testDistributor(t *testing.T, s *suite) {
	// The newer build, and the broken one: the crash-hook build (its run
	// dies at a crash point named in the unit's environment), each with its
	// own version stamp, packed by the same code as make dist.
	for name, tags := range map[string]string{distNewVersion: "nethttpomithttp2", distBrokenVersion: "nethttpomithttp2,crashhook"} {
		bin := filepath.Join(s.work, "distributor", name, "ccboot")
		cmd := exec.Command("go", "build", "-trimpath", "-tags", tags, "-ldflags", "-s -w -X main.version="+name, "-o", bin, "./cmd/ccboot")
		cmd.Dir = s.repo
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", name, err, b)
		}
		dir := filepath.Join(s.dist, "distributor", strings.TrimPrefix(name, "e2e-dist-"))
		if _, err := distributor.Build(distributor.Options{Version: name, Epoch: time.Unix(1700000000, 0),
			Binaries: map[string]string{"amd64": bin}, Out: dir}); err != nil {
			t.Fatal(err)
		}
		if _, err := distributor.Check(dir); err != nil {
			t.Fatalf("the %s package: %v", name, err)
		}
	}

	// Packages, Claude Code and docker are not what this is about.
	flags := nspawnFlags + " --skip packages,claude-code,docker-group"
	seed := filepath.Join(s.work, "distributor", "seed")
	s.writeSeed(t, seed, seedOpts{dropIn: dropIn(nspawnEnv, flags)})
	out, _ := s.boot(t, "distributor", bootOpts{
		seed: seed, probe: []string{"distributor.sh"},
		probeEnv: append([]string{"E2E_CCBOOT_FLAGS=" + flags}, nspawnEnv...),
	})
	g := bootDir(t, out, 1)
	if st, rc := g.cloudInit(); st != "done" || rc != 0 {
		t.Fatalf("first boot with the old ccboot: cloud-init %q exit %d\n%s", st, rc, g.file("cloud-init-status.txt"))
	}
	oldVersion := g.file("boot-version.txt")
	if strings.Contains(oldVersion, distNewVersion) || !strings.HasPrefix(oldVersion, "ccboot ") {
		t.Fatalf("the old ccboot says %q", oldVersion)
	}
	bootUnit, bootState := kv(g.file("boot-unit.txt")), g.report("boot-state.json")
	conf := g.file("boot-conf.sha")

	// Upgrade: install.sh of the newer package runs the unit with the new
	// binary, exit 0; the old binary is kept; config and state are kept.
	if rc := g.rc("upgrade"); rc != 0 {
		t.Errorf("install.sh of %s: exit %d\n%s", distNewVersion, rc, g.out("upgrade"))
	}
	if v := g.file("upgrade-version.txt"); !strings.HasPrefix(v, "ccboot "+distNewVersion+" ") {
		t.Errorf("after the upgrade ccboot version = %q, want %s", v, distNewVersion)
	}
	if v := g.file("upgrade-previous.txt"); v != oldVersion {
		t.Errorf("ccboot.previous version = %q, want the old %q", v, oldVersion)
	}
	up := kv(g.file("upgrade-unit.txt"))
	if monotonic(up) <= monotonic(bootUnit) || up["Result"] != "success" || up["ActiveState"] != "active" {
		t.Errorf("after the upgrade ccboot.service %v, want a new successful run after the boot's (%v)", up, bootUnit)
	}
	upState := g.report("upgrade-state.json")
	if !upState.Complete || !upState.Started.After(bootState.Started) || upState.changes() != 0 {
		t.Errorf("the upgrade's run: complete %v started %v (boot's %v), %d changes; want a complete no-op run after the boot's",
			upState.Complete, upState.Started, bootState.Started, upState.changes())
	}
	if got := g.file("upgrade-conf.sha"); got != conf {
		t.Errorf("/etc/ccboot/ccboot.conf changed in the upgrade: %q -> %q", conf, got)
	}

	// A broken build through update.sh (the in-place path): its run fails,
	// so update.sh exits non-zero naming the rollback command.
	rollback := "sudo /usr/local/lib/ccboot/ccboot.previous install"
	if rc := g.rc("broken"); rc == 0 || !strings.Contains(g.file("broken.err"), rollback) {
		t.Errorf("update.sh of the broken build: exit %d, want non-zero naming %q\n%s", rc, rollback, g.out("broken"))
	}
	if v := g.file("broken-version.txt"); !strings.HasPrefix(v, "ccboot "+distBrokenVersion+" ") {
		t.Errorf("after the broken update ccboot version = %q", v)
	}
	if v := g.file("broken-previous.txt"); !strings.HasPrefix(v, "ccboot "+distNewVersion+" ") {
		t.Errorf("after the broken update ccboot.previous = %q, want %s", v, distNewVersion)
	}
	if got := strings.TrimSpace(g.file("broken-is-failed.txt")); got != "failed" {
		t.Errorf("after the broken update systemctl is-failed ccboot = %q, want failed (%s)", got, g.file("broken-unit.txt"))
	}

	// README's rollback command brings the good one back and runs it.
	if rc := g.rc("rollback"); rc != 0 {
		t.Errorf("%s: exit %d\n%s", rollback, rc, g.out("rollback"))
	}
	if v := g.file("rollback-version.txt"); !strings.HasPrefix(v, "ccboot "+distNewVersion+" ") {
		t.Errorf("after the rollback ccboot version = %q, want %s", v, distNewVersion)
	}
	if got := strings.TrimSpace(g.file("rollback-is-active.txt")); got != "active" {
		t.Errorf("after the rollback ccboot.service is %q, want active", got)
	}
	if rc := g.rc("rollback-status"); rc != 0 {
		t.Errorf("ccboot status after the rollback: exit %d\n%s", rc, g.out("rollback-status"))
	}
	if got := g.file("rollback-conf.sha"); got != conf {
		t.Errorf("/etc/ccboot/ccboot.conf changed along the way: %q -> %q", conf, got)
	}

	// uninstall.sh: ccboot's unit and binaries gone, what it converged kept.
	if rc := g.rc("uninstall"); rc != 0 {
		t.Errorf("uninstall.sh: exit %d\n%s", rc, g.out("uninstall"))
	}
	paths := g.file("after-uninstall.txt")
	for _, p := range []string{"/usr/local/bin/ccboot", "/usr/local/lib/ccboot", "/etc/systemd/system/ccboot.service",
		"/etc/systemd/system/multi-user.target.wants/ccboot.service"} {
		if !strings.Contains(paths, "absent "+p+"\n") {
			t.Errorf("uninstall.sh left %s:\n%s", p, paths)
		}
	}
	for _, p := range []string{"/etc/ccboot/ccboot.conf", "/var/lib/ccboot/state.json", "/etc/profile.d/claude-bedrock.sh",
		"/home/ec2-user/.aws/config", "/home/ec2-user/.bashrc"} {
		if !strings.Contains(paths, "present "+p+"\n") {
			t.Errorf("uninstall.sh removed %s, which ccboot converged:\n%s", p, paths)
		}
	}
	if got := strings.TrimSpace(g.file("after-uninstall-aliases.txt")); got != "1" {
		t.Errorf("after uninstall ~/.bashrc has %s alias blocks, want 1 (left as converged)", got)
	}
	if got := strings.TrimSpace(g.file("after-uninstall-unit.txt")); got != "LoadState=not-found" {
		t.Errorf("after uninstall systemd still knows ccboot.service: %s", got)
	}
}

func monotonic(unit map[string]string) int64 {
	n, _ := strconv.ParseInt(unit["ExecMainStartTimestampMonotonic"], 10, 64)
	return n
}
