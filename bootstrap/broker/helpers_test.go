package broker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/ccboot/ccboot/bootstrap/doctor/doctortest"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
)

// The test binary doubles as a client process, so a caller can be another
// uid or sit in another cgroup: CCBOOT_BROKER_CLIENT=SOCKET,TIER. It waits
// for a line on stdin (the test moves it into a cgroup first), then prints
// the credentials JSON or "ERR <refusal>".
func TestMain(m *testing.M) {
	if v := os.Getenv("CCBOOT_BROKER_CLIENT"); v != "" {
		socket, tier, _ := strings.Cut(v, ",")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		out, err := Fetch(context.Background(), socket, tier, 20*time.Second)
		if err != nil {
			fmt.Println("ERR " + err.Error())
			os.Exit(1)
		}
		os.Stdout.Write(out)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const (
	roARN = "arn:aws:iam::111122223333:role/claudecode-readonly-demo"
	elARN = "arn:aws:iam::111122223333:role/claudecode-elevated-demo"
)

// clock is an injectable time.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time               { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time)              { c.mu.Lock(); c.now = t; c.mu.Unlock() }
func (c *clock) Add(d time.Duration)          { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }
func newClock() *clock                        { return &clock{now: time.Now().UTC().Truncate(time.Second)} }
func (c *clock) in(d time.Duration) time.Time { return c.Now().Add(d) }

// bed is one broker on a real unix socket in a directory every uid can
// traverse, with a test-controlled approvals directory and observed logs.
type bed struct {
	dir, socket string
	srv         *Server
	approvals   *Approvals
	logs        *observer.ObservedLogs
	clock       *clock
	fake        *doctortest.Fake
	sts         *stsRecorder
}

// stsRecorder sits between the broker and the fake STS: it records each
// AssumeRole's RoleArn and DurationSeconds and can hang a request until
// the test ends (an STS that never answers).
type stsRecorder struct {
	URL   string
	mu    sync.Mutex
	calls []string // "RoleArn DurationSeconds"
	hang  bool
}

func (r *stsRecorder) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}
func (r *stsRecorder) Hang(on bool) { r.mu.Lock(); r.hang = on; r.mu.Unlock() }

func newRecorder(t *testing.T, target string) *stsRecorder {
	u, _ := url.Parse(target)
	proxy := httputil.NewSingleHostReverseProxy(u)
	r := &stsRecorder{}
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		form, _ := url.ParseQuery(string(body))
		r.mu.Lock()
		hang := r.hang
		if form.Get("Action") == "AssumeRole" {
			r.calls = append(r.calls, form.Get("RoleArn")+" "+form.Get("DurationSeconds"))
		}
		r.mu.Unlock()
		if hang {
			select {
			case <-done:
			case <-req.Context().Done():
			}
			return
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	r.URL = srv.URL
	return r
}

type bedOption func(*Config)

// newBed starts AWS's metadata mock, the fake STS with enforced-mode trust
// (the instance role may assume both tiers), and the broker. uid is the
// target user.
func newBed(t *testing.T, uid int, opts ...bedOption) *bed {
	t.Helper()
	imds := aemmtest.Start(t, aemmtest.Default())
	fake := doctortest.New(t, "111122223333", "eu-west-1")
	fake.Set(func(f *doctortest.Fake) { f.Trust["claudecode-elevated-demo"] = "claudecode-ec2-demo" })
	rec := newRecorder(t, fake.URL)
	b := &bed{dir: openDir(t), clock: newClock(), fake: fake, sts: rec}
	b.socket = filepath.Join(b.dir, "broker.sock")
	sys, err := fsroot.Open(b.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sys.Close() })
	core, logs := observer.New(zapcore.DebugLevel)
	b.logs = logs
	log := zap.New(core)
	b.approvals = OpenApprovals(sys, "approvals", log)
	cfg := Config{
		UID: uid, User: "ec2-user",
		ReadOnly:    Role{roARN, "claudecode-readonly-session"},
		Elevated:    Role{elARN, "claudecode-elevated-session"},
		STS:         NewSTS("eu-west-1", rec.URL, imds, 5*time.Second),
		Approvals:   b.approvals,
		Now:         b.clock.Now,
		ReadTimeout: 500 * time.Millisecond,
		STSTimeout:  3 * time.Second,
		Log:         log,
	}
	if m, err := CgroupMount(); err == nil {
		cfg.CgroupMount = m
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.srv = srv
	l, err := Listen(b.socket)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.UID < 0 {
		return b // approvals only
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return b
}

// newBedNoServer is a bed for the approvals store alone.
func newBedNoServer(t *testing.T) *bed {
	return newBed(t, -1)
}

// openDir is a temporary directory any uid can traverse (t.TempDir's
// parents are 0700).
func openDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ccboot-broker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// fetch asks the broker from this process (uid 0 unless tests say so).
func (b *bed) fetch(t *testing.T, tier string) (Credentials, error) {
	t.Helper()
	out, err := Fetch(context.Background(), b.socket, tier, 10*time.Second)
	if err != nil {
		return Credentials{}, err
	}
	return decode(t, string(out)), nil
}

func decode(t *testing.T, s string) Credentials {
	t.Helper()
	var c Credentials
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		t.Fatalf("not credential_process JSON: %v: %q", err, s)
	}
	return c
}

// child is a client process: another uid and/or moved into a cgroup
// before it connects.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   bytes.Buffer
}

// startChild starts the client for tier as uid (0: as the test), stopped
// before it connects until go() is called.
func (b *bed) startChild(t *testing.T, tier string, uid int) *child {
	t.Helper()
	exe := b.clientBinary(t)
	c := &child{cmd: exec.Command(exe)}
	c.cmd.Env = append(os.Environ(), "CCBOOT_BROKER_CLIENT="+b.socket+","+tier)
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	if uid != 0 {
		c.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	in, err := c.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.stdin = in
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.cmd.Process.Kill(); _ = c.cmd.Wait() })
	return c
}

