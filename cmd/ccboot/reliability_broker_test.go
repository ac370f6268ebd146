//go:build reliability

package main

// The credential broker under bad input and hostile callers, as built:
// `ccboot broker` on a real unix socket, `ccboot credentials` and a raw
// client as other uids (SO_PEERCRED is the kernel's), AWS's metadata mock
// and the fake STS on loopback, and an approved session's cgroup made for
// real. Prints broker-faults: N/N.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap/broker"
	"github.com/ccboot/ccboot/bootstrap/doctor/doctortest"
	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
)

type brokerBed struct {
	root, socket   string
	bin, rawClient string // runnable by other uids
	log            *safeBuffer
	fake           *doctortest.Fake
}

// brokerRoot is a root with the target user and nothing else ccboot needs
// for the broker: the config's defaults, role ARNs derived from the mock's
// instance profile (claudecode-ec2-demo).
func brokerRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	openToOthers(t, root)
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

// startBroker runs `ccboot broker` against stsURL until the test ends.
func startBroker(t *testing.T, root, imds, stsURL, bin, rawClient string) *brokerBed {
	t.Helper()
	b := &brokerBed{root: root, socket: filepath.Join(root, "broker-"+fmt.Sprint(time.Now().UnixNano())+".sock"), bin: bin, rawClient: rawClient, log: &safeBuffer{}}
	cmd := exec.Command(ccbootBin, "broker", "--root", root, "--imds-endpoint", imds, "--socket", b.socket)
	cmd.Env = append(os.Environ(), "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9", "INVOCATION_ID=", "NOTIFY_SOCKET=",
		"AWS_ENDPOINT_URL_STS="+stsURL, "AWS_ENDPOINT_URL=http://127.0.0.1:9")
	cmd.Stdout, cmd.Stderr = b.log, b.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("broker did not stop on SIGTERM within 10s")
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if fi, err := os.Stat(b.socket); err == nil && fi.Mode()&os.ModeSocket != 0 {
			if fi.Mode().Perm() != 0o666 {
				t.Fatalf("socket mode %v, want 0666 (the broker decides by SO_PEERCRED)", fi.Mode().Perm())
			}
			return b
		}
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			t.Fatalf("broker did not listen on %s:\n%s", b.socket, b.log.String())
		}
	}
}

// credentials runs `ccboot credentials TIER` as uid, in cgroupFD's cgroup when >= 0.
func (b *brokerBed) credentials(t *testing.T, uid int, tier string, cgroupFD int) binRun {
	t.Helper()
	cmd := exec.Command(b.bin, "credentials", "--socket", b.socket, tier)
	attr := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	if cgroupFD >= 0 {
		attr.UseCgroupFD, attr.CgroupFD = true, cgroupFD
	}
	cmd.SysProcAttr = attr
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("ccboot credentials: %v", err)
	}
	return binRun{stdout: out.String(), stderr: errb.String(), code: cmd.ProcessState.ExitCode(), took: time.Since(start)}
}

// raw runs the raw client as the target user.
func (b *brokerBed) raw(t *testing.T, args ...string) string {
	t.Helper()
	r := runAs(t, brokerUser, 30*time.Second, b.rawClient, append([]string{b.socket}, args...)...)
	return strings.TrimSpace(r.stdout)
}

func (b *brokerBed) logged(msg string) bool {
	return strings.Contains(b.log.String(), `"msg":"`+msg+`"`)
}

func oneLineErr(r binRun, prefix string) error {
	line := strings.TrimSuffix(r.stderr, "\n")
	switch {
	case r.code != 1:
		return fmt.Errorf("exit %d, want 1 (stdout %q, stderr %q)", r.code, r.stdout, r.stderr)
	case strings.Contains(line, "\n") || !strings.HasPrefix(line, prefix):
		return fmt.Errorf("stderr %q, want one line starting %q", r.stderr, prefix)
	case r.stdout != "":
		return fmt.Errorf("stdout %q on a refusal", r.stdout)
	}
	return nil
}

