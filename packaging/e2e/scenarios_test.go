//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// --- 2. dnf guest ----------------------------------------------------------

func testDnf(t *testing.T, s *suite) {
	seed := filepath.Join(s.work, "dnf", "seed")
	s.writeSeed(t, seed, seedOpts{dropIn: dropIn(nspawnEnv, nspawnFlags)})
	out, _ := s.boot(t, "dnf", bootOpts{
		variant: "al2023", seed: seed, probe: []string{"dnf.sh"},
		probeEnv: append([]string{"E2E_CCBOOT_FLAGS=" + nspawnFlags}, nspawnEnv...),
	})
	g := bootDir(t, out, 1)
	if got := strings.TrimSpace(g.file("os.txt")); got != "amzn 2023" {
		t.Fatalf("guest os-release %q, want amzn 2023", got)
	}
	r := g.report("state-boot.json")
	var pkg string
	for _, st := range r.Steps {
		if st.Name == "packages" {
			pkg = fmt.Sprintf("%s %v %s", st.Result, st.Changes, st.Error)
			if st.Result != "changed" || len(st.Changes) == 0 || !strings.Contains(strings.Join(st.Changes, " "), "dnf") {
				t.Errorf("packages step on the dnf guest: %s, want changed through dnf", pkg)
			}
		}
	}
	if pkg == "" {
		t.Errorf("no packages step in the state: %s", g.file("state-boot.json"))
	}
	rpmq := g.file("rpm-q.txt")
	for _, p := range []string{"unzip", "git", "jq", "docker"} {
		if !regexp.MustCompile(`(?m)^` + p + `-[0-9]`).MatchString(rpmq) {
			t.Errorf("rpm -q: %s not installed:\n%s", p, rpmq)
		}
	}
	if !strings.Contains(g.file("dnf.rpm.log"), "Installed: jq-1.7.1") {
		t.Errorf("dnf's log does not show the install:\n%s", tail(g.file("dnf.rpm.log"), 20))
	}
	// A fresh check afterwards: packages ok (dnf/rpm agree they are there).
	chk := g.report("check.out")
	if res := chk.results()["packages"]; res != "ok" {
		t.Errorf("status --check: packages %q, want ok: %s", res, g.out("check"))
	}
	if got := strings.TrimSpace(g.file("is-active.txt")); got != "active" {
		t.Errorf("ccboot on the dnf guest: %q (state: %s)", got, g.file("state-boot.json"))
	}
}

// --- 6. failure is visible ---------------------------------------------------

func testNoProfile(t *testing.T, s *suite) {
	seed := filepath.Join(s.work, "no-profile", "seed")
	// Packages and Claude Code are not what this scenario is about.
	flags := nspawnFlags + " --skip packages,claude-code"
	s.writeSeed(t, seed, seedOpts{dropIn: dropIn(nspawnEnv, flags)})
	// The mock answers like an instance without a profile: iam/info is 404.
	mock := s.mockConfig(t, "no-profile", "us-east-2", "123412341234", "unused", "aws", func(m map[string]any) {
		md := m["metadata"].(map[string]any)
		delete(md["values"].(map[string]any), "iam-info")
		md["paths"] = map[string]any{"iam-info": "/latest/meta-data/iam/no-profile-attached"}
	})
	out, _ := s.boot(t, "no-profile", bootOpts{
		seed: seed, probe: []string{"no-profile.sh"}, mockConfig: mock,
		probeEnv: append([]string{"E2E_CCBOOT_FLAGS=" + flags}, nspawnEnv...),
	})
	g := bootDir(t, out, 1)
	if st, rc := g.cloudInit(); st != "error" || rc == 0 {
		t.Errorf("cloud-init status --wait: %q exit %d, want error and non-zero", st, rc)
	}
	if got := strings.TrimSpace(g.file("is-failed.txt")); got != "failed" {
		t.Errorf("systemctl is-failed ccboot = %q, want failed", got)
	}
	if rc := g.rc("status"); rc != 1 {
		t.Errorf("ccboot status exited %d, want 1: %s", rc, g.out("status"))
	}
	st := g.file("status.out")
	line := regexp.MustCompile(`(?m)^aws-config\s+failed\b.*$`).FindString(st)
	if line == "" {
		t.Errorf("ccboot status does not show aws-config failed:\n%s", st)
	}
	if !strings.Contains(line, "readonly_role_arn") {
		t.Errorf("the aws-config failure does not name the key to set ([aws] readonly_role_arn): %q", line)
	}
	if got := strings.TrimSpace(g.file("aws-config-exists.txt")); got != "absent" {
		t.Errorf("~/.aws/config exists after the failed aws-config step:\n%s", g.file("aws-dir.txt"))
	}
	if tmp := strings.TrimSpace(g.file("temp-files.txt")); tmp != "" {
		t.Errorf("temp files left:\n%s", tmp)
	}
	out2 := g.file("cloud-init-output.log")
	if !strings.Contains(out2, "ccboot install exited") {
		t.Errorf("cloud-init-output.log does not carry UserData's error:\n%s", tail(out2, 15))
	}
}

