//go:build reliability

package main

// Findings 4, 5 and 7 of the security audit (issue 14), each against the
// built binary: the run lock a local user could hold (lock-perms), a secret
// from the user's 0600 file in world-readable places (secret-leak), and the
// WaitCondition PUT following redirects or trusting look-alike hosts
// (waitcondition).

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
)

const nobody = 65534

// runAs runs name as uid:gid with a deadline, so a hang is a failure.
func runAs(t *testing.T, uid int, limit time.Duration, name string, args ...string) binRun {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9", "INVOCATION_ID=", "NOTIFY_SOCKET=", "HOME=/")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s as uid %d: %v", name, uid, err)
	}
	timer := time.AfterFunc(limit, func() { _ = cmd.Process.Kill() })
	err := cmd.Wait()
	timer.Stop()
	r := binRun{stdout: out.String(), stderr: errb.String(), took: time.Since(start), code: cmd.ProcessState.ExitCode()}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	r.signaled = cmd.ProcessState.Sys().(syscall.WaitStatus).Signaled()
	return r
}

func modeOwner(t *testing.T, p string) (fs.FileMode, uint32) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid
}

// TestReliabilityLockPerms: the run lock is root's alone. Another user can
// neither take it (flock works on a read-only descriptor) nor hang
// `status --wait` on it; a PID left in the file by a process that is not
// ccboot is not named; a lock directory someone else owns is refused.
func TestReliabilityLockPerms(t *testing.T) {
	t.Parallel()
	defer func() { figureOK(t, "lock-perms", !t.Failed()) }()
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("flock (util-linux) not installed")
	}
	imds := aemmtest.Start(t, aemmtest.Default())
	root := newRoot(t)
	openToOthers(t, root)
	bin := binForOthers(t)
	flags := []string{"--root", root, "--imds-endpoint", imds}
	if r := runBin(t, ccbootBin, nil, append([]string{"run"}, flags...)...); r.code != 0 {
		t.Fatalf("run: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	lockDir, lockFile := filepath.Join(root, "run/ccboot"), filepath.Join(root, "run/ccboot/lock")
	for p, want := range map[string]fs.FileMode{lockDir: fs.ModeDir | 0o700, lockFile: 0o600, filepath.Join(root, "var/lib/ccboot/state.json"): 0o600} {
		if mode, uid := modeOwner(t, p); mode != want || uid != 0 {
			t.Errorf("%s: %v owned by %d, want %v owned by root", p, mode, uid, want)
		}
	}

	// nobody reaches the root (control) but cannot hold the lock.
	if r := runAs(t, nobody, 10*time.Second, "cat", filepath.Join(root, "etc/os-release")); r.code != 0 {
		t.Fatalf("control: nobody cannot read the root at all (%s), so the lock check would prove nothing", r.stderr)
	}
	if r := runAs(t, nobody, 10*time.Second, "flock", "--nonblock", "--shared", lockFile, "true"); r.code == 0 {
		t.Errorf("nobody took the run lock (flock exit 0): any user could stall every run")
	}
	// status --wait as nobody: says it cannot tell, at once, never hangs.
	r := runAs(t, nobody, 30*time.Second, bin, "status", "--wait", "--timeout", "20s", "--root", root)
	if r.signaled || r.took > 10*time.Second || r.code == 0 || !strings.Contains(r.stderr, "run as root") {
		t.Errorf("status --wait as nobody: exit %d after %s (killed %v), want a quick refusal saying to run as root:\n%s%s", r.code, r.took.Round(time.Millisecond), r.signaled, r.stdout, r.stderr)
	}

	// A holder that is not ccboot (this test) with its PID in the file: the
	// waiter gives up naming no PID.
	f, err := os.OpenFile(lockFile, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	r = runBin(t, ccbootBin, nil, append([]string{"repair", "--set", "ccboot.lock_timeout=1s"}, flags...)...)
	f.Close()
	if r.code != 1 || !strings.Contains(r.stderr, "another process") || strings.Contains(r.stderr, strconv.Itoa(os.Getpid())) {
		t.Errorf("repair behind a non-ccboot holder: exit %d, want 1 naming no PID (the file says %d):\n%s", r.code, os.Getpid(), r.stderr)
	}

	// A lock directory owned by someone else is refused, not adopted.
	if err := os.Chown(lockDir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	r = runBin(t, ccbootBin, nil, append([]string{"repair"}, flags...)...)
	if r.code != 1 || !strings.Contains(r.stderr, "run/ccboot") || !strings.Contains(r.stderr, "remove it") {
		t.Errorf("repair with a lock directory owned by nobody: exit %d, want 1 naming the directory and the fix:\n%s", r.code, r.stderr)
	}
	if _, uid := modeOwner(t, lockDir); uid != nobody {
		t.Errorf("the foreign lock directory was taken over (owner now %d)", uid)
	}
}

// leakSecret looks like an AWS secret key; the audit found it quoted from
// a malformed ~/.aws/config line into state.json, status and the
// WaitCondition reason.
const leakSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

// TestReliabilitySecretLeak plants the secret in a malformed line of the
// user's 0600 ~/.aws/config, runs, and greps every output another user or
// a stack reader can see: each world-readable file in the root, `status`
// (text and JSON) run as nobody, and the WaitCondition body. The figure is
// the number of outputs that hold the secret; the goal is 0.
func TestReliabilitySecretLeak(t *testing.T) {
	t.Parallel()
	imds := aemmtest.Start(t, aemmtest.Default())
	root := newRoot(t)
	openToOthers(t, root)
	bin := binForOthers(t)
	aws := filepath.Join(root, "home/ec2-user/.aws")
	mustWrite(t, filepath.Join(aws, "config"), "[default]\nregion = eu-west-1\naws_secret_access_key "+leakSecret+"\n", 0o600)
	for _, p := range []string{aws, filepath.Join(aws, "config")} {
		if err := os.Chown(p, 1000, 1000); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(aws, 0o700); err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		bodies []string
	)
	wc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
	}))
	t.Cleanup(wc.Close)

	r := runBin(t, ccbootBin, nil, "run", "--root", root, "--imds-endpoint", imds, "--set", "ccboot.wait_condition_url="+wc.URL+"/wait")
	if r.code != 1 || !strings.Contains(stepLine(r.stdout, "aws-config"), " failed ") {
		t.Fatalf("the malformed line must fail aws-config (or the test proves nothing): exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	outputs := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil || fi.Mode().Perm()&0o004 == 0 {
			return err
		}
		b, err := os.ReadFile(p)
		outputs["world-readable "+strings.TrimPrefix(p, root+"/")] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"text", "json"} {
		s := runAs(t, nobody, 30*time.Second, bin, "status", "--format", format, "--root", root)
		outputs["status --format "+format+" as nobody"] = s.stdout + s.stderr
		if s.code == 0 || !strings.Contains(s.stderr, "run as root") {
			t.Errorf("status --format %s as nobody: exit %d, want a refusal saying to run as root:\n%s%s", format, s.code, s.stdout, s.stderr)
		}
	}
	mu.Lock()
	if len(bodies) != 1 {
		t.Errorf("the wait condition got %d signals, want 1", len(bodies))
	}
	for i, b := range bodies {
		outputs[fmt.Sprintf("WaitCondition body %d", i+1)] = b
	}
	mu.Unlock()
	hits := 0
	for name, out := range outputs {
		if strings.Contains(out, leakSecret) {
			hits++
			t.Errorf("%s holds the secret from ~/.aws/config", name)
		}
	}
	fmt.Printf("secret-leak: %d\n", hits)
	if hits > 0 {
		t.Errorf("secret-leak: %d outputs of %d hold the secret; goal 0", hits, len(outputs))
	}
}

