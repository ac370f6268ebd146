// Package units enables and starts systemd units through systemctl, on the
// running system or offline in a root directory (an image being baked).
//
// Offline, `systemctl --root=DIR` can only work on unit files: enable,
// disable and is-enabled create or read symlinks under DIR and need no
// running systemd. Everything that talks to a service manager (is-active,
// start, daemon-reload) has no meaning there, because no manager runs over
// DIR; the next boot of the image reads the unit files fresh.
package units

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ccboot/ccboot/bootstrap/runner"
)

// Manager is what ccboot needs from systemd.
type Manager interface {
	// IsEnabled reports whether the unit starts at boot without ccboot's
	// help. A unit with no unit file is an error wrapping ErrNoUnit.
	IsEnabled(ctx context.Context, unit string) (bool, error)
	// IsActive reports whether the unit is running. Offline it returns
	// false and an error wrapping ErrOffline: callers must not ask.
	IsActive(ctx context.Context, unit string) (bool, error)
	// Enable makes the unit start at boot (it does not start it).
	Enable(ctx context.Context, unit string) error
	// Start starts the unit and waits for systemd's start job. Offline it
	// returns an error wrapping ErrOffline.
	Start(ctx context.Context, unit string) error
	// Stop stops the units and waits for the stop jobs; units that are
	// not loaded are no error. Offline it returns an error wrapping
	// ErrOffline.
	Stop(ctx context.Context, units ...string) error
	// TryRestart restarts the unit if it is running, so it picks up a
	// changed unit file or binary; a stopped or unknown unit stays as it
	// is. Offline
	// it returns an error wrapping ErrOffline.
	TryRestart(ctx context.Context, unit string) error
	// DaemonReload makes the running manager re-read unit files. Offline
	// it does nothing and returns nil: there is no manager to tell, and
	// install code can call it unconditionally after writing a unit.
	DaemonReload(ctx context.Context) error
}

// ErrOffline is wrapped by operations that need a running service manager
// when the Manager works on a root directory.
var ErrOffline = errors.New("needs the running system's service manager, not available under --root")

// ErrNoUnit is wrapped when systemd has no unit file of that name.
var ErrNoUnit = errors.New("no such unit file")

// systemctl is found through PATH: on a live system and when baking an
// image alike it is the host's, and --root points it at the image.
const systemctl = "systemctl"

// New returns a Manager for the system at root: the running system when
// root is "/" (or empty), otherwise the directory, offline.
func New(root string, run runner.Runner) Manager {
	if root == "" || root == "/" {
		return &systemd{run: run}
	}
	return &systemd{run: run, root: root}
}

type systemd struct {
	run  runner.Runner
	root string // "" when live
}

func (m *systemd) offline() bool { return m.root != "" }

func (m *systemd) cmd(args ...string) runner.Cmd {
	if m.offline() {
		args = append([]string{"--root=" + m.root}, args...)
	}
	return runner.Cmd{Name: systemctl, Args: args}
}

// enabledStates are the is-enabled answers that mean "nothing for Enable to
// do". They are the states systemctl itself exits 0 for, and matching it
// matters beyond taste: Enable cannot change static (no [Install] section),
// indirect (enabled through Also= or another unit, e.g. a socket),
// generated or transient units, so counting them as disabled would make
// Check report drift that Apply can never fix. alias is an enabled unit
// reached through another name. enabled-runtime lasts until reboot only,
// but a unit someone enabled in /run was enabled on purpose; ccboot leaves
// that choice alone rather than making it permanent.
var enabledStates = map[string]bool{
	"enabled": true, "enabled-runtime": true, "static": true, "indirect": true,
	"alias": true, "generated": true, "transient": true,
}

// IsEnabled asks systemctl is-enabled. It exits non-zero for "disabled",
// "masked" and friends, so the answer is read from stdout and a non-zero
// exit is an error only when systemctl printed no state at all.
func (m *systemd) IsEnabled(ctx context.Context, unit string) (bool, error) {
	state, err := m.state(ctx, "is-enabled", unit)
	if err != nil {
		return false, err
	}
	switch {
	case state == "not-found":
		return false, fmt.Errorf("systemctl is-enabled %s: %w", unit, ErrNoUnit)
	case enabledStates[state]:
		return true, nil
	default:
		// disabled, masked, masked-runtime, linked, linked-runtime, bad,
		// and states newer systemd versions may add.
		return false, nil
	}
}