// --- 7. checksum refusal -----------------------------------------------------

func testBadChecksum(t *testing.T, s *suite) {
	seed := filepath.Join(s.work, "bad-checksum", "seed")
	// The real sum with its first digit changed: right shape, wrong value.
	bad := []byte(s.sum)
	bad[0] = "01"[map[bool]int{true: 1, false: 0}[bad[0] == '0']]
	s.writeSeed(t, seed, seedOpts{sum: string(bad), dropIn: dropIn(nspawnEnv, nspawnFlags)})
	out, _ := s.boot(t, "bad-checksum", bootOpts{seed: seed, probe: []string{"bad-checksum.sh"}})
	g := bootDir(t, out, 1)
	if st, rc := g.cloudInit(); st != "error" || rc == 0 {
		t.Errorf("cloud-init status --wait: %q exit %d, want error and non-zero", st, rc)
	}
	paths := g.file("paths.txt")
	if got := lines(paths, "present "); len(got) != 0 {
		t.Errorf("the unverified binary left traces (so it was installed or ran): %v", got)
	}
	log := g.file("cloud-init-output.log")
	if !strings.Contains(log, "SHA-256 mismatch") || !strings.Contains(log, "NOT running it") {
		t.Errorf("cloud-init-output.log does not say why:\n%s", tail(log, 15))
	}
	// It was downloaded (so the refusal is the checksum's doing, not a
	// missing file).
	if !strings.Contains(g.file("dist-http.txt"), "GET /ccboot") {
		t.Errorf("the guest never downloaded the binary:\n%s", g.file("dist-http.txt"))
	}
}

// --- 8. interrupted bootstrap ------------------------------------------------

func testInterrupted(t *testing.T, s *suite) {
	seed := filepath.Join(s.work, "interrupted", "seed")
	s.writeSeed(t, seed, seedOpts{noUserData: true})
	out, _ := s.boot(t, "interrupted", bootOpts{
		seed: seed, probe: []string{"interrupted.sh"}, docker: true,
		probeEnv: append([]string{"E2E_CCBOOT_FLAGS=" + nspawnFlags}, nspawnEnv...),
	})
	g := bootDir(t, out, 1)
	kill := g.file("packages-kill.txt")
	if !strings.Contains(kill, "dpkg-seen=1") || !strings.Contains(kill, "ExecMainCode=2") && !strings.Contains(kill, "Result=signal") {
		t.Errorf("the packages run was not killed while dpkg ran:\n%s", kill)
	}
	t.Logf("dpkg --audit right after the kill:\n%s", g.file("dpkg-audit-after-kill.txt"))
	if rc := g.rc("packages-repair"); rc != 0 {
		t.Errorf("repair after the kill in packages exited %d:\n%s", rc, g.out("packages-repair"))
	}
	if rc := g.rc("packages-check"); rc != 0 {
		t.Errorf("status --check after that repair exited %d:\n%s", rc, g.out("packages-check"))
	}
	if a := strings.TrimSpace(g.file("dpkg-audit-end.txt")); a != "" {
		t.Errorf("dpkg --audit after repair:\n%s", a)
	}
	dpkg := g.file("dpkg.txt")
	for _, p := range []string{"unzip", "git", "jq", "nodejs", "docker.io"} {
		if !strings.Contains(dpkg, p+" install ok installed") {
			t.Errorf("package %s not installed after repair:\n%s", p, dpkg)
		}
	}
	if tmp := strings.TrimSpace(g.file("temp-files-packages.txt")); tmp != "" {
		t.Errorf("temp files after the packages kill + repair:\n%s", tmp)
	}

	point := strings.TrimSpace(g.file("aws-point.txt"))
	if !strings.Contains(point, ".aws/config") {
		t.Fatalf("no crash point for ~/.aws/config was found (points: %s)", tail(g.file("points.txt"), 40))
	}
	crash := g.file("aws-crash.txt")
	if strings.Contains(crash, "rc=0") {
		t.Errorf("the crash-hook run at %q did not die:\n%s", point, crash)
	}
	t.Logf("after the kill at %s:\n%s", point, g.file("aws-dir-after-kill.txt"))
	if rc := g.rc("aws-repair"); rc != 0 {
		t.Errorf("repair after the kill in aws-config exited %d:\n%s", rc, g.out("aws-repair"))
	}
	if rc := g.rc("aws-check"); rc != 0 {
		t.Errorf("status --check after that repair exited %d:\n%s", rc, g.out("aws-check"))
	}
	aws := g.file("aws-config")
	if strings.Contains(aws, "tampered") || len(lines(aws, "[profile claudecode-readonly]")) != 1 || len(lines(aws, "role_arn")) != 2 {
		t.Errorf("~/.aws/config after repair:\n%s", aws)
	}
	if n := len(lines(g.file("bashrc"), "# >>> ccboot aliases >>>")); n != 1 {
		t.Errorf("~/.bashrc has %d alias blocks", n)
	}
	if n := len(regexp.MustCompile(`(?m)^docker:.*\bec2-user\b`).FindAllString(g.file("group"), -1)); n != 1 {
		t.Errorf("/etc/group: %d docker lines with ec2-user", n)
	}
	if tmp := strings.TrimSpace(g.file("temp-files-end.txt")); tmp != "" {
		t.Errorf("temp files left at the end:\n%s", tmp)
	}
}

