package main

// [tiers] mode = enforced wired end to end through the built binary: the
// aws-config step's credential_process profiles and the broker's units
// under --root, and the credential path itself: `ccboot broker` on a
// socket of the test's, AWS's metadata mock and a fake STS on loopback,
// and the AWS SDK for Go (and the AWS CLI, where installed) running the
// exact credential_process line the step wrote, as the target user.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/broker"
	"github.com/ccboot/ccboot/bootstrap/doctor/doctortest"
	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
)

// openToOthers makes root reachable by other users (t.TempDir's parent is
// 0700), so a check run as nobody is stopped only by the modes ccboot
// sets, not by the test's own directory.
func openToOthers(t *testing.T, root string) {
	t.Helper()
	for d := root; d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// binForOthers is a copy of the binary that nobody may run.
func binForOthers(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	openToOthers(t, dir)
	data, err := os.ReadFile(ccbootBin)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "ccboot")
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

const brokerUser = 1000 // ec2-user in the test root

// approvedScope makes system.slice/UNIT in the cgroup v2 hierarchy (as
// systemd would for `systemd-run --scope`) and returns a descriptor of it
// for CLONE_INTO_CGROUP, or -1 with the reason it cannot.
func approvedScope(t *testing.T, unit string) (int, string) {
	t.Helper()
	mount, err := broker.CgroupMount()
	if err != nil {
		return -1, err.Error()
	}
	slice := filepath.Join(mount, "system.slice")
	if _, err := os.Stat(slice); os.IsNotExist(err) {
		if err := os.Mkdir(slice, 0o755); err != nil {
			return -1, fmt.Sprintf("cannot make %s: %v", slice, err)
		}
		t.Cleanup(func() { _ = os.Remove(slice) })
	}
	dir := filepath.Join(slice, unit)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return -1, fmt.Sprintf("cannot make %s: %v", dir, err)
	}
	f, err := os.Open(dir)
	if err != nil {
		return -1, err.Error()
	}
	t.Cleanup(func() {
		f.Close()
		for i := 0; i < 50 && os.Remove(dir) != nil; i++ {
			time.Sleep(20 * time.Millisecond) // the last process is still leaving
		}
	})
	return int(f.Fd()), ""
}

