package units

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccboot/ccboot/bootstrap/runner"
)

// answer makes a fake systemctl print state and exit with code, the way the
// real one does for is-enabled/is-active.
func answer(state string, code int, stderr string) func(runner.Cmd) (runner.Result, error) {
	return func(c runner.Cmd) (runner.Result, error) {
		res := runner.Result{Stdout: []byte(state), Stderr: []byte(stderr), ExitCode: code}
		if code != 0 {
			return res, &runner.ExitError{Cmd: c.String(), Code: code, Stderr: stderr}
		}
		return res, nil
	}
}

func TestIsEnabledStates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		stdout  string
		code    int
		stderr  string
		want    bool
		wantErr error
	}{
		{"enabled\n", 0, "", true, nil},
		{"enabled-runtime\n", 0, "", true, nil},
		{"static\n", 0, "", true, nil},
		{"indirect\n", 0, "", true, nil},
		{"alias\n", 0, "", true, nil},
		{"disabled\n", 1, "", false, nil},
		{"masked\n", 1, "", false, nil},
		{"linked\n", 1, "", false, nil},
		{"not-found\n", 1, "", false, ErrNoUnit},
		{"", 1, "Failed to get unit file state for docker.service: No such file or directory", false, ErrNoUnit},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSpace(tt.stdout)+"/"+tt.stderr, func(t *testing.T) {
			t.Parallel()
			fake := &runner.Fake{}
			fake.On("systemctl --root=/img is-enabled docker.service", answer(tt.stdout, tt.code, tt.stderr))
			got, err := New("/img", fake).IsEnabled(context.Background(), "docker.service")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("IsEnabled = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestIsEnabledFailureWithoutState(t *testing.T) {
	t.Parallel()
	fake := &runner.Fake{}
	fake.On("systemctl is-enabled", answer("", 1, "Failed to connect to bus: Host is down"))
	_, err := New("/", fake).IsEnabled(context.Background(), "docker.service")
	if err == nil || !strings.Contains(err.Error(), "Failed to connect to bus") {
		t.Fatalf("err = %v, want the bus error passed on", err)
	}
}

func TestIsActiveStates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		stdout string
		code   int
		want   bool
	}{
		{"active\n", 0, true},
		{"reloading\n", 0, true},
		{"inactive\n", 3, false},
		{"failed\n", 3, false},
		{"activating\n", 3, false},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSpace(tt.stdout), func(t *testing.T) {
			t.Parallel()
			fake := &runner.Fake{}
			fake.On("systemctl is-active docker.service", answer(tt.stdout, tt.code, ""))
			got, err := New("/", fake).IsActive(context.Background(), "docker.service")
			if err != nil || got != tt.want {
				t.Fatalf("IsActive = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestLiveCommands(t *testing.T) {
	t.Parallel()
	fake := &runner.Fake{}
	fake.OnOutput("systemctl ", "")
	m := New("/", fake)
	ctx := context.Background()
	if err := m.DaemonReload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Enable(ctx, "docker.service"); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx, "docker.service"); err != nil {
		t.Fatal(err)
	}
	want := []string{"systemctl daemon-reload", "systemctl enable docker.service", "systemctl start docker.service"}
	if got := fake.Calls(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("calls = %q, want %q", got, want)
	}
}

func TestOfflineRefusesManagerVerbs(t *testing.T) {
	t.Parallel()
	fake := &runner.Fake{}
	m := New("/img", fake)
	ctx := context.Background()
	if active, err := m.IsActive(ctx, "docker.service"); active || !errors.Is(err, ErrOffline) {
		t.Fatalf("IsActive offline = %v, %v; want false, ErrOffline", active, err)
	}
	if err := m.Start(ctx, "docker.service"); !errors.Is(err, ErrOffline) {
		t.Fatalf("Start offline = %v, want ErrOffline", err)
	}
	if err := m.Stop(ctx, "docker.socket", "docker.service"); !errors.Is(err, ErrOffline) {
		t.Fatalf("Stop offline = %v, want ErrOffline", err)
	}
	if err := m.TryRestart(ctx, "docker.service"); !errors.Is(err, ErrOffline) {
		t.Fatalf("TryRestart offline = %v, want ErrOffline", err)
	}
	if err := m.DaemonReload(ctx); err != nil {
		t.Fatalf("DaemonReload offline = %v, want no-op", err)
	}
	if calls := fake.Calls(); len(calls) != 0 {
		t.Fatalf("offline manager ran %q; want nothing run", calls)
	}
}

func TestEnableMaskedSaysHowToUnmask(t *testing.T) {
	t.Parallel()
	fake := &runner.Fake{}
	fake.OnExit("systemctl --root=/img enable", 1, "Failed to enable unit: Unit file /etc/systemd/system/docker.service is masked.")
	err := New("/img", fake).Enable(context.Background(), "docker.service")
	if err == nil || !strings.Contains(err.Error(), "systemctl unmask docker.service") {
		t.Fatalf("err = %v, want the unmask hint", err)
	}
}

// TestRealSystemctlOffline runs the real systemctl against a temp root: it
// needs no running systemd, which is what makes offline image baking work.
func TestRealSystemctlOffline(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("systemctl"); err != nil {
		t.Skip("systemctl not installed; offline enable is covered by the e2e VM test")
	}
	root := t.TempDir()
	dir := filepath.Join(root, "etc/systemd/system")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	unit := "[Unit]\nDescription=test\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
	if err := os.WriteFile(filepath.Join(dir, "foo.service"), []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	m := New(root, &runner.Exec{})
	ctx := context.Background()

	if on, err := m.IsEnabled(ctx, "foo.service"); err != nil || on {
		t.Fatalf("before enable: IsEnabled = %v, %v; want false, nil", on, err)
	}
	if _, err := m.IsEnabled(ctx, "absent.service"); !errors.Is(err, ErrNoUnit) {
		t.Fatalf("IsEnabled(absent) err = %v, want ErrNoUnit", err)
	}
	if err := m.Enable(ctx, "foo.service"); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "multi-user.target.wants/foo.service")
	target, err := os.Readlink(link)
	if err != nil {
		t.Fatalf("enable made no symlink: %v", err)
	}
	// The link must point inside the image, not at the temp dir's path.
	if target != "/etc/systemd/system/foo.service" {
		t.Fatalf("link target %q, want /etc/systemd/system/foo.service", target)
	}
	if on, err := m.IsEnabled(ctx, "foo.service"); err != nil || !on {
		t.Fatalf("after enable: IsEnabled = %v, %v; want true, nil", on, err)
	}
}

// Stop and TryRestart of a unit systemd does not know are no error: there
// is nothing running to stop or restart. Other failures are.
func TestStopAndTryRestartOfAnUnknownUnit(t *testing.T) {
	t.Parallel()
	fake := &runner.Fake{}
	fake.OnExit("systemctl stop gone.socket", 5, "Failed to stop gone.socket: Unit gone.socket not loaded.")
	fake.OnExit("systemctl try-restart gone.service", 5, "Failed to try-restart gone.service: Unit gone.service not found.")
	fake.OnExit("systemctl try-restart broken.service", 1, "Job for broken.service failed because the control process exited with error code.")
	m := New("/", fake)
	ctx := context.Background()
	if err := m.Stop(ctx, "gone.socket"); err != nil {
		t.Errorf("Stop of an unknown unit: %v", err)
	}
	if err := m.TryRestart(ctx, "gone.service"); err != nil {
		t.Errorf("TryRestart of an unknown unit: %v", err)
	}
	if err := m.TryRestart(ctx, "broken.service"); err == nil || !strings.Contains(err.Error(), "journalctl -u broken.service") {
		t.Errorf("TryRestart of a failing unit: %v, want the error and where to look", err)
	}
}
