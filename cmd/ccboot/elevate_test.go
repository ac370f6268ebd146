package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap/broker"
	"github.com/ccboot/ccboot/bootstrap/sysuser"
)

// minimalRoot is a root with the target user (uid 1000) and no config.
func minimalRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/bash\nec2-user:x:1000:1000::/home/ec2-user:/bin/bash\n",
		"etc/group":  "root:x:0:\nec2-user:x:1000:\n",
	} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func runElevate(t *testing.T, tools elevateTools, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := elevateWith(context.Background(), args, &out, &errb, tools, time.Now)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func TestElevateRefusesBadFlags(t *testing.T) {
	root := minimalRoot(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--for", "5h"}, "ccboot elevate: --for 5h0m0s: give a duration from 1m0s to 4h0m0s"},
		{[]string{"--for", "10s"}, "ccboot elevate: --for 10s: give a duration from 1m0s to 4h0m0s"},
		{[]string{"--revoke", "--", "claude"}, "ccboot elevate: --revoke takes no command"},
		{[]string{"--reason", "a\nb"}, "ccboot elevate: --reason: at most 200 characters on one line"},
	} {
		r := runElevate(t, elevateTools{SystemdRun: "/nonexistent"}, append([]string{"--root", root}, tc.args...)...)
		if r.code != exitUsage || !strings.HasPrefix(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want exit 3 and one line %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "var/lib/ccboot/approvals")); !os.IsNotExist(err) {
		t.Errorf("a refused elevate wrote the approvals directory: %v", err)
	}
}

// Security: approving is root's act; another user is refused in one line
// and nothing is written.
func TestElevateRefusesNonRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the binary as another user")
	}
	dir, err := os.MkdirTemp("", "ccboot-elevate-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	_ = os.Chmod(dir, 0o755)
	data, err := os.ReadFile(ccbootBin)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "ccboot")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "elevate", "--root", dir, "--for", "30m", "--", "true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err = cmd.Run()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != exitFailed {
		t.Fatalf("elevate as nobody: %v, stderr %q; want exit 1", err, errb.String())
	}
	if want := "ccboot elevate: approving Elevated is an admin's act: run it as root, e.g. sudo ccboot elevate --for 30m\n"; errb.String() != want {
		t.Errorf("stderr %q, want %q", errb.String(), want)
	}
	if _, err := os.Stat(filepath.Join(dir, "var")); !os.IsNotExist(err) {
		t.Errorf("a refused elevate wrote under the root: %v", err)
	}
}

// elevate records the approval before the session starts, starts it as
// the user in ccboot-elevated-N.scope in system.slice, passes its exit
// code on, and removes the approval when it ends.
func TestElevateRecordsApprovalAndRunsSession(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: approvals are root's")
	}
	root := minimalRoot(t)
	t.Setenv("SUDO_USER", "alice")
	seen := filepath.Join(t.TempDir(), "seen")
	stub := filepath.Join(t.TempDir(), "systemd-run")
	approvals := filepath.Join(root, "var/lib/ccboot/approvals")
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\" > " + seen + ".args\ncat " + approvals + "/*.json > " + seen + ".approval\nexit 7\n"
	if err := os.WriteFile(stub, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := runElevate(t, elevateTools{SystemdRun: stub}, "--root", root, "--for", "45m", "--reason", "deploy the fix", "--dir", "/home/ec2-user/app", "--", "claude", "--resume")
	if r.code != 7 {
		t.Fatalf("exit %d, want the session's 7; stdout %q stderr %q", r.code, r.stdout, r.stderr)
	}
	args, _ := os.ReadFile(seen + ".args")
	for _, want := range []string{"--scope", "--unit=ccboot-elevated-1", "--slice=system.slice", "--uid=1000", "--gid=1000",
		"--\n/bin/sh\n-c\n" + sessionScript + "\nccboot-elevate\n/home/ec2-user/app\nclaude\n--resume\n"} {
		if !strings.Contains(string(args), want) {
			t.Errorf("systemd-run args lack %q:\n%s", want, args)
		}
	}
	var a broker.Approval
	data, _ := os.ReadFile(seen + ".approval")
	if err := json.Unmarshal(data, &a); err != nil {
		t.Fatalf("no approval while the session ran: %v %q", err, data)
	}
	if a.Unit != "ccboot-elevated-1.scope" || a.UID != 1000 || a.Approver != "alice (sudo)" || a.Reason != "deploy the fix" || a.Until.Sub(a.Created) != 45*time.Minute {
		t.Errorf("approval = %+v", a)
	}
	if names, _ := filepath.Glob(filepath.Join(approvals, "*.json")); len(names) != 0 {
		t.Errorf("approval left after the session ended: %v", names)
	}
	if fi, err := os.Stat(approvals); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("approvals directory: %v %v, want 0700", fi, err)
	}
	for _, want := range []string{"Elevated approved for ec2-user's session ccboot-elevated-1.scope in /home/ec2-user/app until", "approved by alice (sudo)", "session ccboot-elevated-1.scope ended; its approval is removed"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
}

