package steps

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/runner"
)

// fakeNft plays nft and systemctl for the imds-filter step: `nft -f -`
// loads what it is given, `nft -j list table` answers with the JSON the
// real nft 1.0.6 printed for ccboot's default ruleset (testdata; the real
// test in imdsfilter_netns_test.go parses nft's live output too), and
// `nft delete table` unloads.
type fakeNft struct {
	mu      sync.Mutex
	loaded  []byte // nil: table not loaded
	listed  string // what list prints while loaded
	enabled bool
	missing bool // nft is not installed
}

func (n *fakeNft) install(t *testing.T, fake *runner.Fake) {
	t.Helper()
	loadedJSON, err := os.ReadFile("testdata/imds-filter-loaded.json")
	if err != nil {
		t.Fatal(err)
	}
	n.listed = string(loadedJSON)
	fake.On("nft ", func(c runner.Cmd) (runner.Result, error) {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.missing {
			return runner.Result{}, errors.New("nft: command not found in PATH (install it or check PATH)")
		}
		noTable := func() (runner.Result, error) {
			msg := "Error: No such file or directory\nlist table inet ccboot_imds"
			return runner.Result{ExitCode: 1, Stderr: []byte(msg)}, &runner.ExitError{Cmd: c.String(), Code: 1, Stderr: msg}
		}
		switch line := c.String(); {
		case line == "nft -f -":
			n.loaded = c.Stdin
		case line == "nft -j list table inet ccboot_imds":
			if n.loaded == nil {
				return noTable()
			}
			return runner.Result{Stdout: []byte(n.listed)}, nil
		case line == "nft delete table inet ccboot_imds":
			if n.loaded == nil {
				return noTable()
			}
			n.loaded = nil
		default:
			t.Errorf("unexpected %q", line)
		}
		return runner.Result{}, nil
	})
	fake.On("systemctl ", func(c runner.Cmd) (runner.Result, error) {
		n.mu.Lock()
		defer n.mu.Unlock()
		args := c.Args
		if strings.HasPrefix(args[0], "--root=") {
			args = args[1:]
		}
		switch args[0] {
		case "is-enabled":
			if n.enabled {
				return runner.Result{Stdout: []byte("enabled\n")}, nil
			}
			return runner.Result{Stdout: []byte("disabled\n"), ExitCode: 1}, &runner.ExitError{Cmd: c.String(), Code: 1}
		case "enable":
			n.enabled = true
		}
		return runner.Result{}, nil
	})
}

var imdsLiveHost = host{live: true, proc: "/proc"}

func enforcedEnv(t *testing.T) (*bootstrap.Env, *runner.Fake, *fakeNft) {
	t.Helper()
	env, fake := newTestEnv(t)
	env.Config.TierMode = bootstrap.TierEnforced
	n := &fakeNft{}
	n.install(t, fake)
	return env, fake, n
}

// Advisory (the default) is today's behaviour: no command runs, nothing is
// written, and the report says the filter is not enforced.
func TestIMDSFilterAdvisoryIsANoOp(t *testing.T) {
	t.Parallel()
	env, fake := newTestEnv(t)
	assertAdvisoryNoOp(t, env, fake, IMDSFilter{}, imdsFilterPath, imdsFilterUnitPath)
}

// Switching back to advisory removes what enforced mode left: the user's
// advisory profiles get credentials from IMDS, which the filter would block.
func TestIMDSFilterAdvisoryRemovesLeftovers(t *testing.T) {
	t.Parallel()
	env, fake, n := enforcedEnv(t)
	ctx := context.Background()
	if err := (IMDSFilter{}).apply(ctx, env, imdsLiveHost); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(env.Sys.Path(imdsFilterWantsLink)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/"+imdsFilterUnitPath, env.Sys.Path(imdsFilterWantsLink)); err != nil {
		t.Fatal(err)
	}
	env.Config.TierMode = bootstrap.TierAdvisory
	d, err := IMDSFilter{}.check(ctx, env, imdsLiveHost)
	if err != nil || len(d.Changes) != 3 {
		t.Fatalf("advisory Check after enforced: %v %q", err, d.Changes)
	}
	if err := (IMDSFilter{}).apply(ctx, env, imdsLiveHost); err != nil {
		t.Fatal(err)
	}
	if n.loaded != nil {
		t.Error("the table is still loaded")
	}
	for _, name := range []string{imdsFilterPath, imdsFilterUnitPath, imdsFilterWantsLink} {
		if _, err := env.Sys.Lstat(name); err == nil {
			t.Errorf("%s is still there", name)
		}
	}
	if fake.CallsWithPrefix("systemctl daemon-reload") == 0 {
		t.Error("no daemon-reload after removing the unit")
	}
	if d, err := (IMDSFilter{}).check(ctx, env, imdsLiveHost); err != nil || !d.InSync() {
		t.Errorf("Check after cleanup: %v %q", err, d.Changes)
	}
}

