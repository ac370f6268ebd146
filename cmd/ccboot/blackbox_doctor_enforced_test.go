package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/broker"
	"github.com/ccboot/ccboot/bootstrap/doctor"
	"github.com/ccboot/ccboot/bootstrap/doctor/doctortest"
	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
	"github.com/ccboot/ccboot/bootstrap/nstest"
)

// The IMDS stand-in's address inside the test's network namespace: fixed,
// since nothing else lives there, so the golden output is stable.
const enforcedIMDS = "127.0.0.1:1338"

// TestBlackboxDoctorEnforced runs the built binary on a root ccboot
// converged with [tiers] mode = enforced, inside a private network
// namespace: the metadata mock, the fake STS/Bedrock, the real broker
// (`ccboot broker`) and doctor all live there, and the IMDS filter is real
// nft (the imds-filter step's rule shape). All checks pass (golden); then
// each invariant is broken on its own and its check FAILs naming its fix,
// and passes again once restored.
func TestBlackboxDoctorEnforced(t *testing.T) {
	root := newRoot(t)
	for _, tool := range []string{"nft", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (packaging/dev-deps.sh installs nftables)", tool)
		}
	}
	// The user's probes must reach sockets under the root: t.TempDir's
	// directories are 0700.
	for d := root; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	hostIMDS := aemmtest.Start(t, aemmtest.Default())
	enforced := []string{"--root", root, "--set", "tiers.mode=enforced"}
	if r := ccboot(t, append([]string{"run", "--imds-endpoint", hostIMDS}, enforced...)...); r.code != 0 {
		t.Fatalf("run (enforced) exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	nstest.Run(t, syscall.CLONE_NEWNET, func() { enforcedScenario(t, root, enforced) })
}

// enforcedScenario runs in the namespace: t.Error only, and return.
func enforcedScenario(t *testing.T, root string, enforced []string) {
	sh := func(args ...string) bool { return nstest.Sh(t, args...) }
	if !startAEMMHere(t) {
		return
	}
	fake := doctortest.New(t, "111122223333", "eu-west-1")
	// Enforced trust: Elevated trusts the instance role, not ReadOnly.
	fake.Set(func(f *doctortest.Fake) { f.Trust["claudecode-elevated-demo"] = "claudecode-ec2-demo" })
	flags := append([]string{"--imds-endpoint", "http://" + enforcedIMDS}, enforced...)
	stopBroker := startBrokerHere(t, root, fake.URL, flags)
	if stopBroker == nil {
		return
	}
	defer func() { stopBroker() }()
	filter := filepath.Join(t.TempDir(), "imds.nft")
	host, port, _ := net.SplitHostPort(enforcedIMDS)
	rules := fmt.Sprintf("table inet ccboot_imds {\n\tchain output {\n\t\ttype filter hook output priority 0; policy accept;\n\t\tip daddr %s tcp dport %s meta skuid != 0 reject with tcp reset\n\t}\n}\n", host, port)
	if err := os.WriteFile(filter, []byte(rules), 0o600); err != nil {
		t.Error(err)
		return
	}
	if !sh("nft", "-f", filter) {
		return
	}
	shell := doctorShell(t, fake.URL)
	doctorRun := func() result { return ccbootEnv(t, shell, append([]string{"doctor"}, flags...)...) }
	// want runs doctor and asserts check's line (and exit 1 on FAIL).
	want := func(what, check, prefix, fix string) {
		t.Helper()
		r := doctorRun()
		line := doctorLine(r.stdout, check)
		if !strings.HasPrefix(line, prefix) || !strings.Contains(line, fix) || (prefix == "FAIL" && r.code != 1) {
			t.Errorf("%s: exit %d, %s %q; want %s with %q\n%s%s", what, r.code, check, line, prefix, fix, r.stdout, r.stderr)
		}
	}

	r := doctorRun()
	if r.code != 0 || r.stderr != "" {
		t.Errorf("doctor (enforced, all in place): exit %d, stderr %q\n%s", r.code, r.stderr, r.stdout)
	}
	checkGolden(t, "doctor-enforced.golden", r.stdout)
	// Every run and repair keeps ccboot's lock directory at 0700 (the
	// lock): the broker's socket must not live behind it.
	lockDir := filepath.Join(root, strings.TrimPrefix(bootstrap.LockDir, "/"))
	if err := os.MkdirAll(lockDir, 0o700); err == nil && os.Chmod(lockDir, 0o700) == nil {
		want("lock directory 0700", doctor.BrokerReadOnly, "ok", "")
	} else {
		t.Error(err)
	}
	if strings.Contains(r.stdout, "ASIA") {
		t.Errorf("doctor printed credentials:\n%s", r.stdout)
	}
	rj := ccbootEnv(t, shell, append([]string{"doctor", "--format", "json"}, flags...)...)
	var results []doctor.Result
	if err := json.Unmarshal([]byte(rj.stdout), &results); err != nil || rj.code != 0 || len(results) != len(doctor.Checks())+5 {
		t.Errorf("doctor --format json: exit %d, %d results, %v\n%s", rj.code, len(results), err, rj.stdout)
	}

	// 1. The filter is gone: the user reaches IMDS.
	if sh("nft", "delete", "table", "inet", "ccboot_imds") {
		want("no IMDS filter", doctor.UserNoIMDS, "FAIL", "ec2-user (uid 1000) reaches IMDS at "+enforcedIMDS+", so it can take the instance role's credentials: the packet filter is not in place; fix: run `sudo ccboot repair --only imds-filter`")
		sh("nft", "-f", filter)
	}
	want("filter restored", doctor.UserNoIMDS, "ok", "ec2-user (uid 1000) cannot reach IMDS at "+enforcedIMDS+" (connection refused); root can")

	// 2. The user is back in docker (a root-granting group).
	groupFile := filepath.Join(root, "etc/group")
	groups, err := os.ReadFile(groupFile)
	if err != nil {
		t.Error(err)
		return
	}
	withDocker := string(groups)
	if !strings.Contains(withDocker, "\ndocker:x:") {
		withDocker += "docker:x:998:\n"
	}
	withDocker = addMember(withDocker, "docker", "ec2-user")
	if err := os.WriteFile(groupFile, []byte(withDocker), 0o644); err == nil {
		want("user in docker", doctor.UserNoRoot, "FAIL", "ec2-user (uid 1000) is in group docker, which grants root; fix: run `sudo ccboot repair --only user-privileges`")
	}
	if err := os.WriteFile(groupFile, groups, 0o644); err != nil {
		t.Error(err)
		return
	}

	// 3. The root daemon's socket is open to everyone.
	dockerSock := filepath.Join(root, "var/run/docker.sock")
	if err := os.MkdirAll(filepath.Dir(dockerSock), 0o755); err != nil {
		t.Error(err)
		return
	}
	if ln, err := net.Listen("unix", dockerSock); err != nil {
		t.Error(err)
	} else {
		go acceptAndClose(ln)
		_ = os.Chmod(dockerSock, 0o666)
		want("docker socket 0666", doctor.UserNoRoot, "FAIL", "can connect to the root docker socket "+dockerSock+" (mode 0666), which runs containers as root; fix: run `sudo chmod 0660 "+dockerSock+"`")
		_ = os.Chmod(dockerSock, 0o660)
		want("docker socket 0660", doctor.UserNoRoot, "ok", "cannot connect to the root docker socket "+dockerSock+" (permission denied)")
		ln.Close()
	}

	// 4. ReadOnly may assume Elevated (the advisory trust).
	fake.Set(func(f *doctortest.Fake) { f.Trust["claudecode-elevated-demo"] = "claudecode-readonly-demo" })
	want("advisory trust", doctor.ReadOnlyNoElevated, "FAIL", "an agent with ReadOnly escalates without the broker; fix: update the stack with TierMode=enforced")
	fake.Set(func(f *doctortest.Fake) { f.Trust["claudecode-elevated-demo"] = "claudecode-ec2-demo" })

	// 5. An approval is open: still refused outside its session, and said.
	until := time.Now().Add(30 * time.Minute)
	writeDoctorApproval(t, root, broker.Approval{Unit: "ccboot-elevated-1.scope", UID: 1000, Approver: "ssm-user (sudo)", Reason: "apply the plan",
		Created: time.Now().Add(-time.Minute), Until: until})
	want("approval open", doctor.BrokerElevatedRefused, "ok", "approved until "+until.Local().Format("15:04")+" for unit ccboot-elevated-1.scope; outside it ec2-user (uid 1000) is refused")
	st := ccboot(t, append([]string{"status"}, flags...)...)
	if !strings.Contains(st.stdout, "\ntiers: enforced (") || !strings.Contains(st.stdout, "elevated: ccboot-elevated-1.scope for uid 1000 until") {
		t.Errorf("status text lacks the mode or the window:\n%s", st.stdout)
	}
	sj := ccboot(t, append([]string{"status", "--format", "json"}, flags...)...)
	var status struct {
		Tiers   string            `json:"tiers"`
		Windows []broker.Approval `json:"elevated_windows"`
	}
	if err := json.Unmarshal([]byte(sj.stdout), &status); err != nil || status.Tiers != "enforced" || len(status.Windows) != 1 || status.Windows[0].Unit != "ccboot-elevated-1.scope" {
		t.Errorf("status --format json: %v %+v\n%s", err, status, sj.stdout)
	}
	_ = os.RemoveAll(filepath.Join(root, "var/lib/ccboot/approvals"))

	// 6. The broker's directory is closed to the user.
	brokerDir := filepath.Join(root, strings.TrimPrefix(filepath.Dir(broker.DefaultSocket), "/"))
	if err := os.Chmod(brokerDir, 0o700); err == nil {
		want("broker directory 0700", doctor.BrokerReadOnly, "FAIL", "permission denied; an admin starts it: sudo systemctl start ccboot-broker.socket; fix: "+brokerDir+" is mode 0700, so ec2-user cannot reach the broker's socket in it: `sudo chmod 0755 "+brokerDir+"`")
		_ = os.Chmod(brokerDir, 0o755)
	}

	// 7. The broker is down: neither tier can be had, each says how to start it.
	stopBroker()
	stopBroker = func() {}
	r = doctorRun()
	for _, c := range []string{doctor.BrokerReadOnly, doctor.BrokerElevatedRefused} {
		if l := doctorLine(r.stdout, c); !strings.HasPrefix(l, "FAIL") || !strings.Contains(l, "cannot reach the credential broker") || !strings.Contains(l, "ccboot-broker.socket") {
			t.Errorf("broker down: %s %q\n%s", c, l, r.stdout)
		}
	}
	// And in advisory mode none of the enforced checks runs.
	ra := ccbootEnv(t, shell, "doctor", "--root", root, "--imds-endpoint", "http://"+enforcedIMDS, "--format", "json")
	var adv []doctor.Result
	if err := json.Unmarshal([]byte(ra.stdout), &adv); err != nil || len(adv) != len(doctor.Checks()) {
		t.Errorf("advisory doctor: %d results, %v\n%s", len(adv), err, ra.stdout)
	}
}

func acceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// addMember adds user to group's member list in /etc/group text.
func addMember(groups, group, user string) string {
	lines := strings.Split(groups, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, group+":") {
			if strings.HasSuffix(l, ":") {
				lines[i] = l + user
			} else {
				lines[i] = l + "," + user
			}
		}
	}
	return strings.Join(lines, "\n")
}