func validCreds(r binRun) error {
	var c struct {
		Version                                                int
		AccessKeyId, SecretAccessKey, SessionToken, Expiration string
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &c) != nil || c.Version != 1 || c.AccessKeyId == "" || c.SessionToken == "" {
		return fmt.Errorf("exit %d, stdout %q, stderr %q: want credential_process JSON", r.code, r.stdout, r.stderr)
	}
	if _, err := time.Parse(time.RFC3339, c.Expiration); err != nil {
		return fmt.Errorf("Expiration %q: %v", c.Expiration, err)
	}
	return nil
}

func TestReliabilityBrokerFaults(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: callers run as other uids")
	}
	imds := aemmtest.Start(t, aemmtest.Default())
	fake := doctortest.New(t, "111122223333", "eu-west-1")
	// Enforced mode's trust: Elevated trusts only the instance role.
	fake.Set(func(f *doctortest.Fake) {
		f.Trust["claudecode-elevated-demo"] = "claudecode-ec2-demo"
	})
	root := brokerRoot(t)
	bin := binForOthers(t)
	rawClient := filepath.Join(filepath.Dir(bin), "brokerclient")
	if out, err := exec.Command("go", "build", "-o", rawClient, "./testdata/brokerclient").CombinedOutput(); err != nil {
		t.Fatalf("build brokerclient: %v\n%s", err, out)
	}
	b := startBroker(t, root, imds, fake.URL, bin, rawClient)
	b.fake = fake

	passed, total := 0, 0
	check := func(name string, f func(t *testing.T)) {
		total++
		if t.Run(name, f) {
			passed++
		}
	}
	defer func() { figure(t, "broker-faults", passed, total) }()

	check("malformed request", func(t *testing.T) {
		if got := b.raw(t, "send", "GET / HTTP/1.0\r\n\r\n"); !strings.HasPrefix(got, "ccboot broker: malformed request") || strings.Contains(got, "\n") {
			t.Errorf("reply %q, want one line naming a malformed request", got)
		}
		if !b.logged("refused a request") {
			t.Errorf("not logged:\n%s", b.log.String())
		}
	})
	check("oversized request", func(t *testing.T) {
		if got := b.raw(t, "big", "1000000"); !strings.HasPrefix(got, "ccboot broker: request over 256 bytes refused") {
			t.Errorf("reply %q", got)
		}
	})
	check("input faults", func(t *testing.T) {
		// Each is sent Go-quoted (brokerclient sendq): argv cannot hold NUL.
		for _, tc := range []struct{ name, send, want string }{
			{"unknown tier", `{"tier":"admin"}` + "\n", `ccboot broker: unknown tier "admin"; ask for readonly or elevated`},
			{"unknown field", `{"tier":"elevated","approved":true}` + "\n", "ccboot broker: malformed request"},
			{"two requests on a line", `{"tier":"readonly"}{"tier":"elevated"}` + "\n", "ccboot broker: malformed request"},
			{"NUL bytes", "{\"tier\":\"readonly\x00\"}\n", "ccboot broker: malformed request"},
			{"an empty line", "\n", "ccboot broker: malformed request"},
			{"EOF before a newline", `{"tier":`, "ccboot broker: malformed request"},
			{"terminal escapes in the tier", `{"tier":"\u001b[2J"}` + "\n", `ccboot broker: unknown tier "\x1b[2J"`},
		} {
			got := b.raw(t, "sendq", strconv.Quote(tc.send))
			if !strings.HasPrefix(got, tc.want) || strings.Contains(got, "\n") || strings.ContainsRune(got, 0x1b) {
				t.Errorf("%s: reply %q, want one printable line starting %q", tc.name, got, tc.want)
			}
		}
		// A caller that hangs up without reading its answer leaves the
		// broker serving.
		_ = b.raw(t, "hangup", `{"tier":"readonly"}`+"\n")
		if err := validCreds(b.credentials(t, brokerUser, broker.ReadOnly, -1)); err != nil {
			t.Errorf("after the input faults: %v", err)
		}
	})
	check("slow client does not wedge the next", func(t *testing.T) {
		silent := make(chan string, 1)
		go func() { silent <- b.raw(t, "silent") }()
		time.Sleep(200 * time.Millisecond)
		r := b.credentials(t, brokerUser, broker.ReadOnly, -1)
		if err := validCreds(r); err != nil {
			t.Fatal(err)
		}
		if r.took > 1500*time.Millisecond {
			t.Errorf("next caller took %s behind a silent one (read deadline 2s)", r.took)
		}
		if got := <-silent; !strings.HasPrefix(got, "ccboot broker: no complete request in time") {
			t.Errorf("silent client got %q", got)
		}
	})
	check("wrong-uid caller", func(t *testing.T) {
		before := len(b.fake.Calls())
		// nobody, another local user, and root itself: only the target
		// user is served (root has IMDS and needs no broker).
		for _, uid := range []int{nobody, brokerUser + 1, 0} {
			for _, tier := range []string{broker.ReadOnly, broker.Elevated} {
				if err := oneLineErr(b.credentials(t, uid, tier, -1), fmt.Sprintf("ccboot broker: refused: uid %d is not ec2-user (uid 1000)", uid)); err != nil {
					t.Errorf("%s as uid %d: %v", tier, uid, err)
				}
			}
		}
		if !b.logged("refused a caller: not the target user") {
			t.Errorf("refusal not logged:\n%s", b.log.String())
		}
		if after := len(b.fake.Calls()); after != before {
			t.Errorf("STS was called for refused callers: %q", b.fake.Calls()[before:])
		}
	})
	check("concurrent callers", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 24)
		for i := range 24 {
			wg.Go(func() {
				if i%3 == 0 {
					errs <- oneLineErr(b.credentials(t, brokerUser, broker.Elevated, -1), broker.NotApproved)
					return
				}
				errs <- validCreds(b.credentials(t, brokerUser, broker.ReadOnly, -1))
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
	})

	unit := "ccboot-elevated-900.scope"
	fd, why := approvedScope(t, unit)
	check("approval file not owned by root", func(t *testing.T) {
		if fd < 0 {
			t.Fatalf("cannot prove it without a cgroup for the approved session: %s", why)
		}
		now := time.Now().UTC()
		p := writeApproval(t, root, unit, now.Add(-time.Minute), now.Add(30*time.Minute))
		defer os.Remove(p)
		// Control: root's approval admits the session's process.
		if err := validCreds(b.credentials(t, brokerUser, broker.Elevated, fd)); err != nil {
			t.Fatalf("control, a root-owned approval: %v", err)
		}
		if err := oneLineErr(b.credentials(t, brokerUser, broker.Elevated, -1), broker.NotApproved); err != nil {
			t.Errorf("same user outside the session: %v", err)
		}
		if err := os.Chown(p, brokerUser, brokerUser); err != nil {
			t.Fatal(err)
		}
		if err := oneLineErr(b.credentials(t, brokerUser, broker.Elevated, fd), broker.NotApproved); err != nil {
			t.Errorf("approval owned by the user: %v", err)
		}
		if !b.logged("ignoring approval file") || !strings.Contains(b.log.String(), "owned by uid 1000, not root") {
			t.Errorf("the ignored file is not logged:\n%s", b.log.String())
		}
	})
	check("clock past the window", func(t *testing.T) {
		if fd < 0 {
			t.Fatalf("cannot prove it without a cgroup for the approved session: %s", why)
		}
		now := time.Now().UTC()
		p := writeApproval(t, root, unit, now.Add(-time.Hour), now.Add(-time.Second))
		defer os.Remove(p)
		if err := oneLineErr(b.credentials(t, brokerUser, broker.Elevated, fd), broker.NotApproved); err != nil {
			t.Errorf("window ended a second ago: %v", err)
		}
	})
	check("cached Elevated is not handed out past the window", func(t *testing.T) {
		if fd < 0 {
			t.Fatalf("cannot prove it without a cgroup for the approved session: %s", why)
		}
		// The same approval (same unit and creation time, so the same
		// cache entry) first open, then with its end in the past: the
		// broker holds Elevated keys valid for longer, and must not use
		// them once the clock is past the window.
		created := time.Now().UTC().Add(-time.Minute)
		p := writeApproval(t, root, unit, created, created.Add(30*time.Minute))
		defer os.Remove(p)
		if err := validCreds(b.credentials(t, brokerUser, broker.Elevated, fd)); err != nil {
			t.Fatalf("inside the window: %v", err)
		}
		asked := len(b.fake.AssumeRoleARNs())
		writeApproval(t, root, unit, created, time.Now().UTC().Add(-time.Second))
		if err := oneLineErr(b.credentials(t, brokerUser, broker.Elevated, fd), broker.NotApproved); err != nil {
			t.Errorf("past the window, with Elevated still cached: %v", err)
		}
		if n := len(b.fake.AssumeRoleARNs()); n != asked {
			t.Errorf("STS was asked %d more time(s) past the window", n-asked)
		}
	})
	check("concurrent callers inside and beside an approved session", func(t *testing.T) {
		if fd < 0 {
			t.Fatalf("cannot prove it without a cgroup for the approved session: %s", why)
		}
		now := time.Now().UTC()
		p := writeApproval(t, root, unit, now.Add(-time.Second), now.Add(30*time.Minute))
		defer os.Remove(p)
		const each = 8
		runs := make([]binRun, 3*each)
		var wg sync.WaitGroup
		for i := range runs {
			wg.Go(func() {
				switch i % 3 {
				case 0:
					runs[i] = b.credentials(t, brokerUser, broker.Elevated, fd) // in the scope
				case 1:
					runs[i] = b.credentials(t, brokerUser, broker.Elevated, -1) // the same user beside it
				default:
					runs[i] = b.credentials(t, brokerUser, broker.ReadOnly, -1)
				}
			})
		}
		wg.Wait()
		keys := map[int]map[string]bool{0: {}, 2: {}}
		for i, r := range runs {
			if i%3 == 1 {
				if err := oneLineErr(r, broker.NotApproved); err != nil {
					t.Errorf("caller %d beside the session: %v", i, err)
				}
				continue
			}
			if err := validCreds(r); err != nil {
				t.Errorf("caller %d: %v", i, err)
				continue
			}
			var c struct{ AccessKeyId string }
			_ = json.Unmarshal([]byte(r.stdout), &c)
			keys[i%3][c.AccessKeyId] = true
		}
		for k := range keys[0] {
			if keys[2][k] {
				t.Errorf("key %s was handed out as both Elevated and ReadOnly", k)
			}
		}
	})
	check("STS that never answers", func(t *testing.T) {
		release := make(chan struct{})
		hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		defer hang.Close()
		defer close(release)
		wedged := startBroker(t, brokerRoot(t), imds, hang.URL, bin, rawClient)
		start := time.Now()
		var wg sync.WaitGroup
		runs := make([]binRun, 2)
		for i := range runs {
			wg.Go(func() { runs[i] = wedged.credentials(t, brokerUser, broker.ReadOnly, -1) })
		}
		wg.Wait()
		for _, r := range runs {
			if err := oneLineErr(r, "ccboot broker: STS did not answer within 10s"); err != nil {
				t.Error(err)
			}
		}
		// Two at once, each bounded by its own 10 s: not one after the other.
		if d := time.Since(start); d > 16*time.Second {
			t.Errorf("two requests to a wedged STS took %s: one waited for the other", d)
		}
	})
}