// run lets the child connect and returns what it printed.
func (c *child) run(t *testing.T) string {
	t.Helper()
	_, _ = io.WriteString(c.stdin, "go\n")
	c.stdin.Close()
	_ = c.cmd.Wait()
	return strings.TrimSpace(c.out.String())
}

// clientBinary copies the test binary where any uid may run it.
func (b *bed) clientBinary(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(b.dir, "client")
	if _, err := os.Stat(dst); err == nil {
		return dst
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// raw sends bytes as they are and returns the reply line.
func (b *bed) raw(t *testing.T, send []byte) string {
	t.Helper()
	c, err := net.Dial("unix", b.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if len(send) > 0 {
		_, _ = c.Write(send)
	}
	reply, _ := io.ReadAll(c)
	return strings.TrimSpace(string(reply))
}

// logged reports whether a log entry with message msg has field key = want.
func (b *bed) logged(msg, key string, want any) bool {
	for _, e := range b.logs.FilterMessage(msg).All() {
		if v, ok := e.ContextMap()[key]; ok && fmt.Sprint(v) == fmt.Sprint(want) {
			return true
		}
	}
	return false
}

// approve writes an approval as elevate would.
func (b *bed) approve(t *testing.T, unit string, uid int, d time.Duration) Approval {
	t.Helper()
	a := Approval{Unit: unit, UID: uid, Approver: "alice", Reason: "test", Created: b.clock.Now(), Until: b.clock.in(d)}
	if err := b.approvals.Add(a); err != nil {
		t.Fatal(err)
	}
	return a
}

// testSlice makes a cgroup under the cgroup v2 mount for the test to stand
// in for system.slice, or skips with the reason.
func testSlice(t *testing.T) (mount, slice string) {
	t.Helper()
	mount, err := CgroupMount()
	if err != nil {
		t.Skipf("cgroup test needs a cgroup v2 hierarchy: %v", err)
	}
	slice = fmt.Sprintf("/ccboot-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	if err := os.Mkdir(filepath.Join(mount, slice), 0o755); err != nil {
		t.Skipf("cgroup test needs a writable cgroup v2 hierarchy at %s: %v", mount, err)
	}
	t.Cleanup(func() { removeCgroups(t, filepath.Join(mount, slice)) })
	return mount, slice
}

func removeCgroups(t *testing.T, dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroups(t, filepath.Join(dir, e.Name()))
		}
	}
	if err := os.Remove(dir); err != nil {
		t.Errorf("remove cgroup: %v", err)
	}
}

func mkCgroup(t *testing.T, mount, cg string) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(mount, cg), 0o755); err != nil {
		t.Fatal(err)
	}
}

func moveInto(t *testing.T, mount, cg string, pid int) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(mount, cg, "cgroup.procs"), []byte(fmt.Sprint(pid)), 0o644); err != nil {
		t.Fatalf("move %d into %s: %v", pid, cg, err)
	}
}

func zapString(k, v string) zap.Field { return zap.String(k, v) }

// rawHalfClose sends bytes, closes its writing side (EOF), returns the reply.
func (b *bed) rawHalfClose(t *testing.T, send []byte) string {
	t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: b.socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.Write(send)
	_ = c.CloseWrite()
	reply, _ := io.ReadAll(c)
	return strings.TrimSpace(string(reply))
}

// create records an approval under the next unit name, as elevate does.
func (b *bed) create(t *testing.T, uid int, d time.Duration) Approval {
	t.Helper()
	a, err := b.approvals.Create(func(unit string) Approval {
		return Approval{Unit: unit, UID: uid, Approver: "alice", Reason: "test", Created: b.clock.Now(), Until: b.clock.in(d)}
	})
	if err != nil {
		t.Error(err)
	}
	return a
}