func writeDoctorApproval(t *testing.T, root string, a broker.Approval) {
	t.Helper()
	dir := filepath.Join(root, "var/lib/ccboot/approvals")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Error(err)
		return
	}
	data, _ := json.Marshal(a)
	if err := os.WriteFile(filepath.Join(dir, a.Unit+".json"), data, 0o600); err != nil {
		t.Error(err)
	}
}

// startAEMMHere starts AWS's metadata mock in this thread's namespace and
// waits until it hands out a token (raw HTTP on a connection dialled from
// this thread: net/http dials on other threads, outside the namespace).
func startAEMMHere(t *testing.T) bool {
	bin, err := aemmtest.Binary()
	if err != nil {
		t.Error(err)
		return false
	}
	dir := t.TempDir()
	cfg, err := aemmtest.ConfigJSON(aemmtest.Default())
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "aemm.json"), cfg, 0o644)
	}
	if err != nil {
		t.Error(err)
		return false
	}
	host, port, _ := net.SplitHostPort(enforcedIMDS)
	cmd := exec.Command(bin, "-n", host, "-p", port, "-I", "-c", filepath.Join(dir, "aemm.json"))
	cmd.Env = append(os.Environ(), "HOME="+dir)
	if err := cmd.Start(); err != nil {
		t.Error(err)
		return false
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		c, err := net.Dial("tcp", enforcedIMDS)
		if err != nil {
			continue
		}
		fmt.Fprintf(c, "PUT /latest/api/token HTTP/1.0\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		status, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if strings.Contains(status, " 200 ") {
			return true
		}
	}
	t.Error("metadata mock did not answer in the namespace")
	return false
}

