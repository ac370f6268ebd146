package doctor

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap/broker"
	"github.com/ccboot/ccboot/bootstrap/doctor/doctortest"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
	"github.com/ccboot/ccboot/bootstrap/nstest"
	"github.com/ccboot/ccboot/bootstrap/runner"
	"github.com/ccboot/ccboot/bootstrap/sysuser"
)

// The test binary is the probe too, as ccboot's binary is in production:
// /proc/self/exe with ProbeCommand.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == ProbeCommand {
		os.Exit(ProbeMain(context.Background(), os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

const nobody = 65534

// sudoSays is a runner standing in for `sudo -n -l -U USER` (fault
// injection: the test does not edit the host's sudoers).
type sudoSays struct{ out string }

func (s sudoSays) Run(_ context.Context, c runner.Cmd) (runner.Result, error) {
	if c.Name != "sudo" || strings.Join(c.Args, " ") != "-n -l -U nobody" {
		return runner.Result{}, fmt.Errorf("unexpected command %s %v", c.Name, c.Args)
	}
	return runner.Result{Stdout: []byte(s.out)}, nil
}

const sudoNone = "User nobody is not allowed to run sudo on host.\n"

// openDir is a directory every uid can traverse (t.TempDir's are 0700).
func openDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ccboot-doctor-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: starts processes as uid 65534")
	}
}

// enforcedSetup is setup's chain plus the enforced checks' environment:
// the user is nobody, IMDS's stand-in listens on loopback (root and,
// without a filter, the user reach it), the broker is the real one on a
// unix socket, assuming with the metadata mock's credentials against the
// fake STS with the enforced trust.
func enforcedSetup(t *testing.T) (*doctortest.Fake, *Env, *broker.Approvals) {
	t.Helper()
	needRoot(t)
	fake, env := setup(t)
	fake.Set(func(f *doctortest.Fake) {
		f.Trust["claudecode-elevated-demo"] = "claudecode-ec2-demo" // enforced: the instance role, not ReadOnly
	})
	dir := openDir(t)
	sys, err := fsroot.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sys.Close() })
	approvals := broker.OpenApprovals(sys, "approvals", nil)
	env.Enforced = true
	env.EnforcedEnv = EnforcedEnv{
		User:         sysuser.User{Name: "nobody", UID: nobody, GID: nobody, Home: "/nonexistent"},
		Probe:        []string{"/proc/self/exe", ProbeCommand},
		BrokerSocket: filepath.Join(dir, "broker.sock"),
		DockerSocket: filepath.Join(dir, "docker.sock"),
		Run:          sudoSays{sudoNone},
	}
	startBroker(t, env, env.IMDSEndpoint, fake.URL, approvals, nobody)
	return fake, env, approvals
}