// Security: the session gets none of root's environment (root's AWS keys
// and endpoints would hand the user root's credentials), the user's own
// supplementary groups and not root's (systemd-run --scope never sets
// them), and AWS_PROFILE naming the Elevated profile, so `claude` and
// `aws` in it use Elevated as README's `-- claude --continue` expects.
func TestElevateSessionEnvironmentAndGroups(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: approvals are root's, and the stub gets its groups from elevate")
	}
	root := minimalRoot(t)
	if err := os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\ndisk:x:6:\nec2-user:x:1000:\nproject:x:1500:ec2-user,bob\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_SECRET_ACCESS_KEY", "root-secret-key")
	t.Setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9")
	t.Setenv("LD_PRELOAD", "/tmp/root-lib.so")
	t.Setenv("TERM", "xterm-256color")
	seen := filepath.Join(t.TempDir(), "seen")
	stub := filepath.Join(t.TempDir(), "systemd-run")
	script := "#!/bin/sh\nenv > " + seen + ".env\nsed -n 's/^Groups:[[:space:]]*//p' /proc/self/status > " + seen + ".groups\npwd > " + seen + ".pwd\n"
	if err := os.WriteFile(stub, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if r := runElevate(t, elevateTools{SystemdRun: stub}, "--root", root, "--for", "30m", "--", "claude", "--continue"); r.code != 0 {
		t.Fatalf("exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	env, _ := os.ReadFile(seen + ".env")
	got := map[string]string{}
	for _, l := range strings.Split(string(env), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			got[k] = v
		}
	}
	for k, v := range map[string]string{"AWS_PROFILE": "claudecode-elevated", "HOME": "/home/ec2-user", "USER": "ec2-user", "LOGNAME": "ec2-user", "TERM": "xterm-256color", "PATH": "/usr/local/bin:/usr/bin:/bin"} {
		if got[k] != v {
			t.Errorf("session %s=%q, want %q", k, got[k], v)
		}
	}
	for _, k := range []string{"AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_STS", "LD_PRELOAD", "SUDO_USER"} {
		if v, ok := got[k]; ok {
			t.Errorf("root's %s=%q reached the session", k, v)
		}
	}
	if groups, _ := os.ReadFile(seen + ".groups"); strings.TrimSpace(string(groups)) != "1000 1500" {
		t.Errorf("the session's supplementary groups are %q, want the user's own: 1000 1500", strings.TrimSpace(string(groups)))
	}
	// systemd-run itself runs from /; the user's shell enters the directory.
	if pwd, _ := os.ReadFile(seen + ".pwd"); strings.TrimSpace(string(pwd)) != "/" {
		t.Errorf("systemd-run ran in %q, want /", strings.TrimSpace(string(pwd)))
	}
}

// The session's directory: --dir as given (relative to the current
// directory), else the current directory inside the user's home, else
// the home. Only lexical: root never opens it.
func TestElevateSessionDir(t *testing.T) {
	u := sysuser.User{Name: "ec2-user", UID: 1000, GID: 1000, Home: "/home/ec2-user"}
	gone := errors.New("getwd: no such file or directory")
	for _, tc := range []struct {
		cwd     string
		cwdErr  error
		dir     string
		want    string
		wantErr string
	}{
		{"/home/ec2-user/app", nil, "", "/home/ec2-user/app", ""},
		{"/home/ec2-user", nil, "", "/home/ec2-user", ""},
		{"/usr/bin", nil, "", "/home/ec2-user", ""},          // SSM's first directory
		{"/home/ec2-user2/x", nil, "", "/home/ec2-user", ""}, // a name prefix is not inside
		{"/usr/bin", nil, "/home/ec2-user/app/../api", "/home/ec2-user/api", ""},
		{"/tmp", nil, "proj", "/tmp/proj", ""},
		{"", gone, "", "/home/ec2-user", ""},
		{"", gone, "/srv/app", "/srv/app", ""},
		{"", gone, "app", "", "--dir app: the current directory is gone"},
	} {
		got, err := sessionDir(tc.dir, tc.cwd, tc.cwdErr, u)
		if got != tc.want || (err == nil) != (tc.wantErr == "") || (err != nil && !strings.HasPrefix(err.Error(), tc.wantErr)) {
			t.Errorf("sessionDir(%q) in %q (%v) = %q, %v; want %q, %q", tc.dir, tc.cwd, tc.cwdErr, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestElevateRevokeAndStatus(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: approvals are root's")
	}
	root := minimalRoot(t)
	dir := filepath.Join(root, "var/lib/ccboot/approvals")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	for _, unit := range []string{"ccboot-elevated-1.scope", "ccboot-elevated-2.scope"} {
		data, _ := json.Marshal(broker.Approval{Unit: unit, UID: 1000, Approver: "alice (sudo)", Reason: "fix", Created: now, Until: now.Add(20 * time.Minute)})
		if err := os.WriteFile(filepath.Join(dir, unit+".json"), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st := ccboot(t, "status", "--root", root)
	if !strings.Contains(st.stdout, "elevated: ccboot-elevated-1.scope for uid 1000 until ") || !strings.Contains(st.stdout, "approved by alice (sudo): fix") {
		t.Errorf("status does not show the window:\n%s", st.stdout)
	}
	r := runElevate(t, elevateTools{SystemdRun: "/nonexistent"}, "--root", root, "--revoke")
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "ccboot elevate: revoked 2 approval(s)") {
		t.Fatalf("revoke: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if names, _ := os.ReadDir(dir); len(names) != 0 {
		t.Errorf("approvals left after --revoke: %v", names)
	}
	if st := ccboot(t, "status", "--root", root); !strings.Contains(st.stdout, "elevated: no active approval (Elevated is refused)") {
		t.Errorf("status after revoke:\n%s", st.stdout)
	}
}

// The session's script, as the user's side runs it: it enters the
// directory, then runs the command through the login shell with its
// arguments intact; a directory it cannot enter is one line naming the
// fix, and nothing runs.
func TestElevateSessionScript(t *testing.T) {
	dir := t.TempDir()
	run := func(script string, args ...string) (string, string, int) {
		cmd := exec.Command("/bin/sh", append([]string{"-c", script, "ccboot-elevate"}, args...)...)
		cmd.Env = []string{"SHELL=/bin/sh", "HOME=" + dir, "PATH=/usr/bin:/bin"}
		cmd.Dir = "/"
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		_ = cmd.Run()
		return out.String(), errb.String(), cmd.ProcessState.ExitCode()
	}
	out, errs, code := run(sessionScript, dir, "/bin/sh", "-c", `pwd; printf '[%s]' "$@"`, "sh", "a b", "$HOME", "")
	if want := dir + "\n[a b][$HOME][]"; code != 0 || out != want {
		t.Errorf("session script: exit %d, stdout %q (stderr %q), want %q", code, out, errs, want)
	}
	out, errs, code = run(sessionScript, dir+"/missing", "/bin/sh", "-c", "echo ran")
	if code != 1 || out != "" || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "cannot enter "+dir+"/missing; give --dir a directory the user can open") {
		t.Errorf("missing directory: exit %d, stdout %q, stderr %q; want exit 1 and one line naming --dir", code, out, errs)
	}
	if out, _, code := run(sessionShellScript, dir); code != 0 || out != "" {
		t.Errorf("login shell without a terminal: exit %d, stdout %q", code, out)
	}
}
