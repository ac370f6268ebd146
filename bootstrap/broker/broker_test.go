package broker

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

func withSlice(mount, slice string) bedOption {
	return func(c *Config) { c.CgroupMount, c.Slice = mount, slice }
}

// ReadOnly is assumed once with the instance role's credentials, handed
// out in the credential_process shape, cached, and every issuance logged.
func TestReadOnlyIssuedCachedLogged(t *testing.T) {
	b := newBed(t, 0)
	c1, err := b.fetch(t, ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	if c1.Version != 1 || !strings.HasPrefix(c1.AccessKeyID, "ASIAFAKE") || c1.SecretAccessKey == "" || c1.SessionToken == "" {
		t.Fatalf("credentials = %+v", c1)
	}
	if _, err := time.Parse(time.RFC3339, c1.Expiration); err != nil {
		t.Fatalf("Expiration %q is not RFC 3339: %v", c1.Expiration, err)
	}
	c2, err := b.fetch(t, ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	if c2.AccessKeyID != c1.AccessKeyID {
		t.Errorf("second request was not served from the cache: %s then %s", c1.AccessKeyID, c2.AccessKeyID)
	}
	want := []string{"sts AssumeRole claudecode-ec2-demo"}
	if got := b.fake.Calls(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("STS calls = %q, want %q (ReadOnly assumed once, by the instance role)", got, want)
	}
	if got := b.sts.Calls(); len(got) != 1 || got[0] != roARN+" 3600" {
		t.Errorf("AssumeRole calls = %q, want [%s 3600]", got, roARN)
	}
	if n := len(b.logs.FilterMessage("issued credentials").FilterField(zapString("tier", ReadOnly)).All()); n != 2 {
		t.Errorf("%d issuances of readonly logged, want 2", n)
	}
	if !b.logged("issued credentials", "pid", os.Getpid()) || !b.logged("issued credentials", "uid", 0) {
		t.Errorf("issuance log lacks the caller's uid and pid: %v", b.logs.All())
	}
}

// A cached credential close to its expiry is not handed out again.
func TestReadOnlyRefreshedBeforeExpiry(t *testing.T) {
	b := newBed(t, 0)
	c1, err := b.fetch(t, ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	b.clock.Set(c1.expires().Add(-refreshBefore + time.Second))
	c2, err := b.fetch(t, ReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	if c2.AccessKeyID == c1.AccessKeyID {
		t.Errorf("a credential with less than %s left was handed out again", refreshBefore)
	}
}

// Security: a caller other than the configured user gets a one-line
// refusal, it is logged, and STS is never asked.
func TestWrongUIDRefused(t *testing.T) {
	b := newBed(t, 0)
	for _, tier := range []string{ReadOnly, Elevated} {
		out := b.startChild(t, tier, 65534).run(t)
		if !strings.HasPrefix(out, "ERR ccboot broker: refused: uid 65534 is not ec2-user (uid 0)") || strings.Contains(out, "\n") {
			t.Errorf("%s as uid 65534: %q, want a one-line refusal naming the uid", tier, out)
		}
	}
	if !b.logged("refused a caller: not the target user", "uid", 65534) {
		t.Errorf("refusal not logged: %v", b.logs.All())
	}
	if calls := b.fake.Calls(); len(calls) != 0 {
		t.Errorf("STS was called for a refused caller: %q", calls)
	}
}

// Elevated without any approval: the exact message, no STS call.
func TestElevatedNotApproved(t *testing.T) {
	b := newBed(t, 0)
	_, err := b.fetch(t, Elevated)
	if err == nil || err.Error() != NotApproved {
		t.Fatalf("err = %v, want %q", err, NotApproved)
	}
	if calls := b.fake.Calls(); len(calls) != 0 {
		t.Errorf("STS was called without approval: %q", calls)
	}
}

// Security: an approval belongs to one session. Only a caller inside the
// approved unit's cgroup gets Elevated; the same user beside it (another
// cgroup, or the test's own) is refused, and so is everyone once the
// clock is past the window.
func TestElevatedOnlyInsideApprovedCgroup(t *testing.T) {
	mount, slice := testSlice(t)
	b := newBed(t, 4242, withSlice(mount, slice))
	unit := "ccboot-elevated-1.scope"
	b.approve(t, unit, 4242, 30*time.Minute)
	mkCgroup(t, mount, slice+"/"+unit)
	mkCgroup(t, mount, slice+"/"+unit+"/nested")
	mkCgroup(t, mount, slice+"/beside")

	inside := b.startChild(t, Elevated, 4242)
	moveInto(t, mount, slice+"/"+unit, inside.cmd.Process.Pid)
	nested := b.startChild(t, Elevated, 4242)
	moveInto(t, mount, slice+"/"+unit+"/nested", nested.cmd.Process.Pid)
	beside := b.startChild(t, Elevated, 4242)
	moveInto(t, mount, slice+"/beside", beside.cmd.Process.Pid)
	// A look-alike: a cgroup of the same name outside the slice.
	mkCgroup(t, mount, slice+"/beside/"+unit)
	lookalike := b.startChild(t, Elevated, 4242)
	moveInto(t, mount, slice+"/beside/"+unit, lookalike.cmd.Process.Pid)
	unmoved := b.startChild(t, Elevated, 4242)

	if out := inside.run(t); !strings.HasPrefix(out, "{") {
		t.Fatalf("caller inside the approved unit: %q, want credentials", out)
	} else if c := decode(t, out); c.Version != 1 || c.AccessKeyID == "" {
		t.Errorf("credentials = %+v", c)
	}
	if out := nested.run(t); !strings.HasPrefix(out, "{") {
		t.Errorf("caller in a child cgroup of the approved unit: %q, want credentials", out)
	}
	for name, c := range map[string]*child{"beside": beside, "look-alike": lookalike, "unmoved": unmoved} {
		if out := c.run(t); out != "ERR "+NotApproved {
			t.Errorf("%s caller of the same user: %q, want %q", name, out, NotApproved)
		}
	}
	if got := b.sts.Calls(); len(got) != 1 || got[0] != elARN+" 1800" {
		t.Errorf("AssumeRole calls = %q, want one of Elevated for the window's 1800 s (then cached)", got)
	}
	if want := "sts AssumeRole claudecode-ec2-demo"; len(b.fake.Calls()) != 1 || b.fake.Calls()[0] != want {
		t.Errorf("STS calls = %q, want Elevated assumed by the instance role", b.fake.Calls())
	}
	if !b.logged("issued credentials", "approval", unit) {
		t.Errorf("issuance does not name the approval: %v", b.logs.All())
	}

	b.clock.Add(30 * time.Minute)
	late := b.startChild(t, Elevated, 4242)
	moveInto(t, mount, slice+"/"+unit, late.cmd.Process.Pid)
	if out := late.run(t); out != "ERR "+NotApproved {
		t.Errorf("inside the unit after the window: %q, want %q", out, NotApproved)
	}
}

// Security: the approval's uid must be the caller's.
func TestElevatedApprovalOfAnotherUID(t *testing.T) {
	mount, slice := testSlice(t)
	b := newBed(t, 4242, withSlice(mount, slice))
	unit := "ccboot-elevated-7.scope"
	b.approve(t, unit, 4343, 30*time.Minute)
	mkCgroup(t, mount, slice+"/"+unit)
	c := b.startChild(t, Elevated, 4242)
	moveInto(t, mount, slice+"/"+unit, c.cmd.Process.Pid)
	if out := c.run(t); out != "ERR "+NotApproved {
		t.Errorf("approval for uid 4343, caller 4242: %q", out)
	}
}

// Security: an approved unit's cgroup that is not root's alone (a
// delegated one the user could populate) admits nobody.
func TestElevatedDelegatedCgroupIgnored(t *testing.T) {
	mount, slice := testSlice(t)
	b := newBed(t, 4242, withSlice(mount, slice))
	unit := "ccboot-elevated-2.scope"
	b.approve(t, unit, 4242, 30*time.Minute)
	mkCgroup(t, mount, slice+"/"+unit)
	if err := os.Chown(filepath.Join(mount, slice, unit, "cgroup.procs"), 4242, 4242); err != nil {
		t.Fatal(err)
	}
	c := b.startChild(t, Elevated, 4242)
	moveInto(t, mount, slice+"/"+unit, c.cmd.Process.Pid)
	if out := c.run(t); out != "ERR "+NotApproved {
		t.Errorf("caller in a user-owned cgroup: %q, want %q", out, NotApproved)
	}
	if len(b.logs.FilterMessage("ignoring approval: its cgroup is not root's").All()) == 0 {
		t.Errorf("not logged: %v", b.logs.All())
	}
}

// Security: a cgroup name with a newline cannot forge a "0::" line.
func TestParseCgroupRefusesForgedLines(t *testing.T) {
	for _, tc := range []struct {
		data, want string
	}{
		{"0::/system.slice/ccboot-elevated-1.scope\n", "/system.slice/ccboot-elevated-1.scope"},
		{"12:pids:/\n0::/user.slice/x\n", "/user.slice/x"},
		{"0::/user.slice/user-1000.slice/user@1000.service/x\n0::/system.slice/ccboot-elevated-1.scope\n", ""},
		{"1:name=systemd:/x\n", ""},
		{"0::/system.slice/../system.slice/ccboot-elevated-1.scope\n", ""},
		{"0::relative\n", ""},
	} {
		got, err := parseCgroup(1, []byte(tc.data))
		if tc.want == "" && err == nil {
			t.Errorf("%q: accepted as %q", tc.data, got)
		}
		if tc.want != "" && (err != nil || got != tc.want) {
			t.Errorf("%q: %q, %v; want %q", tc.data, got, err, tc.want)
		}
	}
}

func TestElevatedDuration(t *testing.T) {
	for _, tc := range []struct{ remaining, want time.Duration }{
		{30 * time.Minute, 30 * time.Minute},
		{4 * time.Hour, time.Hour},
		{5 * time.Minute, 15 * time.Minute},
		{time.Second, 15 * time.Minute},
		{20*time.Minute + 500*time.Millisecond, 20 * time.Minute},
	} {
		if got := elevatedDuration(tc.remaining); got != tc.want {
			t.Errorf("elevatedDuration(%s) = %s, want %s", tc.remaining, got, tc.want)
		}
	}
}

// Bad input: one-line refusals, logged; the server keeps serving.
func TestBadRequests(t *testing.T) {
	b := newBed(t, 0)
	for _, tc := range []struct {
		name, send, want string
	}{
		{"not JSON", "hello\n", "ccboot broker: malformed request"},
		{"unknown field", `{"tier":"readonly","role":"x"}` + "\n", "ccboot broker: malformed request"},
		{"two values", `{"tier":"readonly"}{"tier":"elevated"}` + "\n", "ccboot broker: malformed request"},
		{"unknown tier", `{"tier":"admin"}` + "\n", `ccboot broker: unknown tier "admin"`},
		{"oversized", strings.Repeat("x", 10000), "ccboot broker: request over 256 bytes refused"},
		{"oversized with newline late", `{"tier":"readonly"` + strings.Repeat(" ", 300) + "}\n", "ccboot broker: request over 256 bytes refused"},
		{"empty then EOF", "", "ccboot broker: malformed request"},
	} {
		got := b.rawHalfClose(t, []byte(tc.send))
		if !strings.HasPrefix(got, tc.want) || strings.Contains(got, "\n") {
			t.Errorf("%s: %q, want one line starting %q", tc.name, got, tc.want)
		}
	}
	if n := len(b.logs.FilterMessage("refused a request").All()); n != 7 {
		t.Errorf("%d refusals logged, want 7", n)
	}
	if _, err := b.fetch(t, ReadOnly); err != nil {
		t.Errorf("after bad requests: %v", err)
	}
}

// A client that connects and sends nothing does not hold up the next one,
// and is itself answered when its read deadline passes.
func TestSlowClientDoesNotWedge(t *testing.T) {
	b := newBed(t, 0)
	slow := make(chan string, 1)
	go func() { slow <- b.raw(t, nil) }()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if _, err := b.fetch(t, ReadOnly); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Errorf("next caller waited %s behind a silent one", d)
	}
	select {
	case got := <-slow:
		if !strings.HasPrefix(got, "ccboot broker: no complete request in time") {
			t.Errorf("silent client got %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("silent client was never cut off")
	}
}

// STS that never answers: the request fails within the STS timeout with
// one line, and a request after it (STS back) is served while the first
// one is still hanging.
func TestSTSNeverAnswers(t *testing.T) {
	b := newBed(t, 0, func(c *Config) { c.STSTimeout = 700 * time.Millisecond })
	b.sts.Hang(true)
	first := make(chan error, 1)
	start := time.Now()
	go func() { _, err := b.fetch(t, ReadOnly); first <- err }()
	time.Sleep(100 * time.Millisecond)
	b.sts.Hang(false)
	if _, err := b.fetch(t, ReadOnly); err != nil {
		t.Fatalf("request after the wedged one: %v", err)
	}
	err := <-first
	if err == nil || !strings.HasPrefix(err.Error(), "ccboot broker: STS did not answer within 700ms") {
		t.Fatalf("wedged request: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("wedged request took %s, bound is 700ms", d)
	}
}

// Many callers at once (run with -race).
func TestConcurrentCallers(t *testing.T) {
	b := newBed(t, 0)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() {
			tier := ReadOnly
			if len(errs)%2 == 0 {
				tier = Elevated
			}
			out, err := Fetch(t.Context(), b.socket, tier, 10*time.Second)
			switch {
			case tier == ReadOnly && err != nil:
				errs <- err
			case tier == Elevated && (err == nil || err.Error() != NotApproved):
				errs <- fmt.Errorf("elevated: %s %v", out, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// BenchmarkFetchCachedReadOnly is one `credential_process` round trip
// served from the cache: connect, SO_PEERCRED, request, JSON.
func BenchmarkFetchCachedReadOnly(b *testing.B) {
	dir := b.TempDir()
	sys, err := fsroot.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer sys.Close()
	srv, err := New(Config{UID: os.Geteuid(), User: "bench", ReadOnly: Role{ARN: roARN}, Elevated: Role{ARN: elARN},
		STS: staticAssumer{}, Approvals: OpenApprovals(sys, "approvals", nil)})
	if err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(dir, "b.sock")
	l, err := Listen(sock)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	defer func() { cancel(); <-done }()
	for b.Loop() {
		if _, err := Fetch(ctx, sock, ReadOnly, 5*time.Second); err != nil {
			b.Fatal(err)
		}
	}
}

type staticAssumer struct{}

func (staticAssumer) AssumeRole(_ context.Context, r Role, d time.Duration) (Credentials, error) {
	return Credentials{Version: 1, AccessKeyID: "ASIASTATIC", SecretAccessKey: "s", SessionToken: "t",
		Expiration: time.Now().Add(d).UTC().Format(time.RFC3339)}, nil
}

// sleepingPeer starts a sleep as cred (nil: this process's uid) and pins
// it as a caller by pidfd; it skips the test on a kernel without pidfds.
func sleepingPeer(t *testing.T, cred *syscall.Credential) (*exec.Cmd, *peer) {
	t.Helper()
	cmd := exec.Command("sleep", "30")
	uid := os.Geteuid()
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		uid = int(cred.Uid)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pidfd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Skipf("no pidfd on this kernel: %v", err)
	}
	return cmd, &peer{UID: uid, PID: cmd.Process.Pid, pidfd: pidfd}
}

// Security: a pid whose process has exited (and could be reused by
// another) no longer counts as the caller.
func TestPeerPidfdNoticesExit(t *testing.T) {
	cmd, p := sleepingPeer(t, nil)
	defer p.close()
	if !p.sameProcess() {
		t.Fatal("a live caller does not count as itself")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if p.sameProcess() {
		t.Error("a reaped caller still counts: its pid could belong to another process by now")
	}
}

// Security (issue 21's e2e found it): the broker's unit has no
// capabilities, so signalling a caller of another uid is EPERM; a live
// caller must still count as itself there, or every approved session is
// refused Elevated. Without CAP_KILL, only an exited caller is refused.
func TestPeerPidfdWithoutCapKill(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the caller runs as another uid")
	}
	cmd, p := sleepingPeer(t, &syscall.Credential{Uid: 65534, Gid: 65534})
	defer p.close()
	// sameProcess on a thread with no capabilities, as in the unit. The
	// thread stays locked, so it ends with the goroutine and no other
	// code runs capless.
	capless := func() bool {
		got := make(chan bool)
		go func() {
			runtime.LockOSThread()
			var none [2]unix.CapUserData // version 3 takes two
			if err := unix.Capset(&unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}, &none[0]); err != nil {
				t.Errorf("capset: %v", err)
			}
			got <- p.sameProcess()
		}()
		return <-got
	}
	if !capless() {
		t.Error("a live caller of another uid does not count as itself without CAP_KILL: the broker refuses every approved session")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if capless() {
		t.Error("a reaped caller still counts without CAP_KILL")
	}
}

// The wiring: a real connection carries a pidfd where the kernel has
// SO_PEERPIDFD (Linux 6.5+).
func TestPeerOfCarriesPidfd(t *testing.T) {
	dir := t.TempDir()
	l, err := Listen(filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := net.Dial("unix", filepath.Join(dir, "s.sock")); err == nil {
			time.Sleep(200 * time.Millisecond)
			c.Close()
		}
	}()
	c, err := l.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p, err := peerOf(c)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	if p.PID != os.Getpid() || p.UID != os.Geteuid() {
		t.Errorf("peer = %+v, want this process", p)
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	if p.pidfd < 0 {
		t.Skipf("kernel %s has no SO_PEERPIDFD: the pid alone is used", unix.ByteSliceToString(uts.Release[:]))
	}
	if !p.sameProcess() {
		t.Error("this live process does not count as itself")
	}
}

// TestListenNeverShowsUmaskMode: a caller (or a test waiting for the
// broker) that finds the socket at its path finds it at 0666. Binding at
// the path and chmodding after left a window with the umask's mode, which
// a test saw once as 0755.
func TestListenNeverShowsUmaskMode(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "broker.sock")
	stop := make(chan struct{})
	seen := make(chan os.FileMode, 1)
	go func() {
		defer close(seen)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if fi, err := os.Lstat(sock); err == nil && fi.Mode().Perm() != 0o666 {
				seen <- fi.Mode()
				return
			}
		}
	}()
	for i := 0; i < 2000; i++ {
		l, err := Listen(sock)
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
		os.Remove(sock)
	}
	close(stop)
	if m, ok := <-seen; ok {
		t.Fatalf("the socket was visible at %s with mode %v, want only 0666", sock, m)
	}
}