// --- 9. arm64 ------------------------------------------------------------------

// testArm64 runs the arm64 binary under qemu-aarch64-static: `plan --root`
// against a copy-on-write copy (overlayfs) of the cached guest rootfs, with
// the mock in a loopback-only netns. plan must write nothing.
func testArm64(t *testing.T, s *suite) {
	qemu, err := exec.LookPath("qemu-aarch64-static")
	if err != nil {
		t.Fatalf("qemu-aarch64-static not found (deps.sh installs qemu-user-static): %v", err)
	}
	cache, err := exec.Command(filepath.Join(s.e2eDir, "cache.sh")).Output()
	if err != nil {
		t.Fatalf("cache.sh: %v", err)
	}
	rootfs := filepath.Join(strings.TrimSpace(string(cache)), "rootfs", "debian")
	dir := filepath.Join(s.work, "arm64")
	mock := s.mockConfig(t, "arm64", "eu-west-3", "135791357913", "claudecode-ec2-armtest", "aws", nil)
	ns := fmt.Sprintf("ccboot-e2e-arm64-%d", os.Getpid())
	netns := filepath.Join(s.e2eDir, "netns.sh")
	if b, err := exec.Command(netns, "up", ns, mock).CombinedOutput(); err != nil {
		t.Fatalf("netns.sh up: %v\n%s", err, b)
	}
	t.Cleanup(func() { _ = exec.Command(netns, "down", ns).Run() })
	script := `set -eu
dir=$1 rootfs=$2 qemu=$3 bin=$4
mkdir -p "$dir/upper" "$dir/work" "$dir/merged"
mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$dir/upper,workdir=$dir/work" "$dir/merged"
mount -t proc proc "$dir/merged/proc"
rc=0
"$qemu" "$bin" plan --root "$dir/merged" --imds-endpoint http://127.0.0.1:1338 --model eu.anthropic.arm-e2e >"$dir/plan.out" 2>"$dir/plan.err" || rc=$?
echo "$rc" >"$dir/plan.rc"
"$qemu" "$bin" version >"$dir/version.out" 2>&1
umount "$dir/merged/proc"
umount "$dir/merged"
find "$dir/upper" -mindepth 1 >"$dir/upper.txt"
`
	start := time.Now()
	cmd := exec.Command(netns, "exec", ns, "unshare", "--mount", "--propagation", "private", "bash", "-c", script, "arm64", dir, rootfs, qemu, s.arm64)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("arm64 plan: %v\n%s", err, b)
	}
	t.Logf("arm64 plan under qemu-user took %.1fs", time.Since(start).Seconds())
	read := func(n string) string {
		b, _ := os.ReadFile(filepath.Join(dir, n))
		return string(b)
	}
	if v := read("version.out"); !strings.Contains(v, "linux/arm64") {
		t.Errorf("not the arm64 binary: %s", v)
	}
	if rc := strings.TrimSpace(read("plan.rc")); rc != "2" {
		t.Errorf("plan --root on a fresh rootfs exited %s, want 2 (changes pending):\n%s%s", rc, read("plan.out"), read("plan.err"))
	}
	plan := read("plan.out")
	for _, want := range []string{
		"arn:aws:iam::135791357913:role/claudecode-readonly-armtest",
		"eu-west-3", "eu.anthropic.arm-e2e",
	} {
		if !strings.Contains(plan, want) {
			t.Errorf("plan output lacks %q:\n%s", want, plan)
		}
	}
	for _, step := range []string{"packages", "claude-code", "docker-group", "swap", "profile-env", "aws-config", "aliases"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(step) + `\s+(drift|pending)\b`).MatchString(plan) {
			t.Errorf("plan does not list %s as pending:\n%s", step, plan)
		}
	}
	// plan is read-only: not even a log file or apt's binary caches.
	for _, p := range strings.Fields(read("upper.txt")) {
		if rel := strings.TrimPrefix(p, filepath.Join(dir, "upper")); rel != "" {
			t.Errorf("plan --root wrote %s into the root", rel)
		}
	}
}