// systemdRunStub stands in for `systemd-run --scope --uid --gid` where
// systemd is not PID 1: it makes the unit's cgroup under system.slice,
// moves itself in, sets SHELL (HOME, USER and LOGNAME are elevate's),
// drops to the user with setpriv and runs the command, which is what
// systemd-run does with the real scope. Like systemd-run it sets only the
// uid and gid and keeps the supplementary groups it was started with.
// %s is the cgroup2 mount (elevate passes none of its environment on).
const systemdRunStub = `#!/bin/sh
set -e
while [ $# -gt 0 ]; do
	case "$1" in
	--unit=*) unit=${1#--unit=} ;;
	--uid=*) uid=${1#--uid=} ;;
	--gid=*) gid=${1#--gid=} ;;
	--) shift; break ;;
	esac
	shift
done
cg="%s/system.slice/$unit.scope"
mkdir -p "$cg"
echo $$ > "$cg/cgroup.procs"
export SHELL=/bin/sh
exec setpriv --reuid="$uid" --regid="$gid" --keep-groups -- "$@"
`

// TestReliabilityElevateSession: `sudo ccboot elevate -- COMMAND` end to
// end against the built broker. The command, in the approved scope, gets
// Elevated; the same user outside it does not; when the session ends the
// approval is gone and the scope's cgroup gets nothing either.
func TestReliabilityElevateSession(t *testing.T) {
	defer func() { figureOK(t, "elevate-session", !t.Failed()) }()
	if os.Geteuid() != 0 {
		t.Skip("needs root: callers run as other uids")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	mount, err := broker.CgroupMount()
	if err != nil {
		t.Fatal(err)
	}
	unit := "ccboot-elevated-1.scope"
	fd, why := approvedScope(t, unit) // made here so the test removes it
	if fd < 0 {
		t.Fatalf("cannot prove it without a cgroup for the approved session: %s", why)
	}
	imds := aemmtest.Start(t, aemmtest.Default())
	fake := doctortest.New(t, "111122223333", "eu-west-1")
	fake.Set(func(f *doctortest.Fake) { f.Trust["claudecode-elevated-demo"] = "claudecode-ec2-demo" })
	root := brokerRoot(t)
	bin := binForOthers(t)
	b := startBroker(t, root, imds, fake.URL, bin, "")

	tools := t.TempDir()
	stub := filepath.Join(tools, "systemd-run")
	if err := os.WriteFile(stub, fmt.Appendf(nil, systemdRunStub, mount), 0o755); err != nil {
		t.Fatal(err)
	}
	elevateBin := filepath.Join(tools, "ccboot")
	build := exec.Command("go", "build", "-ldflags", "-X main.systemdRun="+stub, "-o", elevateBin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build ccboot with the systemd-run stand-in: %v\n%s", err, out)
	}

	// The session's command asks for Elevated twice, as an SDK would, and
	// says where it runs, with which groups and profile. elevate runs as
	// root with root's groups (0 and disk, as sudo's root may have them).
	session := exec.Command(elevateBin, "elevate", "--root", root, "--for", "20m", "--reason", "apply the plan", "--dir", root, "--",
		"/bin/sh", "-c", `echo "session: $(pwd) groups=$(id -G) profile=$AWS_PROFILE"; "$0" credentials --socket "$1" elevated && "$0" credentials --socket "$1" elevated`, bin, b.socket)
	session.Env = append(os.Environ(), "SUDO_USER=alice", "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9")
	session.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{0, 6}}}
	out, err := session.CombinedOutput()
	if err != nil {
		t.Fatalf("elevate session: %v\n%s", err, out)
	}
	// The user's groups only (brokerRoot's ec2-user is in none but its
	// own): systemd-run keeps whatever groups it starts with.
	if want := "session: " + root + " groups=1000 profile=claudecode-elevated\n"; !strings.Contains(string(out), want) {
		t.Errorf("the session is not the user's own in --dir with the Elevated profile: want %q in\n%s", want, out)
	}
	var creds []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "{") {
			creds = append(creds, line)
			if err := validCreds(binRun{stdout: line}); err != nil {
				t.Error(err)
			}
		}
	}
	if len(creds) != 2 || creds[0] != creds[1] {
		t.Errorf("the approved session got %d credentials (want 2, the second from the cache):\n%s", len(creds), out)
	}
	for _, want := range []string{"Elevated approved for ec2-user's session " + unit, "approved by alice (sudo)", "session " + unit + " ended; its approval is removed"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("elevate output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(b.log.String(), `"approval":"`+unit+`"`) || !b.logged("issued credentials") {
		t.Errorf("issuance not logged with its approval:\n%s", b.log.String())
	}
	// After the session: nothing, in the scope's cgroup or beside it.
	for name, cg := range map[string]int{"the ended scope's cgroup": fd, "beside it": -1} {
		if err := oneLineErr(b.credentials(t, brokerUser, broker.Elevated, cg), broker.NotApproved); err != nil {
			t.Errorf("after the session, %s: %v", name, err)
		}
	}
	if names, _ := filepath.Glob(filepath.Join(root, "var/lib/ccboot/approvals", "*.json")); len(names) != 0 {
		t.Errorf("approvals left: %v", names)
	}
}
