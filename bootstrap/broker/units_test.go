package broker_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/broker"
)

const unitsDir = "../../packaging/systemd"

// unitKeys reads a unit file into "Section.Key" -> values, in order.
func unitKeys(t *testing.T, name string) map[string][]string {
	t.Helper()
	f, err := os.Open(filepath.Join(unitsDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys, section := map[string][]string{}, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not key=value: %q", name, line)
			}
			keys[section+"."+k] = append(keys[section+"."+k], v)
		}
	}
	return keys
}

// The units say what the code expects: the socket the client dials, a
// mode every user can connect with (SO_PEERCRED decides), the command
// that serves, and the hardening.
func TestBrokerUnitsMatchCode(t *testing.T) {
	sock := unitKeys(t, "ccboot-broker.socket")
	svc := unitKeys(t, "ccboot-broker.service")
	want := map[string]map[string]string{
		"ccboot-broker.socket": {
			"Socket.ListenStream": broker.DefaultSocket, "Socket.SocketMode": "0666", "Socket.SocketUser": "root",
			"Socket.Accept": "no", "Install.WantedBy": "sockets.target",
		},
		"ccboot-broker.service": {
			"Service.ExecStart": bootstrap.InstalledBinary + " broker", "Service.Type": "notify",
			"Unit.Requires": "ccboot-broker.socket", "Service.NoNewPrivileges": "yes", "Service.ProtectSystem": "strict",
			"Service.ProtectHome": "yes", "Service.CapabilityBoundingSet": "", "Service.MemoryMax": "64M",
			"Service.ProtectControlGroups": "yes", "Service.RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
		},
	}
	for name, keys := range map[string]map[string][]string{"ccboot-broker.socket": sock, "ccboot-broker.service": svc} {
		for k, v := range want[name] {
			if got := keys[k]; len(got) != 1 || got[0] != v {
				t.Errorf("%s: %s = %q, want exactly %q", name, k, got, v)
			}
		}
	}
	// PrivateUsers or a cgroup namespace would change what /proc/PID/cgroup
	// shows the broker; User= would take away the instance credentials.
	for _, k := range []string{"Service.PrivateUsers", "Service.User", "Service.DynamicUser"} {
		if v, ok := svc[k]; ok {
			t.Errorf("ccboot-broker.service sets %s=%q: the broker must run as root in the host's namespaces", k, v)
		}
	}
}

// systemd parses both units without a warning (unknown keys are only
// warnings, so any output about them fails the test).
func TestBrokerUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	dir := t.TempDir()
	for _, name := range []string{"ccboot-broker.socket", "ccboot-broker.service"} {
		data, err := os.ReadFile(filepath.Join(unitsDir, name))
		if err != nil {
			t.Fatal(err)
		}
		// verify wants ExecStart's binary to exist; the path itself is
		// checked against the code above.
		data = bytes.ReplaceAll(data, []byte(bootstrap.InstalledBinary), []byte("/bin/true"))
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(analyze, "verify", "--man=no", filepath.Join(dir, "ccboot-broker.socket"), filepath.Join(dir, "ccboot-broker.service")).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, dir) || strings.Contains(line, "ccboot-broker") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
}