// --- 3. swap and reboot (QEMU) -------------------------------------------------

func testSwapReboot(t *testing.T, s *suite) {
	if os.Getenv("CCBOOT_E2E_QEMU") == "0" {
		t.Skip("CCBOOT_E2E_QEMU=0")
	}
	// Packages take ~10 min under TCG: the VM proves what needs a kernel of
	// its own (swap, fstab, reboot); docker-group needs the docker package.
	flags := "--skip packages,claude-code,docker-group"
	seed := filepath.Join(s.work, "qemu", "seed")
	s.writeSeed(t, seed, seedOpts{dropIn: dropIn(nil, flags)})
	out, _ := s.boot(t, "qemu", bootOpts{
		qemu: true, seed: seed, probe: []string{"swap-reboot.sh"},
		probeEnv: []string{"E2E_CCBOOT_FLAGS=" + flags}, timeout: 15 * time.Minute,
	})
	_, b2 := checkSwapReboot(t, out)
	t.Logf("docker in the VM: %s (the docker package is not installed here: packages is skipped under TCG)", strings.TrimSpace(b2.file("docker-active.txt")))
}

// checkSwapReboot asserts what swap-reboot.sh collected in a VM that booted
// twice (scenario 3, and 11b on a baked image): swap at the configured size
// and one fstab line on both boots, drift by swapoff found and repaired on
// boot 1, and a boot-time run that changed nothing on boot 2.
func checkSwapReboot(t *testing.T, out string) (b1, b2 guest) {
	t.Helper()
	b1, b2 = bootDir(t, out, 1), bootDir(t, out, 2)
	if n := strings.TrimSpace(readOr(filepath.Join(out, "done"))); n != "2" {
		t.Fatalf("the VM finished after %q boots, want 2", n)
	}
	const size = "524284" // KiB in /proc/swaps for 512 MiB minus the header page
	for _, g := range []guest{b1, b2} {
		if st, rc := g.cloudInit(); st != "done" || rc != 0 {
			t.Errorf("%s: cloud-init %q exit %d", filepath.Base(g.dir), st, rc)
		}
		if sw := g.file("swaps.txt"); !regexp.MustCompile(`(?m)^/swapfile\s+file\s+` + size + `\b`).MatchString(sw) {
			t.Errorf("%s: /swapfile not active at 512 MiB:\n%s", filepath.Base(g.dir), sw)
		}
		if n := strings.TrimSpace(g.file("fstab-swap-lines.txt")); n != "1" {
			t.Errorf("%s: %s swap lines in /etc/fstab, want 1:\n%s", filepath.Base(g.dir), n, g.file("fstab"))
		}
		if got := strings.TrimSpace(g.file("is-active.txt")); got != "active" {
			t.Errorf("%s: ccboot %q", filepath.Base(g.dir), got)
		}
	}
	if st := b1.file("swapfile-stat.txt"); !strings.HasPrefix(st, "536870912 600 root:root") {
		t.Errorf("/swapfile: %s", st)
	}
	// Drift by swapoff (boot 1).
	if rc := b1.rc("swap-check"); rc != 2 || !regexp.MustCompile(`(?m)^swap\s+drift\b`).MatchString(b1.file("swap-check.out")) {
		t.Errorf("status --check after swapoff: exit %d, want 2 naming swap:\n%s", rc, b1.out("swap-check"))
	}
	if rc := b1.rc("swap-repair"); rc != 0 || b1.rc("swap-recheck") != 0 {
		t.Errorf("repair/check after swapoff: %d/%d\n%s", rc, b1.rc("swap-recheck"), b1.out("swap-repair"))
	}
	if sw := b1.file("swaps-repaired.txt"); !strings.Contains(sw, "/swapfile") {
		t.Errorf("swap not back after repair:\n%s", sw)
	}
	if n := strings.TrimSpace(b1.file("fstab-swap-lines-repaired.txt")); n != "1" {
		t.Errorf("%s swap lines in fstab after repair", n)
	}
	// Boot 2: the unit's boot-time run is a no-op.
	r1, r2 := b1.report("state-boot.json"), b2.report("state-boot.json")
	if r2.Mode != "run" || !r2.Started.After(r1.Started) {
		t.Errorf("boot 2: state is mode %q started %v; want a run newer than boot 1's (%v)", r2.Mode, r2.Started, r1.Started)
	}
	if n := r2.changes(); n != 0 {
		t.Errorf("boot-time run after reboot changed %d things: %s", n, b2.file("state-boot.json"))
	}
	if !strings.Contains(b2.file("ccboot-journal.txt"), `"changed":0`) {
		t.Errorf("the journal of boot 2 does not show a run with 0 changes:\n%s", tail(b2.file("ccboot-journal.txt"), 10))
	}
	return b1, b2
}

func readOr(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