// startBroker serves the real broker for uid at env.BrokerSocket.
func startBroker(t *testing.T, env *Env, imds, stsURL string, approvals *broker.Approvals, uid int) {
	t.Helper()
	srv, err := broker.New(broker.Config{
		UID: uid, User: "nobody",
		ReadOnly:  broker.Role{ARN: env.ReadOnly.RoleARN, SessionName: env.ReadOnly.Session},
		Elevated:  broker.Role{ARN: env.Elevated.RoleARN, SessionName: env.Elevated.Session},
		STS:       broker.NewSTS(env.Region, stsURL, imds, 5*time.Second),
		Approvals: approvals,
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := broker.Listen(env.BrokerSocket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done })
}

// fakeIMDS listens on loopback for the user-no-imds check's connects.
func fakeIMDS(t *testing.T, env *Env) {
	t.Helper()
	addr := nstest.AcceptAndClose(t, "tcp", "127.0.0.1:0")
	if addr == "" {
		t.FailNow()
	}
	env.IMDSEndpoint = "http://" + addr
}

func runOne(t *testing.T, env *Env, name string) Result {
	t.Helper()
	for _, c := range append(Checks(), enforcedChecks()...) {
		if c.Name == name {
			return RunChecks(context.Background(), env, []Check{c})[0]
		}
	}
	t.Fatalf("no check %s", name)
	return Result{}
}

func wantResult(t *testing.T, r Result, ok bool, detail, fix string) {
	t.Helper()
	if r.OK != ok || !strings.Contains(r.Detail, detail) || !strings.Contains(r.Fix, fix) {
		t.Errorf("%s = %+v\nwant ok=%v, detail containing %q, fix containing %q", r.Name, r, ok, detail, fix)
	}
	if r.OK && r.Fix != "" {
		t.Errorf("%s passed with a fix: %q", r.Name, r.Fix)
	}
}

func TestEnforcedAllPassOrderAndAdvisoryUnchanged(t *testing.T) {
	_, env, _ := enforcedSetup(t)
	rs := Run(context.Background(), env)
	var names []string
	for _, r := range rs {
		names = append(names, r.Name)
		switch r.Name {
		case UserNoIMDS:
			// Without a filter on this host the user reaches the IMDS
			// stand-in: TestEnforcedUserNoIMDSRealNft shows the pass.
			wantResult(t, r, false, "reaches IMDS", "sudo ccboot repair --only imds-filter")
		case UserNoRoot:
			wantResult(t, r, true, "nobody (uid 65534): in no root-granting group, no sudo rule, no root docker socket", "")
		case BrokerReadOnly:
			wantResult(t, r, true, "nobody (uid 65534) gets arn:aws:sts::111122223333:assumed-role/claudecode-readonly-demo/claudecode-readonly-session from the broker", "")
		case BrokerElevatedRefused:
			wantResult(t, r, true, "no approval is active and the broker refuses Elevated", "")
		case ElevatedProfile:
			wantResult(t, r, true, "assumed-role/claudecode-elevated-demo/claudecode-elevated-session", "")
		default:
			wantResult(t, r, true, "", "")
		}
		if strings.Contains(r.Detail, "ASIA") || strings.Contains(r.Detail, "FwoG") {
			t.Errorf("%s shows credentials: %s", r.Name, r.Detail)
		}
	}
	if got := strings.Join(names, ","); !strings.HasSuffix(got, ","+strings.Join([]string{ReadOnlyNoElevated, UserNoIMDS, UserNoRoot, BrokerReadOnly, BrokerElevatedRefused}, ",")) {
		t.Errorf("order %s: the enforced checks come last", got)
	}
	env.Enforced = false
	if rs := Run(context.Background(), env); len(rs) != len(Checks()) {
		t.Errorf("advisory runs %d checks, want %d", len(rs), len(Checks()))
	}
}

func TestEnforcedReadOnlyNoElevated(t *testing.T) {
	fake, env, _ := enforcedSetup(t)
	r := Run(context.Background(), env)
	byN := map[string]Result{}
	for _, x := range r {
		byN[x.Name] = x
	}
	wantResult(t, byN[ReadOnlyNoElevated], true, "IAM denies ReadOnly the assumption of Elevated (AccessDenied)", "")
	// The advisory trust (ReadOnly may assume Elevated) breaks it.
	fake.Set(func(f *doctortest.Fake) { f.Trust["claudecode-elevated-demo"] = "claudecode-readonly-demo" })
	byN = map[string]Result{}
	for _, x := range Run(context.Background(), env) {
		byN[x.Name] = x
	}
	wantResult(t, byN[ReadOnlyNoElevated], false, "may assume Elevated", "TierMode=enforced")
	// and the instance role no longer may: elevated-profile names the enforced trust.
	wantResult(t, byN[ElevatedProfile], false, "AccessDenied", "deployed with TierMode=enforced")
}

func TestEnforcedUserNoIMDS(t *testing.T) {
	_, env, _ := enforcedSetup(t)
	fakeIMDS(t, env)
	wantResult(t, runOne(t, env, UserNoIMDS), false,
		"nobody (uid 65534) reaches IMDS at "+strings.TrimPrefix(env.IMDSEndpoint, "http://")+", so it can take the instance role's credentials",
		"run `sudo ccboot repair --only imds-filter`")

	// Root cannot reach it either: IMDS is down, not filtered.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	env.IMDSEndpoint = "http://" + closed
	wantResult(t, runOne(t, env, UserNoIMDS), false, "does not answer root either", "enable the instance's metadata service")
}

// TestEnforcedUserNoIMDSRealNft loads the imds-filter step's rule shape
// (meta skuid != 0 ... reject with tcp reset) into a private network
// namespace: the check passes with it and fails once it is flushed.
func TestEnforcedUserNoIMDSRealNft(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft is not installed")
	}
	_, env, _ := enforcedSetup(t)
	nstest.Run(t, syscall.CLONE_NEWNET, func() {
		sh := func(args ...string) bool { return nstest.Sh(t, args...) }
		if nstest.AcceptAndClose(t, "tcp", "127.0.0.2:8080") == "" {
			return
		}
		env.IMDSEndpoint = "http://127.0.0.2:8080"
		rules := filepath.Join(t.TempDir(), "imds.nft")
		if err := os.WriteFile(rules, []byte("table inet ccboot_imds {\n\tchain output {\n\t\ttype filter hook output priority 0; policy accept;\n\t\tip daddr 127.0.0.2 tcp dport 8080 meta skuid != 0 reject with tcp reset\n\t}\n}\n"), 0o600); err != nil {
			t.Error(err)
			return
		}
		if !sh("nft", "-f", rules) {
			return
		}
		r := RunChecks(context.Background(), env, []Check{{Name: UserNoIMDS, run: checkUserNoIMDS}})[0]
		wantResult(t, r, true, "nobody (uid 65534) cannot reach IMDS at 127.0.0.2:8080 (connection refused); root can", "")
		if !sh("nft", "delete", "table", "inet", "ccboot_imds") {
			return
		}
		r = RunChecks(context.Background(), env, []Check{{Name: UserNoIMDS, run: checkUserNoIMDS}})[0]
		wantResult(t, r, false, "reaches IMDS at 127.0.0.2:8080", "sudo ccboot repair --only imds-filter")
	})
}