// TestReliabilityWaitCondition: the PUT goes to the configured URL and
// nowhere else. Redirects are answers, not directions (the audit saw a 307
// to http:// carry the pre-signed URL and the body in clear); hosts that
// merely look like loopback, and user@host tricks, are refused as config
// errors before any name is looked up (the names below do not exist).
func TestReliabilityWaitCondition(t *testing.T) {
	t.Parallel()
	imds := aemmtest.Start(t, aemmtest.Default())
	var stolen, plainRequests atomic.Int32
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		plainRequests.Add(1)
		if r.URL.Path != "/wait" {
			stolen.Add(1)
		}
	}))
	t.Cleanup(plain.Close)
	var tlsPuts atomic.Int32
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-http":
			tlsPuts.Add(1)
			http.Redirect(w, r, plain.URL+"/stolen?"+r.URL.RawQuery, http.StatusTemporaryRedirect)
		case "/to-https":
			tlsPuts.Add(1)
			http.Redirect(w, r, "/stolen?"+r.URL.RawQuery, http.StatusFound)
		default:
			stolen.Add(1)
		}
	}))
	t.Cleanup(tlsSrv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"SSL_CERT_FILE=" + ca, "HTTPS_PROXY=", "https_proxy=", "HTTP_PROXY=", "http_proxy="}

	type tc struct {
		name, url string
		check     func(r binRun, root string) error
	}
	refused := func(r binRun, root string) error {
		if r.code != 3 || !strings.Contains(r.stderr, "wait_condition_url") || !strings.Contains(r.stderr, ": must ") {
			return fmt.Errorf("exit %d, want 3 with a config error naming wait_condition_url:\n%s", r.code, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(root, "var/lib/ccboot/state.json")); err == nil {
			return errors.New("refused, but state.json was written")
		}
		return nil
	}
	notFollowed := func(r binRun, _ string) error {
		if r.code != 0 || !strings.Contains(r.stderr, "redirect") {
			return fmt.Errorf("exit %d, want 0 (the run itself is fine) and a signal error naming the redirect:\n%s", r.code, r.stderr)
		}
		return nil
	}
	cases := []tc{
		{"307 from https to plain http", tlsSrv.URL + "/to-http?X-Amz-Signature=sig", notFollowed},
		{"302 to another https path", tlsSrv.URL + "/to-https?X-Amz-Signature=sig", notFollowed},
		{"host that starts with 127.", "http://127.attacker.example/x", refused},
		{"userinfo trick", "http://localhost:x@attacker.example/", refused},
		{"loopback IP as userinfo", "http://127.0.0.1@attacker.example/wait", refused},
		{"a name, not a loopback IP", "http://localhost:1/wait", refused},
		{"decimal IP", "http://2130706433/wait", refused},
		{"plain http to a loopback IP works", plain.URL + "/wait", func(r binRun, _ string) error {
			if r.code != 0 || strings.Contains(r.stderr, "signal") {
				return fmt.Errorf("exit %d, want 0 and a signal sent:\n%s", r.code, r.stderr)
			}
			return nil
		}},
	}
	var passed atomic.Int32
	defer func() {
		// Nothing may reach a redirect's target, and a redirect is not
		// retried: otherwise no case counts.
		if s, n, p := stolen.Load(), tlsPuts.Load(), plainRequests.Load(); s != 0 || n != 2 || p != 1 {
			t.Errorf("requests: %d reached a redirect's target (want 0), %d PUTs to the redirecting URLs (want 2, one each), %d to the plain loopback server (want 1)", s, n, p)
			passed.Store(0)
		}
		figure(t, "waitcondition", int(passed.Load()), len(cases))
	}()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := newRoot(t)
			r := runBin(t, ccbootBin, env, "run", "--root", root, "--imds-endpoint", imds, "--set", "ccboot.wait_condition_url="+c.url)
			if err := c.check(r, root); err != nil {
				t.Fatal(err)
			}
			passed.Add(1)
		})
	}
}