func writeApproval(t *testing.T, root, unit string, created, until time.Time) string {
	t.Helper()
	dir := filepath.Join(root, "var/lib/ccboot/approvals")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(broker.Approval{Unit: unit, UID: brokerUser, Approver: "alice (sudo)", Reason: "test", Created: created, Until: until})
	p := filepath.Join(dir, unit+".json")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// enforcedAWSConfig is what the aws-config step writes in enforced mode
// for the metadata mock's instance (Region eu-west-1).
const enforcedAWSConfig = "[default]\nregion = eu-west-1\n\n" +
	"[profile claudecode-readonly]\ncredential_process = /usr/local/bin/ccboot credentials readonly\nregion = eu-west-1\n\n" +
	"[profile claudecode-elevated]\ncredential_process = /usr/local/bin/ccboot credentials elevated\nregion = eu-west-1\n"

var brokerUnitFiles = []string{"ccboot-broker.socket", "ccboot-broker.service"}

const brokerSocketWantsLink = "etc/systemd/system/sockets.target.wants/ccboot-broker.socket"

// An enforced run writes the credential_process profiles and installs and
// enables the broker's units (packaging/systemd's bytes); a second run
// changes nothing; advisory after enforced gives back today's file and
// removes the units.
func TestBlackboxEnforcedWiresTheBroker(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	imds := aemmtest.Start(t, aemmtest.Default())
	flags := []string{"--root", root, "--imds-endpoint", imds}
	enforced := append([]string{"--set", "tiers.mode=enforced"}, flags...)
	awsConfig := filepath.Join(root, "home/ec2-user/.aws/config")

	if r := ccboot(t, append([]string{"run"}, flags...)...); r.code != 0 {
		t.Fatalf("advisory run exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	advisory, err := os.ReadFile(awsConfig)
	if err != nil || !bytes.Contains(advisory, []byte("credential_source = Ec2InstanceMetadata")) {
		t.Fatalf("advisory ~/.aws/config (%v):\n%s", err, advisory)
	}

	first := ccboot(t, append([]string{"run"}, enforced...)...)
	if first.code != 0 || !strings.Contains(first.stdout, "credential-broker changed") || !strings.Contains(first.stdout, "aws-config    changed") {
		t.Fatalf("enforced run exit %d\n%s%s", first.code, first.stdout, first.stderr)
	}
	if got, _ := os.ReadFile(awsConfig); string(got) != enforcedAWSConfig {
		t.Errorf("enforced ~/.aws/config:\n%s\nwant\n%s", got, enforcedAWSConfig)
	}
	for _, unit := range brokerUnitFiles {
		got, _ := os.ReadFile(filepath.Join(root, "etc/systemd/system", unit))
		checkedIn, _ := os.ReadFile("../../packaging/systemd/" + unit)
		if len(got) == 0 || !bytes.Equal(got, checkedIn) {
			t.Errorf("%s written differs from packaging/systemd's:\n%s", unit, got)
		}
	}
	// The real `systemctl --root enable` made the link sockets.target follows.
	if dest, err := os.Readlink(filepath.Join(root, brokerSocketWantsLink)); err != nil || !strings.HasSuffix(dest, "/ccboot-broker.socket") {
		t.Errorf("ccboot-broker.socket not enabled: %q %v", dest, err)
	}
	if bashrc, _ := os.ReadFile(filepath.Join(root, "home/ec2-user/.bashrc")); !strings.Contains(string(bashrc),
		"alias claude-el='/usr/local/bin/ccboot credentials elevated >/dev/null && AWS_PROFILE=claudecode-elevated claude'\n") ||
		!strings.Contains(string(bashrc), "alias claude-ro='AWS_PROFILE=claudecode-readonly claude'\n") {
		t.Errorf("enforced aliases:\n%s", bashrc)
	}

	before := stamps(t, root)
	second := ccboot(t, append([]string{"repair"}, enforced...)...)
	if second.code != 0 || !strings.Contains(second.stdout, "done: 0 changed, 12 ok") {
		t.Fatalf("second enforced run exit %d, want no changes:\n%s%s", second.code, second.stdout, second.stderr)
	}
	for f, b := range stamps(t, root) {
		if before[f] != b {
			t.Errorf("%s was rewritten by the no-op enforced run", f)
		}
	}

	back := ccboot(t, append([]string{"run"}, flags...)...)
	if back.code != 0 || !strings.Contains(back.stdout, "credential-broker changed") {
		t.Fatalf("advisory run after enforced exit %d\n%s%s", back.code, back.stdout, back.stderr)
	}
	if got, _ := os.ReadFile(awsConfig); !bytes.Equal(got, advisory) {
		t.Errorf("advisory after enforced is not today's file:\n%s", bootstrap.UnifiedDiff(awsConfig, advisory, got))
	}
	for _, p := range []string{"etc/systemd/system/ccboot-broker.socket", "etc/systemd/system/ccboot-broker.service", brokerSocketWantsLink} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("advisory left %s", p)
		}
	}
}

// withInstalledBinary runs start on an OS thread of its own whose private
// mount namespace has dir over /usr/local/bin: children it starts see the
// built ccboot at the installed path the profiles name, and the host's
// /usr/local/bin is untouched. The thread is never unlocked, so the Go
// runtime ends it with the goroutine.
func withInstalledBinary(dir string, start func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			done <- err
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			done <- err
			return
		}
		if err := unix.Mount(dir, filepath.Dir(bootstrap.InstalledBinary), "", unix.MS_BIND, ""); err != nil {
			done <- err
			return
		}
		done <- start()
	}()
	return <-done
}