// Enforced: Check names each missing piece, Apply writes the rules file and
// the unit, enables it and loads exactly the file's bytes; then Check is in
// sync. A deleted table (someone ran `nft flush ruleset`) is drift that
// repair restores.
func TestIMDSFilterEnforcedConvergesAndRepairs(t *testing.T) {
	t.Parallel()
	env, _, n := enforcedEnv(t)
	ctx := context.Background()
	d, err := IMDSFilter{}.check(ctx, env, imdsLiveHost)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(d.Changes, "\n")
	for _, want := range []string{"create " + env.Sys.Path(imdsFilterPath), "create " + env.Sys.Path(imdsFilterUnitPath), "enable " + imdsFilterUnit, "load the filter"} {
		if !strings.Contains(joined, want) {
			t.Errorf("fresh Check lacks %q:\n%s", want, joined)
		}
	}
	if err := (IMDSFilter{}).apply(ctx, env, imdsLiveHost); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(env.Sys.Path(imdsFilterPath))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(n.loaded, file) || !bytes.Contains(file, []byte("ip daddr 169.254.169.254 tcp dport 80 meta skuid != 0 reject")) {
		t.Errorf("loaded %q, file %q", n.loaded, file)
	}
	if fi, _ := os.Stat(env.Sys.Path(imdsFilterPath)); fi.Mode().Perm() != 0o644 {
		t.Errorf("rules file mode %v", fi.Mode())
	}
	if d, err := (IMDSFilter{}).check(ctx, env, imdsLiveHost); err != nil || !d.InSync() {
		t.Fatalf("Check after Apply: %v %q", err, d.Changes)
	}
	n.loaded = nil // the table is gone from the kernel
	d, err = IMDSFilter{}.check(ctx, env, imdsLiveHost)
	if err != nil || len(d.Changes) != 1 || !strings.Contains(d.Changes[0], "every user can reach IMDS") {
		t.Fatalf("Check with the table deleted: %v %q", err, d.Changes)
	}
	if err := (IMDSFilter{}).apply(ctx, env, imdsLiveHost); err != nil || n.loaded == nil {
		t.Fatalf("repair did not reload: %v", err)
	}
}

// A loaded table whose rule is not ccboot's (here: one that lets every
// user through but uid 1000) is drift, named by rule.
func TestIMDSFilterForeignRuleIsDrift(t *testing.T) {
	t.Parallel()
	env, _, n := enforcedEnv(t)
	ctx := context.Background()
	if err := (IMDSFilter{}).apply(ctx, env, imdsLiveHost); err != nil {
		t.Fatal(err)
	}
	n.listed = strings.Replace(n.listed, `"op": "!=", "left": {"meta": {"key": "skuid"}}, "right": 0`, `"op": "==", "left": {"meta": {"key": "skuid"}}, "right": 1000`, 1)
	d, err := IMDSFilter{}.check(ctx, env, imdsLiveHost)
	joined := strings.Join(d.Changes, "\n")
	if err != nil || !strings.Contains(joined, "rule missing: ip daddr 169.254.169.254 tcp dport 80 meta skuid != 0") ||
		!strings.Contains(joined, "rule not ccboot's: ip daddr 169.254.169.254 tcp dport 80 meta skuid 1000") {
		t.Errorf("Check: %v\n%s", err, joined)
	}
}