// TestEnforcedUserNoIMDSDefaultBothFamilies: with no imds_endpoint the
// check covers 169.254.169.254 and, where root reaches it, fd00:ec2::254:
// a filter of the IPv4 address alone fails naming the IPv6 one.
func TestEnforcedUserNoIMDSDefaultBothFamilies(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft is not installed")
	}
	_, env, _ := enforcedSetup(t)
	nstest.Run(t, syscall.CLONE_NEWNET, func() {
		sh := func(args ...string) bool { return nstest.Sh(t, args...) }
		if !sh("ip", "addr", "add", "169.254.169.254/32", "dev", "lo") {
			return
		}
		if err := exec.Command("ip", "-6", "addr", "add", "fd00:ec2::254/128", "dev", "lo", "nodad").Run(); err != nil {
			t.Logf("no IPv6 in the namespace, nothing to check: %v", err)
			return
		}
		for _, a := range []string{DefaultIMDSAddr, DefaultIMDSAddr6} {
			if nstest.AcceptAndClose(t, "tcp", a) == "" {
				return
			}
		}
		env.IMDSEndpoint = ""
		rules := filepath.Join(t.TempDir(), "imds.nft")
		v4only := "table inet ccboot_imds {\n\tchain output {\n\t\ttype filter hook output priority 0; policy accept;\n\t\tip daddr 169.254.169.254 tcp dport 80 meta skuid != 0 reject with tcp reset\n\t}\n}\n"
		both := strings.Replace(v4only, "\t}\n}", "\t\tip6 daddr fd00:ec2::254 tcp dport 80 meta skuid != 0 reject with tcp reset\n\t}\n}", 1)
		check := []Check{{Name: UserNoIMDS, run: checkUserNoIMDS}}
		if os.WriteFile(rules, []byte(v4only), 0o600) != nil || !sh("nft", "-f", rules) {
			return
		}
		wantResult(t, RunChecks(context.Background(), env, check)[0], false, "reaches IMDS at [fd00:ec2::254]:80", "sudo ccboot repair --only imds-filter")
		if !sh("nft", "delete", "table", "inet", "ccboot_imds") || os.WriteFile(rules, []byte(both), 0o600) != nil || !sh("nft", "-f", rules) {
			return
		}
		wantResult(t, RunChecks(context.Background(), env, check)[0], true,
			"cannot reach IMDS at 169.254.169.254:80 (connection refused) or [fd00:ec2::254]:80 (connection refused); root can", "")
	})
}

