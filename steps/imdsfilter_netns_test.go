//go:build linux

package steps

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ccboot/ccboot/bootstrap/nstest"
	"github.com/ccboot/ccboot/bootstrap/runner"
)

// nobodyUID is the unprivileged caller: the agent's user stands in for it.
const nobodyUID = 65534

// The rules ccboot renders, loaded by the real nft into the real kernel, in
// a network namespace this test makes (loopback only, IMDS's addresses put
// on lo): root connects to IMDS, an unprivileged uid is refused at once,
// also as "root" of a user namespace of its own, also when another table
// accepts the traffic first. The step's Check reads the live table and
// finds it in sync; a deleted table lets the user in again and is the
// drift that repair's reload closes.
func TestIMDSFilterRealNftInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes a network namespace and loads nftables rules into it")
	}
	for _, tool := range []string{"nft", "ip", "bash", "timeout"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (packaging/dev-deps.sh installs nftables)", tool)
		}
	}
	nstest.Run(t, syscall.CLONE_NEWNET, func() { realNftScenario(t) })
}

// realNftScenario runs inside the namespace; t.Errorf only (not Fatal: this
// is not the test's goroutine).
func realNftScenario(t *testing.T) {
	ctx := context.Background()
	run := &runner.Exec{}
	sh := func(args ...string) error {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := sh("ip", "addr", "add", "169.254.169.254/32", "dev", "lo"); err != nil {
		t.Error(err)
		return
	}
	// The configured endpoint the filter must cover too (tests' IMDS mock
	// sits on loopback), beside the two real addresses.
	const endpoint = "http://127.0.0.2:8080"
	addrs := []string{"169.254.169.254:80", "127.0.0.2:8080"}
	if err := sh("ip", "-6", "addr", "add", "fd00:ec2::254/128", "dev", "lo", "nodad"); err != nil {
		t.Logf("no IPv6 in the namespace, the v6 rule is not exercised: %v", err)
	} else {
		addrs = append(addrs, "[fd00:ec2::254]:80")
	}
	for _, a := range addrs {
		if nstest.AcceptAndClose(t, "tcp", a) == "" {
			return
		}
	}
	expect := func(stage string, uid int, addr string, reach bool) {
		t.Helper()
		err := probeConnect(uid, addr)
		switch {
		case reach && err != nil:
			t.Errorf("%s: uid %d cannot reach %s: %v", stage, uid, addr, err)
		case !reach && err == nil:
			t.Errorf("%s: uid %d reached %s", stage, uid, addr)
		case !reach && !strings.Contains(err.Error(), "Connection refused"):
			t.Errorf("%s: uid %d to %s failed, but not by the filter's reset: %v", stage, uid, addr, err)
		}
	}

	// Without the filter everyone gets through: the probe can succeed as
	// the unprivileged uid, so a refusal later is the filter's doing.
	expect("no filter", nobodyUID, addrs[0], true)

	targets, err := imdsTargets(endpoint)
	if err != nil {
		t.Error(err)
		return
	}
	rules := renderIMDSFilter(targets)
	if err := loadIMDSFilter(ctx, run, rules); err != nil {
		t.Errorf("nft rejects the rendered rules: %v\n%s", err, rules)
		return
	}
	// Loading again, from the file as the boot unit does, is one
	// transaction replacing the table: not an error, not a second copy.
	file := filepath.Join(t.TempDir(), "imds-filter.nft")
	if err := os.WriteFile(file, rules, 0o644); err != nil {
		t.Error(err)
		return
	}
	if err := sh("nft", "-f", file); err != nil {
		t.Errorf("second load, from the file: %v", err)
	}
	live, err := liveIMDSFilter(ctx, run)
	if err != nil {
		t.Error(err)
		return
	}
	if diff := live.differences(targets); len(diff) != 0 || len(live.rules) != len(targets) {
		t.Errorf("Check on the real table: %q (rules %q)", diff, live.rules)
	}
	// "Connection refused" (not timeout's exit after 5 s) is the reset:
	// the caller learns at once, no client hangs on a dropped SYN.
	for _, a := range addrs {
		expect("filter loaded", 0, a, true)
		expect("filter loaded", nobodyUID, a, false)
	}

	// An IPv6 socket connecting to the v4-mapped address sends IPv4
	// packets, which the ip daddr rule sees (family inet covers both).
	expect("v4-mapped address", 0, "[::ffff:169.254.169.254]:80", true)
	expect("v4-mapped address", nobodyUID, "[::ffff:169.254.169.254]:80", false)

	// Root of a user namespace the user made is still the user to the
	// filter: the socket's owner is mapped into the network namespace's
	// owner (the host's), where it is 65534.
	if err := probeAs(nobodyUID, "unshare", "-r", "--", "bash", "-c", "exit 0"); err != nil {
		t.Logf("unprivileged user namespaces are off here, not exercised: %v", err)
	} else if err := probeAs(nobodyUID, "unshare", "-r", "--", "bash", "-c", "exec 3<>/dev/tcp/169.254.169.254/80"); err == nil {
		t.Error("root of an unprivileged user namespace reached IMDS")
	}

	// Another table that accepts the traffic first does not undo the
	// reject: in nftables a drop or reject in any base chain is final.
	other := "table inet other_accept {\n\tchain output {\n\t\ttype filter hook output priority -10; policy accept;\n\t\tip daddr 169.254.169.254 accept\n\t}\n}\n"
	if err := loadIMDSFilter(ctx, run, []byte(other)); err != nil {
		t.Error(err)
	}
	expect("another table accepts first", nobodyUID, addrs[0], false)

	// `nft delete table` (or flush ruleset): the user gets through, Check
	// says so, and the reload repair does closes it again.
	if err := sh("nft", "delete", "table", "inet", imdsFilterTable); err != nil {
		t.Error(err)
		return
	}
	expect("table deleted", nobodyUID, addrs[0], true)
	live, err = liveIMDSFilter(ctx, run)
	if diff := live.differences(targets); err != nil || len(diff) != 1 || !strings.Contains(diff[0], "not loaded") {
		t.Errorf("Check with the table deleted: %v %q", err, diff)
	}
	if err := loadIMDSFilter(ctx, run, rules); err != nil {
		t.Error(err)
	}
	expect("repaired", nobodyUID, addrs[0], false)
	expect("repaired", 0, addrs[0], true)
}

// probeConnect opens a TCP connection to addr ("host:port", v6 in
// brackets) as uid, with bash's /dev/tcp, bounded by timeout(1).
func probeConnect(uid int, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	return probeAs(uid, "bash", "-c", "exec 3<>/dev/tcp/"+host+"/"+port)
}

// probeAs runs a command as uid (gid the same, no supplementary groups);
// the error carries its stderr.
func probeAs(uid int, args ...string) error {
	cmd := exec.Command("timeout", append([]string{"5"}, args...)...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