// The credential path as a user's tools walk it: the profiles the step
// wrote, the SDK's credential_process provider running their exact
// command as ec2-user, the built broker answering on its socket with the
// instance role's credentials from the metadata mock. ReadOnly comes back
// with an Expiration and STS sees the ReadOnly role; Elevated is refused
// with the broker's message, and STS never sees Elevated assumed.
func TestBlackboxEnforcedCredentialPath(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	openToOthers(t, root)
	imds := aemmtest.Start(t, aemmtest.Default())
	if r := ccboot(t, "run", "--set", "tiers.mode=enforced", "--root", root, "--imds-endpoint", imds); r.code != 0 {
		t.Fatalf("enforced run exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	awsConfig := filepath.Join(root, "home/ec2-user/.aws/config")
	if got, _ := os.ReadFile(awsConfig); string(got) != enforcedAWSConfig {
		t.Fatalf("enforced ~/.aws/config:\n%s", got)
	}

	fake := doctortest.New(t, "111122223333", "eu-west-1")
	fake.Set(func(f *doctortest.Fake) {
		f.Trust["claudecode-elevated-demo"] = "claudecode-ec2-demo" // enforced trust
	})
	socket := filepath.Join(root, "broker.sock")
	brokerLog := filepath.Join(t.TempDir(), "broker.log")
	logFile, err := os.Create(brokerLog)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	brokerProc := exec.Command(ccbootBin, "broker", "--root", root, "--imds-endpoint", imds, "--socket", socket)
	brokerProc.Env = append(os.Environ(), "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9", "INVOCATION_ID=", "NOTIFY_SOCKET=",
		"AWS_ENDPOINT_URL_STS="+fake.URL, "AWS_ENDPOINT_URL=http://127.0.0.1:9")
	// As the unit runs it: stdout is the journal, stderr ccboot's log opened
	// for appending (StandardError=append:/var/log/ccboot.log).
	ccbootLog := filepath.Join(root, "var/log/ccboot.log")
	appendLog, err := os.OpenFile(ccbootLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer appendLog.Close()
	brokerProc.Stdout, brokerProc.Stderr = logFile, appendLog
	if err := brokerProc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = brokerProc.Process.Signal(syscall.SIGTERM)
		_ = brokerProc.Wait()
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if fi, err := os.Stat(socket); err == nil && fi.Mode()&os.ModeSocket != 0 {
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(brokerLog)
			t.Fatalf("broker did not listen on %s:\n%s", socket, log)
		}
	}

	// The SDK's side, built once; it and ccboot are run as ec2-user.
	helper := filepath.Join(filepath.Dir(binForOthers(t)), "processcreds")
	if out, err := exec.Command("go", "build", "-o", helper, "./testdata/processcreds").CombinedOutput(); err != nil {
		t.Fatalf("build processcreds: %v\n%s", err, out)
	}
	installed := filepath.Dir(binForOthers(t))
	userEnv := []string{
		"PATH=/usr/bin:/bin", "HOME=" + filepath.Join(root, "home/ec2-user"), "AWS_CONFIG_FILE=" + awsConfig,
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true", "AWS_ENDPOINT_URL_STS=" + fake.URL,
		brokerSocketEnv + "=" + socket,
	}
	// asUserIn runs name as ec2-user, in cgroupFD's cgroup when >= 0.
	asUserIn := func(cgroupFD int, name string, args ...string) result {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = userEnv
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: brokerUser, Gid: brokerUser}}
		if cgroupFD >= 0 {
			cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, cgroupFD
		}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := withInstalledBinary(installed, cmd.Start); err != nil {
			t.Fatalf("start %s as ec2-user: %v", name, err)
		}
		timer := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
		defer timer.Stop()
		var exit *exec.ExitError
		if err := cmd.Wait(); err != nil && !errors.As(err, &exit) {
			t.Fatalf("%s: %v", name, err)
		}
		return result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String()}
	}
	asUser := func(name string, args ...string) result {
		t.Helper()
		return asUserIn(-1, name, args...)
	}

	ro := asUser(helper, "claudecode-readonly")
	var got struct {
		AccessKeyID, Source, Arn string
		CanExpire                bool
		Expires                  time.Time
	}
	if ro.code != 0 || json.Unmarshal([]byte(ro.stdout), &got) != nil {
		log, _ := os.ReadFile(brokerLog)
		t.Fatalf("SDK, profile claudecode-readonly: exit %d\n%s%s\nbroker:\n%s", ro.code, ro.stdout, ro.stderr, log)
	}
	if !strings.HasPrefix(got.AccessKeyID, "ASIAFAKE") || got.Source != "ProcessProvider" || !got.CanExpire || got.Expires.IsZero() ||
		!strings.HasPrefix(got.Arn, "arn:aws:sts::111122223333:assumed-role/claudecode-readonly-demo/") {
		t.Errorf("SDK, profile claudecode-readonly: %+v; want the broker's ReadOnly credentials with an Expiration", got)
	}

	const refusal = "Elevated access is not approved: an admin runs `sudo ccboot elevate --for 30m`"
	el := asUser(helper, "claudecode-elevated")
	if el.code != 1 || !strings.Contains(el.stderr, refusal) || el.stdout != "" {
		t.Errorf("SDK, profile claudecode-elevated: exit %d, stdout %q, stderr %q; want the broker's refusal", el.code, el.stdout, el.stderr)
	}
	// Issue 21: every issuance (tier, uid, pid, approval) goes to ccboot's
	// log and the journal.
	for _, where := range []string{ccbootLog, brokerLog} {
		assertBrokerLogged(t, where, "issued credentials", "readonly", brokerUser)
		assertBrokerLogged(t, where, "refused credentials", "elevated", brokerUser)
	}

	// The AWS CLI (Debian's 2.9 knows no AWS_ENDPOINT_URL_STS, hence
	// --endpoint-url), the client the user types at.
	if _, err := os.Stat("/usr/bin/aws"); err == nil {
		cli := asUser("/usr/bin/aws", "sts", "get-caller-identity", "--profile", "claudecode-readonly", "--endpoint-url", fake.URL, "--output", "json")
		if cli.code != 0 || !strings.Contains(cli.stdout, `"Arn": "arn:aws:sts::111122223333:assumed-role/claudecode-readonly-demo/`) {
			t.Errorf("aws sts get-caller-identity --profile claudecode-readonly: exit %d\n%s%s", cli.code, cli.stdout, cli.stderr)
		}
		cli = asUser("/usr/bin/aws", "sts", "get-caller-identity", "--profile", "claudecode-elevated", "--endpoint-url", fake.URL)
		if cli.code == 0 || !strings.Contains(cli.stderr, refusal) {
			t.Errorf("aws sts get-caller-identity --profile claudecode-elevated: exit %d\n%s%s", cli.code, cli.stdout, cli.stderr)
		}
	} else {
		t.Log("no /usr/bin/aws (apt-get install awscli): the AWS CLI's side not run")
	}

	for _, arn := range fake.AssumeRoleARNs() {
		if strings.Contains(arn, "elevated") {
			t.Errorf("STS was asked for Elevated (%s) without an approval", arn)
		}
	}
	if calls := strings.Join(fake.Calls(), "\n"); !strings.Contains(calls, "sts AssumeRole claudecode-ec2-demo") || !strings.Contains(calls, "sts GetCallerIdentity claudecode-readonly-demo") {
		t.Errorf("STS calls:\n%s\nwant ReadOnly assumed by the instance role, then used", calls)
	}

	// Approved, as `sudo ccboot elevate` does it: root's approval for a
	// scope of root's, and a process of the user inside it. The same
	// profile then gives Elevated, assumed with the instance role's
	// credentials; the user's other processes are still refused.
	unit := "ccboot-elevated-951.scope"
	fd, why := approvedScope(t, unit)
	if fd < 0 {
		t.Logf("the approved session not run: %s", why)
		return
	}
	now := time.Now()
	writeApproval(t, root, unit, now.Add(-time.Minute), now.Add(30*time.Minute))
	in := asUserIn(fd, helper, "claudecode-elevated")
	got.Arn = ""
	if in.code != 0 || json.Unmarshal([]byte(in.stdout), &got) != nil || !got.CanExpire ||
		!strings.HasPrefix(got.Arn, "arn:aws:sts::111122223333:assumed-role/claudecode-elevated-demo/") {
		log, _ := os.ReadFile(brokerLog)
		t.Errorf("SDK, profile claudecode-elevated in %s: exit %d\n%s%s\nbroker:\n%s", unit, in.code, in.stdout, in.stderr, log)
	}
	if beside := asUser(helper, "claudecode-elevated"); beside.code != 1 || !strings.Contains(beside.stderr, refusal) {
		t.Errorf("SDK, profile claudecode-elevated beside the approved session: exit %d\n%s%s", beside.code, beside.stdout, beside.stderr)
	}
	if calls := strings.Join(fake.Calls(), "\n"); strings.Contains(calls, "sts AssumeRole claudecode-readonly-demo") {
		t.Errorf("Elevated was assumed from ReadOnly, not from the instance role:\n%s", calls)
	}
}

// assertBrokerLogged finds a JSON log line of the broker in file with msg,
// tier, the caller's uid, a pid, and an approval field.
func assertBrokerLogged(t *testing.T, file, msg, tier string, uid int) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("broker log: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		var rec struct {
			Msg, Tier string
			UID, PID  int
			Approval  *string
		}
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if rec.Msg == msg && rec.Tier == tier && rec.UID == uid && rec.PID > 0 && rec.Approval != nil {
			return
		}
	}
	t.Errorf("%s has no JSON line %q with tier %s, uid %d, a pid and an approval field:\n%s", file, msg, tier, uid, b)
}