func TestEnforcedUserNoRoot(t *testing.T) {
	_, env, _ := enforcedSetup(t)
	// A root-granting group.
	env.Groups = []sysuser.Group{{Name: "nobody", GID: nobody}, {Name: "docker", GID: 998, Members: []string{"nobody"}}}
	wantResult(t, runOne(t, env, UserNoRoot), false, "nobody (uid 65534) is in group docker, which grants root", "sudo ccboot repair --only user-privileges")
	env.Groups = []sysuser.Group{{Name: "nobody", GID: nobody}}

	// A sudo rule, as cloud-init writes it.
	env.Run = sudoSays{"Matching Defaults entries for nobody on host:\n    env_reset\n\nUser nobody may run the following commands on host:\n    (ALL) NOPASSWD: ALL\n"}
	wantResult(t, runOne(t, env, UserNoRoot), false, "has sudo rules (sudo -l -U nobody lists (ALL) NOPASSWD: ALL)", "visudo, then run `sudo ccboot repair --only user-privileges`")
	env.Run = sudoSays{"sudo: something else\n"}
	wantResult(t, runOne(t, env, UserNoRoot), false, "cannot tell whether nobody may use sudo", "sudo -l -U nobody")
	env.Run = sudoSays{sudoNone}

	// The root daemon's socket: the child as the user connects, or not.
	if nstest.AcceptAndClose(t, "unix", env.DockerSocket) == "" {
		t.FailNow()
	}
	if err := os.Chmod(env.DockerSocket, 0o666); err != nil {
		t.Fatal(err)
	}
	wantResult(t, runOne(t, env, UserNoRoot), false, "can connect to the root docker socket "+env.DockerSocket+" (mode 0666)", "sudo chmod 0660 "+env.DockerSocket)
	// root:docker 0660 with the user in docker's group id (not by name
	// in RootGroups: a renamed group still grants root).
	if err := os.Chown(env.DockerSocket, 0, 998); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(env.DockerSocket, 0o660)
	env.Groups = []sysuser.Group{{Name: "nobody", GID: nobody}, {Name: "containers", GID: 998}}
	wantResult(t, runOne(t, env, UserNoRoot), false, "can connect to the root docker socket", "the user must not be in docker")
	env.Groups = []sysuser.Group{{Name: "nobody", GID: nobody}}
	wantResult(t, runOne(t, env, UserNoRoot), true, "cannot connect to the root docker socket "+env.DockerSocket+" (permission denied)", "")
}

func TestEnforcedBrokerReadOnly(t *testing.T) {
	fake, env, approvals := enforcedSetup(t)
	wantResult(t, runOne(t, env, BrokerReadOnly), true, "assumed-role/claudecode-readonly-demo/claudecode-readonly-session", "")

	// No broker on the socket.
	saved := env.BrokerSocket
	env.BrokerSocket = filepath.Join(filepath.Dir(saved), "none.sock")
	wantResult(t, runOne(t, env, BrokerReadOnly), false, "cannot get ReadOnly from the broker: cannot reach the credential broker", "ccboot-broker.socket")
	wantResult(t, runOne(t, env, BrokerElevatedRefused), false, "cannot reach the broker", "ccboot-broker.socket")

	// A broker serving another uid refuses the user.
	env.BrokerSocket = filepath.Join(filepath.Dir(saved), "other.sock")
	startBroker(t, env, env.IMDSEndpoint, fake.URL, approvals, 4242)
	wantResult(t, runOne(t, env, BrokerReadOnly), false, "the broker refuses ReadOnly to nobody (uid 65534)", "journalctl -u ccboot-broker")

	// A broker handing out credentials of the wrong role.
	env.BrokerSocket = filepath.Join(filepath.Dir(saved), "wrong.sock")
	wrong := *env
	wrong.ReadOnly.RoleARN = env.Elevated.RoleARN
	wrong.ReadOnly.Session = env.Elevated.Session
	startBroker(t, &wrong, env.IMDSEndpoint, fake.URL, approvals, nobody)
	wantResult(t, runOne(t, env, BrokerReadOnly), false, "are arn:aws:sts::111122223333:assumed-role/claudecode-elevated-demo/claudecode-elevated-session, want arn:aws:sts::111122223333:assumed-role/claudecode-readonly-demo/", "restart the broker")
}

