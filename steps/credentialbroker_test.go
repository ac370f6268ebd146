package steps

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/runner"
)

// The step installs exactly the checked-in units (which the packages ship),
// the service runs the installed binary, and the socket listens from
// sockets.target, never after network-online.target.
func TestBrokerUnitFilesMatchPackaging(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{brokerSocketUnit: BrokerSocketUnitFile, brokerServiceUnit: BrokerServiceUnitFile} {
		checkedIn := "../packaging/systemd/" + name
		got, err := os.ReadFile(checkedIn)
		if err != nil || !bytes.Equal(got, []byte(want)) {
			t.Errorf("%s differs from the step's copy (%v); keep the two the same\n%s", checkedIn, err, bootstrap.UnifiedDiff(checkedIn, got, []byte(want)))
		}
		if strings.Contains(want, "network-online") {
			t.Errorf("%s is ordered against network-online.target", name)
		}
	}
	if !strings.Contains(BrokerServiceUnitFile, "\nExecStart="+bootstrap.InstalledBinary+" broker\n") {
		t.Errorf("%s does not run %s broker", brokerServiceUnit, bootstrap.InstalledBinary)
	}
	if !strings.Contains(BrokerSocketUnitFile, "\n[Install]\nWantedBy=sockets.target\n") {
		t.Errorf("%s is not WantedBy=sockets.target", brokerSocketUnit)
	}
}

// fakeSystemd answers systemctl for the broker's units like systemd would.
type fakeSystemd struct {
	mu              sync.Mutex
	enabled, active bool
}

func (s *fakeSystemd) install(t *testing.T, fake *runner.Fake, env *bootstrap.Env) {
	t.Helper()
	fake.On("systemctl is-enabled "+brokerSocketUnit, func(runner.Cmd) (runner.Result, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if ok, _ := env.Sys.Exists(brokerSocketPath); !ok {
			return runner.Result{Stdout: []byte("not-found\n")}, &runner.ExitError{Code: 1}
		}
		if s.enabled {
			return runner.Result{Stdout: []byte("enabled\n")}, nil
		}
		return runner.Result{Stdout: []byte("disabled\n")}, &runner.ExitError{Code: 1}
	})
	fake.On("systemctl is-active "+brokerSocketUnit, func(runner.Cmd) (runner.Result, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.active {
			return runner.Result{Stdout: []byte("active\n")}, nil
		}
		return runner.Result{Stdout: []byte("inactive\n")}, &runner.ExitError{Code: 3}
	})
	set := func(prefix string, fn func()) {
		fake.On(prefix, func(runner.Cmd) (runner.Result, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			fn()
			return runner.Result{}, nil
		})
	}
	set("systemctl enable "+brokerSocketUnit, func() { s.enabled = true })
	set("systemctl start "+brokerSocketUnit, func() { s.active = true })
	set("systemctl stop "+brokerSocketUnit+" "+brokerServiceUnit, func() { s.active = false })
	set("systemctl try-restart "+brokerServiceUnit, func() {})
	set("systemctl daemon-reload", func() {})
}

// Advisory (the default): nothing runs, nothing is written, status says why.
func TestCredentialBrokerAdvisoryIsANoOp(t *testing.T) {
	t.Parallel()
	env, fake := newTestEnv(t)
	assertAdvisoryNoOp(t, env, fake, CredentialBroker{}, brokerSocketPath, brokerServicePath)
}