// activeStates: reloading and refreshing are a running unit doing work.
// activating is not active yet; Start waits for its job to finish, so a
// unit still activating afterwards deserves to be reported.
var activeStates = map[string]bool{"active": true, "reloading": true, "refreshing": true}

// IsActive asks systemctl is-active (exit 3 for inactive, read from stdout).
func (m *systemd) IsActive(ctx context.Context, unit string) (bool, error) {
	if m.offline() {
		return false, fmt.Errorf("is %s active: %w", unit, ErrOffline)
	}
	state, err := m.state(ctx, "is-active", unit)
	if err != nil {
		return false, err
	}
	return activeStates[state], nil
}

// state runs an is-* verb and returns the first word systemctl printed.
func (m *systemd) state(ctx context.Context, verb, unit string) (string, error) {
	c := m.cmd(verb, unit)
	res, err := m.run.Run(ctx, c)
	state := firstLine(res.Stdout)
	var exit *runner.ExitError
	switch {
	case err == nil || (errors.As(err, &exit) && state != ""):
		return state, nil
	case errors.As(err, &exit) && verb == "is-enabled" && strings.Contains(string(res.Stderr)+exit.Stderr, "No such file"):
		// systemd before 256 prints nothing for a missing unit file.
		return "not-found", nil
	default:
		return "", fmt.Errorf("%s: %w", c, err)
	}
}

// Enable runs systemctl enable; offline it only creates the symlinks.
func (m *systemd) Enable(ctx context.Context, unit string) error {
	c := m.cmd("enable", unit)
	res, err := m.run.Run(ctx, c)
	if err != nil {
		if strings.Contains(string(res.Stderr)+err.Error(), "masked") {
			return fmt.Errorf("%w; the unit is masked, run systemctl unmask %s if it should run", err, unit)
		}
		return err
	}
	return nil
}

// Start runs systemctl start, which waits until the unit is up or failed.
func (m *systemd) Start(ctx context.Context, unit string) error {
	if m.offline() {
		return fmt.Errorf("start %s: %w", unit, ErrOffline)
	}
	if _, err := m.run.Run(ctx, m.cmd("start", unit)); err != nil {
		return fmt.Errorf("%w; see journalctl -u %s", err, unit)
	}
	return nil
}

// Stop runs systemctl stop, which waits for the units to stop.
func (m *systemd) Stop(ctx context.Context, units ...string) error {
	if m.offline() {
		return fmt.Errorf("stop %s: %w", strings.Join(units, " "), ErrOffline)
	}
	res, err := m.run.Run(ctx, m.cmd(append([]string{"stop"}, units...)...))
	if notLoaded(res, err) {
		return nil // nothing of that name is running
	}
	return err
}

// TryRestart runs systemctl try-restart.
func (m *systemd) TryRestart(ctx context.Context, unit string) error {
	if m.offline() {
		return fmt.Errorf("restart %s: %w", unit, ErrOffline)
	}
	res, err := m.run.Run(ctx, m.cmd("try-restart", unit))
	if notLoaded(res, err) {
		return nil // no such unit, so nothing running to restart
	}
	if err != nil {
		return fmt.Errorf("%w; see journalctl -u %s", err, unit)
	}
	return nil
}

// notLoaded: systemctl's answer (exit 5) for a unit it has no file of.
func notLoaded(res runner.Result, err error) bool {
	var exit *runner.ExitError
	if !errors.As(err, &exit) {
		return false
	}
	msg := string(res.Stderr) + exit.Stderr
	return strings.Contains(msg, "not loaded") || strings.Contains(msg, "not found")
}

// DaemonReload runs systemctl daemon-reload; offline it is a no-op.
func (m *systemd) DaemonReload(ctx context.Context) error {
	if m.offline() {
		return nil
	}
	_, err := m.run.Run(ctx, m.cmd("daemon-reload"))
	return err
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(s)
}
