package main

// Blackbox tests: build the real binary, run it against a throwaway root and
// AWS's metadata mock on loopback, and look only at exit codes, output and
// the files it left.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
	"github.com/ccboot/ccboot/steps/claudetest"
)

var ccbootBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ccboot-bin")
	if err != nil {
		panic(err)
	}
	ccbootBin = filepath.Join(dir, "ccboot")
	build := exec.Command("go", "build", "-trimpath", "-tags", "nethttpomithttp2", "-o", ccbootBin, ".") // as make dist
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build ccboot: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// managedFiles are the files the steps own, relative to the root.
var managedFiles = []string{
	"etc/profile.d/claude-bedrock.sh",
	"etc/claude-code/managed-settings.json",
	"etc/fstab",
	"etc/group",
	"swapfile",
	"home/ec2-user/.aws/config",
	"home/ec2-user/.bashrc",
}

// newRoot builds a root that looks like a freshly launched Debian instance
// whose image already carries the packages and Claude Code (so the package
// steps are checked for real against dpkg's database and npm's layout, and
// have nothing to install; Claude Code in ccboot's native layout), but
// nothing ccboot configures.
func newRoot(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: ccboot chowns files to the target user")
	}
	for _, tool := range []string{"groupadd", "usermod", "systemctl", "mkswap", "fallocate"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	root := t.TempDir()
	w := func(name, content string, mode os.FileMode) {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	w("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n", 0o644)
	w("etc/passwd", "root:x:0:0:root:/root:/bin/bash\nec2-user:x:1000:1000::/home/ec2-user:/bin/bash\n", 0o644)
	w("etc/group", "root:x:0:\nec2-user:x:1000:\n", 0o644)
	w("etc/shadow", "root:*:20000:0:99999:7:::\nec2-user:!:20000:0:99999:7:::\n", 0o640)
	w("etc/gshadow", "root:*::\nec2-user:!::\n", 0o640)
	w("etc/fstab", "# static file system information\nUUID=1234 / ext4 defaults 0 1\n", 0o644)
	var status strings.Builder
	// nftables and the rootless-docker step's tools too, which enforced
	// mode adds to the package set on Debian.
	for _, p := range []string{"unzip", "git", "jq", "nodejs", "npm", "docker.io", "nftables", "rootlesskit", "slirp4netns", "uidmap", "dbus-user-session"} {
		fmt.Fprintf(&status, "Package: %s\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n\n", p)
	}
	w("var/lib/dpkg/status", status.String(), 0o644)
	w("usr/lib/systemd/system/docker.service", "[Unit]\nDescription=Docker\n[Service]\nExecStart=/usr/bin/dockerd\n[Install]\nWantedBy=multi-user.target\n", 0o644)
	// An x86-64 /bin/sh tells ccboot the root's platform.
	w("usr/bin/dash", string(claudetest.ELFHeader("x64")), 0o755)
	if err := os.Symlink("usr/bin", filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("dash", filepath.Join(root, "usr/bin/sh")); err != nil {
		t.Fatal(err)
	}
	if err := claudetest.Preinstall(root, "/usr/local", bootstrap.DefaultClaudeCodeVersion, claudetest.Executable(bootstrap.DefaultClaudeCodeVersion, 4096)); err != nil {
		t.Fatal(err)
	}
	w("home/ec2-user/.bashrc", "# ~/.bashrc\nexport EDITOR=vi\n", 0o644)
	if err := os.Chown(filepath.Join(root, "home/ec2-user"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(root, "home/ec2-user/.bashrc"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	return root
}

type result struct {
	code           int
	stdout, stderr string
}

func ccboot(t *testing.T, args ...string) result {
	t.Helper()
	return ccbootEnv(t, nil, args...)
}

// ccbootEnv runs the binary with extra environment variables.
func ccbootEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(ccbootBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// Never let an ambient setting point the binary at a real IMDS.
	cmd.Env = append(append(os.Environ(), "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9", "INVOCATION_ID=", "NOTIFY_SOCKET="), env...)
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("ccboot %v: %v", args, err)
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
}

type fileStamp struct {
	ino   uint64
	mtime time.Time
}

func stamps(t *testing.T, root string) map[string]fileStamp {
	t.Helper()
	m := map[string]fileStamp{}
	for _, f := range managedFiles {
		fi, err := os.Stat(filepath.Join(root, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		m[f] = fileStamp{fi.Sys().(*syscall.Stat_t).Ino, fi.ModTime()}
	}
	return m
}

func statusJSON(t *testing.T, args ...string) (bootstrap.Report, int) {
	t.Helper()
	r := ccboot(t, append([]string{"status", "--format", "json"}, args...)...)
	var rep bootstrap.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("status json: %v\n%s%s", err, r.stdout, r.stderr)
	}
	return rep, r.code
}

func TestBlackboxRunTwiceSecondChangesNothing(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	imds := aemmtest.Start(t, aemmtest.Default())
	flags := []string{"--root", root, "--imds-endpoint", imds}

	first := ccboot(t, append([]string{"run"}, flags...)...)
	if first.code != 0 {
		t.Fatalf("first run exit %d\n%s%s", first.code, first.stdout, first.stderr)
	}
	for _, want := range []string{"profile-env   changed", "aws-config    changed", "aliases       changed", "swap          changed", "docker-group  changed", "packages      ok", "claude-code   ok", "imds-filter   ok"} {
		if !strings.Contains(first.stdout, want) {
			t.Errorf("first run output lacks %q:\n%s", want, first.stdout)
		}
	}
	before := stamps(t, root)
	time.Sleep(20 * time.Millisecond) // an mtime change would be visible

	second := ccboot(t, append([]string{"repair"}, flags...)...)
	if second.code != 0 || !strings.Contains(second.stdout, "done: 0 changed, 12 ok") {
		t.Fatalf("second run exit %d, want 0 changes:\n%s%s", second.code, second.stdout, second.stderr)
	}
	after := stamps(t, root)
	for f, b := range before {
		if after[f] != b {
			t.Errorf("%s was rewritten by a no-op run (inode %d->%d, mtime %v->%v)", f, b.ino, after[f].ino, b.mtime, after[f].mtime)
		}
	}
	if plan := ccboot(t, append([]string{"plan"}, flags...)...); plan.code != 0 {
		t.Errorf("plan after convergence exit %d:\n%s", plan.code, plan.stdout)
	}
	rep, code := statusJSON(t, flags...)
	if code != 0 || !rep.Complete || rep.InstanceID != "i-0123456789abcdef0" || len(rep.Steps) != 12 {
		t.Fatalf("status exit %d: %+v", code, rep)
	}
	for _, s := range rep.Steps {
		if !s.Result.Succeeded() {
			t.Errorf("status: %s %s", s.Name, s.Result)
		}
	}

	// What the files say.
	aws, _ := os.ReadFile(filepath.Join(root, "home/ec2-user/.aws/config"))
	for _, want := range []string{"role_arn = arn:aws:iam::111122223333:role/claudecode-readonly-demo", "credential_source = Ec2InstanceMetadata", "source_profile = claudecode-readonly", "region = eu-west-1"} {
		if !strings.Contains(string(aws), want) {
			t.Errorf("aws config lacks %q:\n%s", want, aws)
		}
	}
	fi, _ := os.Stat(filepath.Join(root, "home/ec2-user/.aws/config"))
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o600 || st.Uid != 1000 {
		t.Errorf("aws config mode %v uid %d", fi.Mode().Perm(), st.Uid)
	}
	fstab, _ := os.ReadFile(filepath.Join(root, "etc/fstab"))
	if n := strings.Count(string(fstab), "/swapfile"); n != 1 {
		t.Errorf("fstab has %d swapfile lines:\n%s", n, fstab)
	}
	group, _ := os.ReadFile(filepath.Join(root, "etc/group"))
	if !strings.Contains(string(group), "docker:x:") || !strings.Contains(string(group), "ec2-user") {
		t.Errorf("group file:\n%s", group)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/docker.service")); err != nil {
		t.Errorf("docker.service not enabled: %v", err)
	}
}

func TestBlackboxDriftIsReportedAndRepaired(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	imds := aemmtest.Start(t, aemmtest.Default())
	flags := []string{"--root", root, "--imds-endpoint", imds}
	if r := ccboot(t, append([]string{"run"}, flags...)...); r.code != 0 {
		t.Fatalf("run: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	os.Remove(filepath.Join(root, "etc/profile.d/claude-bedrock.sh"))
	bashrc := filepath.Join(root, "home/ec2-user/.bashrc")
	b, _ := os.ReadFile(bashrc)
	os.WriteFile(bashrc, bytes.Replace(b, []byte("claudecode-elevated"), []byte("oops"), 1), 0o644)

	rep, code := statusJSON(t, append([]string{"--check"}, flags...)...)
	if code != 2 {
		t.Fatalf("status --check exit %d, want 2 (drift)", code)
	}
	drifted := map[string]bool{}
	for _, s := range rep.Steps {
		if s.Result == bootstrap.ResultDrift {
			drifted[s.Name] = true
		}
	}
	if !drifted["profile-env"] || !drifted["aliases"] || len(drifted) != 2 {
		t.Fatalf("drifted steps %v, want profile-env and aliases", drifted)
	}
	// run trusts what already converged on this instance; repair re-checks.
	if r := ccboot(t, append([]string{"repair"}, flags...)...); r.code != 0 || !strings.Contains(r.stdout, "2 changed") {
		t.Fatalf("repair: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, code := statusJSON(t, append([]string{"--check"}, flags...)...); code != 0 {
		t.Fatalf("status --check after repair exit %d", code)
	}
}

func TestBlackboxFailureIsVisibleAndNamesTheFix(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	inst := aemmtest.Default()
	inst.ProfileARN = "" // no instance profile: role ARNs cannot be derived
	imds := aemmtest.Start(t, inst)
	flags := []string{"--root", root, "--imds-endpoint", imds}
	r := ccboot(t, append([]string{"run"}, flags...)...)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	rep, code := statusJSON(t, flags...)
	st, _ := rep.Step("aws-config")
	if code != 1 || st.Result != bootstrap.ResultFailed || !strings.Contains(st.Error, "readonly_role_arn") {
		t.Fatalf("status exit %d, aws-config %+v", code, st)
	}
	if _, err := os.Stat(filepath.Join(root, "home/ec2-user/.aws/config")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("aws config half-written after failure")
	}
	// The other steps still converged.
	if s, _ := rep.Step("profile-env"); s.Result != bootstrap.ResultChanged {
		t.Fatalf("profile-env %s", s.Result)
	}
	text := ccboot(t, append([]string{"status"}, flags...)...)
	if !strings.Contains(text.stdout, "aws-config    failed") {
		t.Fatalf("status text:\n%s", text.stdout)
	}
}

func TestBlackboxBadConfigWritesNothing(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	os.MkdirAll(filepath.Join(root, "etc/ccboot"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/ccboot/ccboot.conf"), []byte("[swap]\nsize = -1G\n"), 0o644)
	var before []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error { before = append(before, p); return nil })
	r := ccboot(t, "run", "--root", root, "--imds-endpoint", "http://127.0.0.1:9")
	if r.code != 3 {
		t.Fatalf("exit %d, want 3", r.code)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "ccboot.conf: [swap] size") {
		t.Fatalf("stderr %q: want one line naming file and key", r.stderr)
	}
	var after []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error { after = append(after, p); return nil })
	if len(after) != len(before) {
		t.Fatalf("a rejected config still wrote files: %d -> %d entries", len(before), len(after))
	}
	os.Remove(filepath.Join(root, "etc/ccboot/ccboot.conf"))
	if r := ccboot(t, "run", "--root", root, "--skip", "nosuchstep"); r.code != 3 || !strings.Contains(r.stderr, "unknown step") {
		t.Fatalf("unknown step: %d %q", r.code, r.stderr)
	}
	if r := ccboot(t, "frobnicate"); r.code != 3 {
		t.Fatalf("unknown command exit %d", r.code)
	}
}

func TestBlackboxVersionAndHelp(t *testing.T) {
	t.Parallel()
	if r := ccboot(t, "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "ccboot ") {
		t.Fatalf("version: %d %q", r.code, r.stdout)
	}
	for _, sub := range []string{"run", "repair", "plan", "status", "install"} {
		r := ccboot(t, sub, "--help")
		if r.code != 0 || !strings.Contains(r.stderr, "Usage: ccboot "+sub) {
			t.Errorf("%s --help: %d %q", sub, r.code, r.stderr)
		}
	}
}

func TestBlackboxInstallUnderRootWritesAndEnablesUnit(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	r := ccboot(t, "install", "--root", root, "--imds-endpoint", "http://127.0.0.1:9")
	if r.code != 0 {
		t.Fatalf("install: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	unit, err := os.ReadFile(filepath.Join(root, bootstrap.UnitPath))
	if err != nil || !bytes.Equal(unit, bootstrap.UnitFile()) {
		t.Fatalf("unit: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/ccboot.service")); err != nil {
		t.Fatalf("not enabled: %v", err)
	}
	self, _ := os.ReadFile(ccbootBin)
	installed, _ := os.ReadFile(filepath.Join(root, bootstrap.InstalledBinary))
	if !bytes.Equal(self, installed) {
		t.Fatal("installed binary differs")
	}
	again := ccboot(t, "install", "--root", root, "--imds-endpoint", "http://127.0.0.1:9")
	if again.code != 0 || !strings.Contains(again.stdout, "binary unchanged, unit unchanged") {
		t.Fatalf("second install: %d %q", again.code, again.stdout)
	}
}

func TestBlackboxStatusWait(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	imds := aemmtest.Start(t, aemmtest.Default())
	flags := []string{"--root", root, "--imds-endpoint", imds}

	// Nothing has run: --wait gives up at its timeout and says so.
	start := time.Now()
	r := ccboot(t, append([]string{"status", "--wait", "--timeout", "500ms"}, flags...)...)
	if r.code != 2 || !strings.Contains(r.stderr, "no finished ccboot run yet") || time.Since(start) > 10*time.Second {
		t.Fatalf("wait on a fresh root: exit %d %q after %s", r.code, r.stderr, time.Since(start))
	}

	// A run in progress: --wait returns only once it has finished.
	run := exec.Command(ccbootBin, append([]string{"run"}, flags...)...)
	run.Env = append(os.Environ(), "INVOCATION_ID=", "NOTIFY_SOCKET=")
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	waited := ccboot(t, append([]string{"status", "--wait", "--timeout", "60s", "--format", "json"}, flags...)...)
	runErr := run.Wait()
	if runErr != nil || waited.code != 0 {
		t.Fatalf("run: %v; status --wait exit %d: %s%s", runErr, waited.code, waited.stdout, waited.stderr)
	}
	var rep bootstrap.Report
	if err := json.Unmarshal([]byte(waited.stdout), &rep); err != nil || !rep.Complete || rep.Count(bootstrap.ResultPending) != 0 {
		t.Fatalf("status --wait returned before the run finished: %v %+v", err, rep)
	}
}

// plan and status are read-only: on a fresh root they leave no file behind,
// not even a log.
func TestBlackboxPlanAndStatusWriteNothing(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	imds := aemmtest.Start(t, aemmtest.Default())
	var before []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error { before = append(before, p); return nil })
	if r := ccboot(t, "plan", "--root", root, "--imds-endpoint", imds); r.code != 2 {
		t.Fatalf("plan on a fresh root: exit %d, want 2\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := ccboot(t, "status", "--check", "--root", root, "--imds-endpoint", imds); r.code != 2 {
		t.Fatalf("status --check on a fresh root: exit %d, want 2", r.code)
	}
	var after []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error { after = append(after, p); return nil })
	if len(after) != len(before) {
		t.Fatalf("plan/status wrote files: %d -> %d entries", len(before), len(after))
	}
}