// Enforced, live: the units are written, the socket enabled and started,
// and a second pass does nothing; a stopped socket is drift repair starts;
// going back to advisory stops it and removes every file.
func TestCredentialBrokerEnforcedConvergesAndSwitchesBack(t *testing.T) {
	t.Parallel()
	env, fake := newTestEnv(t)
	env.Config.TierMode = bootstrap.TierEnforced
	sd := &fakeSystemd{}
	sd.install(t, fake, env)
	ctx := context.Background()
	step := CredentialBroker{}
	d, err := step.check(ctx, env, imdsLiveHost)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(d.Changes, "\n")
	for _, want := range []string{"create " + env.Sys.Path(brokerSocketPath), "create " + env.Sys.Path(brokerServicePath), "enable " + brokerSocketUnit, "start " + brokerSocketUnit} {
		if !strings.Contains(joined, want) {
			t.Errorf("fresh Check lacks %q:\n%s", want, joined)
		}
	}
	if err := step.apply(ctx, env, imdsLiveHost); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{brokerSocketPath: BrokerSocketUnitFile, brokerServicePath: BrokerServiceUnitFile} {
		got, err := os.ReadFile(env.Sys.Path(name))
		if err != nil || string(got) != want {
			t.Errorf("%s: %v %q", name, err, got)
		}
	}
	if !sd.enabled || !sd.active || fake.CallsWithPrefix("systemctl daemon-reload") != 1 {
		t.Errorf("enabled %v active %v, calls %q", sd.enabled, sd.active, fake.Calls())
	}
	if d, err := step.check(ctx, env, imdsLiveHost); err != nil || !d.InSync() {
		t.Fatalf("Check after Apply: %v %q", err, d.Changes)
	}
	// A second Apply writes nothing, so it reloads and restarts nothing.
	calls := len(fake.Calls())
	if err := step.apply(ctx, env, imdsLiveHost); err != nil {
		t.Fatal(err)
	}
	for _, c := range fake.Calls()[calls:] {
		if strings.Contains(c, "daemon-reload") || strings.Contains(c, "try-restart") {
			t.Errorf("second Apply ran %q", c)
		}
	}
	sd.active = false // someone stopped it
	if d, _ := step.check(ctx, env, imdsLiveHost); !strings.Contains(strings.Join(d.Changes, "\n"), "start "+brokerSocketUnit) {
		t.Errorf("a stopped socket is not drift: %q", d.Changes)
	}
	if err := step.apply(ctx, env, imdsLiveHost); err != nil || !sd.active {
		t.Errorf("repair did not start the socket: %v", err)
	}

	// The enable link as systemctl makes it, then back to advisory.
	if err := os.MkdirAll(filepath.Dir(env.Sys.Path(brokerSocketWants)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/"+brokerSocketPath, env.Sys.Path(brokerSocketWants)); err != nil {
		t.Fatal(err)
	}
	env.Config.TierMode = bootstrap.TierAdvisory
	d, err = step.check(ctx, env, imdsLiveHost)
	if err != nil || len(d.Changes) != 3 {
		t.Fatalf("advisory Check after enforced: %v %q", err, d.Changes)
	}
	if err := step.apply(ctx, env, imdsLiveHost); err != nil {
		t.Fatal(err)
	}
	if sd.active {
		t.Error("the socket still listens")
	}
	for _, name := range []string{brokerSocketPath, brokerServicePath, brokerSocketWants} {
		if _, err := env.Sys.Lstat(name); err == nil {
			t.Errorf("%s is still there", name)
		}
	}
	if d, err := step.check(ctx, env, imdsLiveHost); err != nil || !d.InSync() {
		t.Errorf("Check after cleanup: %v %q", err, d.Changes)
	}
}

// A unit file someone edited is drift, and repair puts ccboot's back and
// restarts a running broker so it serves under the unit's hardening.
func TestCredentialBrokerRepairsAnEditedUnit(t *testing.T) {
	t.Parallel()
	env, fake := newTestEnv(t)
	env.Config.TierMode = bootstrap.TierEnforced
	(&fakeSystemd{}).install(t, fake, env)
	ctx := context.Background()
	if err := (CredentialBroker{}).apply(ctx, env, imdsLiveHost); err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(BrokerServiceUnitFile, "NoNewPrivileges=yes\n", "", 1)
	if err := os.WriteFile(env.Sys.Path(brokerServicePath), []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := CredentialBroker{}.check(ctx, env, imdsLiveHost)
	if err != nil || !strings.Contains(d.Diff, "+NoNewPrivileges=yes") {
		t.Fatalf("edited unit not reported: %v %q\n%s", err, d.Changes, d.Diff)
	}
	before := fake.CallsWithPrefix("systemctl try-restart " + brokerServiceUnit)
	if err := (CredentialBroker{}).apply(ctx, env, imdsLiveHost); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(env.Sys.Path(brokerServicePath)); string(got) != BrokerServiceUnitFile {
		t.Error("the edited unit was not restored")
	}
	if fake.CallsWithPrefix("systemctl try-restart "+brokerServiceUnit) != before+1 {
		t.Errorf("the running broker was not restarted: %q", fake.Calls())
	}
}