// startBrokerHere runs `ccboot broker` on the root's socket in this
// thread's namespace; the returned func stops it (nil: it did not start).
func startBrokerHere(t *testing.T, root, stsURL string, flags []string) func() {
	sock := filepath.Join(root, strings.TrimPrefix(broker.DefaultSocket, "/"))
	for _, d := range []string{filepath.Dir(filepath.Dir(sock)), filepath.Dir(sock)} {
		// /run and /run/ccboot-broker are 0755 on an instance (systemd makes them).
		err := os.MkdirAll(d, 0o755)
		if err == nil {
			err = os.Chmod(d, 0o755)
		}
		if err != nil {
			t.Error(err)
			return nil
		}
	}
	cmd := exec.Command(ccbootBin, append([]string{"broker", "--socket", sock}, flags...)...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "AWS_ENDPOINT_URL_STS="+stsURL, "INVOCATION_ID=", "NOTIFY_SOCKET=")
	logf, _ := os.Create(filepath.Join(t.TempDir(), "broker.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Error(err)
		return nil
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			_ = os.Remove(sock)
		}
	}
	t.Cleanup(func() { stop(); logf.Close() })
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return stop
		}
	}
	log, _ := os.ReadFile(logf.Name())
	t.Errorf("ccboot broker did not listen on %s:\n%s", sock, log)
	stop()
	return nil
}