// Offline (--root, an image): files and the enabled unit only; nothing is
// loaded into the running kernel, and the report says when it will be.
func TestIMDSFilterOfflineLoadsNothing(t *testing.T) {
	t.Parallel()
	env, fake, n := enforcedEnv(t)
	ctx := context.Background()
	if err := (IMDSFilter{}).apply(ctx, env, host{}); err != nil {
		t.Fatal(err)
	}
	d, err := IMDSFilter{}.check(ctx, env, host{})
	if err != nil || !d.InSync() || len(d.Notes) == 0 || !strings.Contains(d.Notes[0], "loaded at boot") {
		t.Fatalf("offline Check: %v %q %q", err, d.Changes, d.Notes)
	}
	if n.loaded != nil || fake.CallsWithPrefix("nft") != 0 {
		t.Errorf("offline ran nft: %q", fake.Calls())
	}
}

// Enforced mode without nft installed fails with the fix in one line.
func TestIMDSFilterWithoutNftSaysHowToFix(t *testing.T) {
	t.Parallel()
	env, _, n := enforcedEnv(t)
	n.missing = true
	_, err := IMDSFilter{}.check(context.Background(), env, imdsLiveHost)
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "add nftables to [packages] install") {
		t.Errorf("error: %v", err)
	}
}

func TestIMDSTargets(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		endpoint string
		extra    string // the rule added beside the defaults, "" for none
		wantErr  string
	}{
		{endpoint: ""},
		{endpoint: "http://169.254.169.254"},
		{endpoint: "http://169.254.169.254:80/"},
		{endpoint: "http://127.0.0.1:1338", extra: "ip daddr 127.0.0.1 tcp dport 1338 "},
		{endpoint: "https://[::1]/", extra: "ip6 daddr ::1 tcp dport 443 "},
		{endpoint: "http://[::ffff:127.0.0.2]:9", extra: "ip daddr 127.0.0.2 tcp dport 9 "},
		{endpoint: "http://localhost:1338", wantErr: "needs an IP address"},
		{endpoint: "http://[fe80::1%25eth0]:80", wantErr: "needs an IP address"},
	} {
		targets, err := imdsTargets(tc.endpoint)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "[tiers] mode = advisory") {
				t.Errorf("%q: error %v", tc.endpoint, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.endpoint, err)
			continue
		}
		want := len(imdsDefaultTargets)
		if tc.extra != "" {
			want++
			if got := targets[len(targets)-1].rule(); !strings.HasPrefix(got, tc.extra) {
				t.Errorf("%q: rule %q, want %q…", tc.endpoint, got, tc.extra)
			}
		}
		if len(targets) != want {
			t.Errorf("%q: %d targets, want %d", tc.endpoint, len(targets), want)
		}
	}
}

// The checked-in unit is what the step writes, and keeps the ordering that
// makes the filter precede every login (see IMDSFilterUnitFile).
func TestIMDSFilterUnitFileMatches(t *testing.T) {
	t.Parallel()
	const checkedIn = "../packaging/systemd/" + imdsFilterUnit
	got, err := os.ReadFile(checkedIn)
	want := IMDSFilterUnitFile()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s differs from IMDSFilterUnitFile() (%v); write the function's output there\n%s", checkedIn, err, bootstrap.UnifiedDiff(checkedIn, got, want))
	}
	for _, line := range []string{"DefaultDependencies=no", "Before=network-pre.target", "WantedBy=sysinit.target", "ExecStart=/usr/sbin/nft -f /" + imdsFilterPath} {
		if !bytes.Contains(got, []byte("\n"+line)) {
			t.Errorf("unit lacks %s", line)
		}
	}
	if bytes.Contains(got, []byte("network-online")) {
		t.Error("unit is ordered against network-online.target")
	}
}

// systemd itself reads the unit: no unknown key, nothing it would ignore,
// and ExecStart names an executable that exists (nft where the unit says).
func TestIMDSFilterUnitVerifies(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed")
	}
	if _, err := os.Stat(nftUnitBin); err != nil {
		t.Skipf("%s not installed (packaging/dev-deps.sh installs nftables)", nftUnitBin)
	}
	p := filepath.Join(t.TempDir(), imdsFilterUnit)
	if err := os.WriteFile(p, IMDSFilterUnitFile(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", p).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