// leakyBroker answers every request with credentials: a broker that
// issues Elevated without an approval.
func leakyBroker(t *testing.T, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(path, 0o666)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 256)
			_, _ = c.Read(buf)
			fmt.Fprintf(c, `{"Version":1,"AccessKeyId":"ASIALEAKED","SecretAccessKey":"s","SessionToken":"t","Expiration":%q}`+"\n", time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
			c.Close()
		}
	}()
}

func TestEnforcedBrokerElevatedRefused(t *testing.T) {
	_, env, approvals := enforcedSetup(t)
	r := runOne(t, env, BrokerElevatedRefused)
	wantResult(t, r, true, "no approval is active and the broker refuses Elevated to nobody (uid 65534): \""+broker.NotApproved, "")

	// An approval for a session: the probe is outside it, still refused,
	// and the check says whose window is open.
	until := time.Now().Add(30 * time.Minute)
	a := broker.Approval{Unit: "ccboot-elevated-7.scope", UID: nobody, Approver: "ssm-user", Created: time.Now().Add(-time.Minute), Until: until}
	if err := approvals.Add(a); err != nil {
		t.Fatal(err)
	}
	env.Approvals, env.ApprovalsErr = approvals.Active(time.Now())
	wantResult(t, runOne(t, env, BrokerElevatedRefused), true, "approved until "+until.Local().Format("15:04")+" for unit ccboot-elevated-7.scope; outside it nobody (uid 65534) is refused", "")

	env.BrokerSocket = filepath.Join(filepath.Dir(env.BrokerSocket), "leaky.sock")
	leakyBroker(t, env.BrokerSocket)
	r = runOne(t, env, BrokerElevatedRefused)
	wantResult(t, r, false, "the broker gave Elevated to a process of nobody (uid 65534) outside any approved session", "sudo ccboot elevate --revoke")
	if strings.Contains(r.Detail+r.Fix, "ASIALEAKED") {
		t.Errorf("credentials shown: %+v", r)
	}
}

// The probe runs as the user with only the user's groups: not root's.
func TestEnforcedProbeDropsRootGroups(t *testing.T) {
	needRoot(t)
	old, err := syscall.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setgroups([]int{0, 4242}); err != nil {
		t.Skipf("setgroups: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Setgroups(old) })
	dir := openDir(t)
	sock := filepath.Join(dir, "root-group.sock")
	if nstest.AcceptAndClose(t, "unix", sock) == "" {
		t.FailNow()
	}
	_ = os.Chown(sock, 0, 4242)
	_ = os.Chmod(sock, 0o660)
	s := &state{env: &Env{EnforcedEnv: EnforcedEnv{User: sysuser.User{Name: "nobody", UID: nobody, GID: nobody}, Probe: []string{"/proc/self/exe", ProbeCommand}}}}
	rep, err := s.asUser(context.Background(), "connect", "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Connected {
		t.Errorf("the probe as nobody connected to a socket of root's supplementary group 4242")
	}
}

func TestProbeRefusesRoot(t *testing.T) {
	needRoot(t)
	var out, errOut strings.Builder
	if code := ProbeMain(context.Background(), []string{"connect", "tcp", "127.0.0.1:9"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "internal to `ccboot doctor`") {
		t.Errorf("ProbeMain as root = %d %q", code, errOut.String())
	}
}

func TestIMDSAddr(t *testing.T) {
	for in, want := range map[string]string{
		"": DefaultIMDSAddr, "http://127.0.0.1:1338": "127.0.0.1:1338", "http://[fd00:ec2::254]": "[fd00:ec2::254]:80", "https://imds.local": "imds.local:443",
	} {
		if got, err := imdsAddr(in); got != want || err != nil {
			t.Errorf("imdsAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := imdsAddr("::nope"); err == nil {
		t.Error("a bad endpoint passed")
	}
}
