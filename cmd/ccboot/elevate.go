package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.uber.org/zap"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/broker"
	"github.com/ccboot/ccboot/bootstrap/sysuser"
)

// systemdRun starts the approved session; set at link time or by tests
// (through elevateTools) to a stub.
var systemdRun = "systemd-run"

// Bounds of an approval window.
const (
	defaultWindow = 30 * time.Minute
	minWindow     = time.Minute
	maxWindow     = 4 * time.Hour
	maxReason     = 200
)

// elevateTools are the external commands elevate runs.
type elevateTools struct{ SystemdRun string }

func elevate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return elevateWith(ctx, args, stdout, stderr, elevateTools{SystemdRun: systemdRun}, time.Now)
}

// elevateWith records an approval of Elevated and starts the approved
// session: COMMAND (default: the user's login shell) as the target user in
// a transient scope, ccboot-elevated-N.scope in system.slice, in the
// current directory. A scope, not a service with --pty: the command keeps
// the admin's terminal as it is (no pty relay, so claude's full-screen UI
// and Ctrl-C behave), and systemd-run moves itself into the scope before
// it drops to the user, so the whole process tree is in a cgroup that root
// owns and the user cannot join from outside. The approval ends with the
// session, at --for, or with --revoke, whichever is first.
func elevateWith(ctx context.Context, args []string, stdout, stderr io.Writer, tools elevateTools, now func() time.Time) int {
	c := newFlags("elevate", "Approve Elevated credentials for one session of the target user (root only), and start it:\n  sudo ccboot elevate --for 30m -- claude --resume\nruns COMMAND (default: the user's login shell) as the user in the current directory; the broker\nissues Elevated only to that session's processes until the window ends or the session exits.\n--revoke removes every approval.", stderr)
	window := c.fs.Duration("for", defaultWindow, "approve for this `duration` (at most 4h)")
	reason := c.fs.String("reason", "", "why, for the record (`text`)")
	revoke := c.fs.Bool("revoke", false, "remove every approval instead")
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	command := c.fs.Args()
	switch {
	case *revoke && (len(command) > 0 || *reason != ""):
		fmt.Fprintln(stderr, "ccboot elevate: --revoke takes no command and no --reason; run `sudo ccboot elevate --revoke` alone")
		return exitUsage
	case *window < minWindow || *window > maxWindow:
		fmt.Fprintf(stderr, "ccboot elevate: --for %s: give a duration from %s to %s, e.g. --for 30m\n", *window, minWindow, maxWindow)
		return exitUsage
	case len(*reason) > maxReason || strings.ContainsFunc(*reason, unicode.IsControl):
		fmt.Fprintf(stderr, "ccboot elevate: --reason: at most %d characters on one line, without control characters\n", maxReason)
		return exitUsage
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "ccboot elevate: approving Elevated is an admin's act: run it as root, e.g. sudo ccboot elevate --for 30m")
		return exitFailed
	}
	s, code := openSession(c.options(stdout), stderr)
	if s == nil {
		return code
	}
	defer s.Close()
	log := s.Env.Log.Named("elevate")
	store := broker.OpenApprovals(s.Env.Sys, broker.DefaultApprovalsDir, log)
	if *revoke {
		n, err := store.RemoveAll()
		if err != nil {
			fmt.Fprintf(stderr, "ccboot elevate: %v\n", err)
			return exitFailed
		}
		log.Info("revoked Elevated approvals", zap.Int("count", n), zap.String("by", approver()))
		fmt.Fprintf(stdout, "ccboot elevate: revoked %d approval(s); the broker refuses Elevated from now on (credentials it already issued expire on their own, within the hour)\n", n)
		return exitOK
	}
	u, err := s.Env.TargetUser()
	if err != nil {
		fmt.Fprintf(stderr, "ccboot elevate: %v\n", err)
		return exitFailed
	}
	if u.UID == 0 {
		fmt.Fprintln(stderr, "ccboot elevate: the target user is root; enforced tiers need an unprivileged user: set [ccboot] user")
		return exitFailed
	}
	start := now().UTC().Truncate(time.Second)
	a, err := store.Create(func(unit string) broker.Approval {
		return broker.Approval{Unit: unit, UID: u.UID, Approver: approver(), Reason: *reason, Created: start, Until: start.Add(*window)}
	})
	if err != nil {
		fmt.Fprintf(stderr, "ccboot elevate: %v\n", err)
		return exitFailed
	}
	unit := a.Unit
	log.Info("approved Elevated", zap.String("approval", unit), zap.Int("uid", u.UID), zap.String("approver", a.Approver),
		zap.String("reason", a.Reason), zap.Time("until", a.Until))
	fmt.Fprintf(stdout, "ccboot elevate: Elevated approved for %s's session %s until %s (%s), approved by %s\n",
		u.Name, unit, a.Until.Format("15:04 MST"), *window, a.Approver)
	if len(command) == 0 {
		wd, _ := os.Getwd()
		fmt.Fprintf(stdout, "ccboot elevate: starting %s's login shell in %s; claude-el works in it, and leaving the shell ends the approval\n", u.Name, wd)
	}
	code = runSession(tools, u, unit, a, command, stderr)
	if err := store.Remove(unit); err != nil {
		fmt.Fprintf(stderr, "ccboot elevate: %v\n", err)
		return exitFailed
	}
	log.Info("Elevated session ended", zap.String("approval", unit), zap.Int("exit", code))
	fmt.Fprintf(stdout, "ccboot elevate: session %s ended; its approval is removed\n", unit)
	return code
}

// sessionArgs is systemd-run's command line for the approved session.
func sessionArgs(u sysuser.User, unit string, a broker.Approval, command []string) []string {
	if len(command) == 0 {
		// systemd-run --uid sets SHELL from the user's passwd entry.
		command = []string{"/bin/sh", "-c", `exec "${SHELL:-/bin/sh}" -l`}
	}
	return append([]string{
		"--quiet", "--scope", "--collect",
		"--unit=" + strings.TrimSuffix(unit, ".scope"),
		"--slice=" + strings.TrimPrefix(broker.DefaultSlice, "/"),
		"--uid=" + strconv.Itoa(u.UID), "--gid=" + strconv.Itoa(u.GID),
		"--description=ccboot Elevated session of " + u.Name + " approved by " + a.Approver + " until " + a.Until.Format(time.RFC3339),
		"--",
	}, command...)
}

// runSession runs the session on this terminal and returns its exit code.
// Ctrl-C belongs to the session: elevate only waits for it (main's signal
// handling keeps SIGINT from ending elevate before the approval is removed).
func runSession(tools elevateTools, u sysuser.User, unit string, a broker.Approval, command []string, stderr io.Writer) int {
	cmd := exec.Command(tools.SystemdRun, sessionArgs(u, unit, a, command)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode()
	case err != nil:
		fmt.Fprintf(stderr, "ccboot elevate: start the session with %s: %v; is systemd running (systemctl is-system-running)?\n", tools.SystemdRun, err)
		return exitFailed
	}
	return exitOK
}

// approver names who approved: the sudo caller, else the login uid, so the
// record names a person even through `sudo su -`.
func approver() string {
	if u := os.Getenv("SUDO_USER"); u != "" && !strings.ContainsFunc(u, unicode.IsControl) && len(u) <= 64 {
		return u + " (sudo)"
	}
	if b, err := os.ReadFile("/proc/self/loginuid"); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" && id != "4294967295" {
			return "loginuid " + id
		}
	}
	return "root"
}

// printElevatedWindows adds the active approvals to `ccboot status` where
// enforced tiers are in use (the approvals directory exists).
func printElevatedWindows(w io.Writer, env *bootstrap.Env) {
	store := broker.OpenApprovals(env.Sys, broker.DefaultApprovalsDir, env.Log)
	if !store.Exists() {
		return
	}
	active, err := store.Active(time.Now())
	switch {
	case err != nil && os.Geteuid() != 0:
		fmt.Fprintln(w, "elevated: approvals are root's; run `sudo ccboot status` to see them")
	case err != nil:
		fmt.Fprintf(w, "elevated: %s\n", bootstrap.Printable(err.Error()))
	case len(active) == 0:
		fmt.Fprintln(w, "elevated: no active approval (Elevated is refused)")
	}
	for _, a := range active {
		line := fmt.Sprintf("elevated: %s for uid %d until %s (%s left), approved by %s", a.Unit, a.UID,
			a.Until.Format(time.RFC3339), time.Until(a.Until).Truncate(time.Second), a.Approver)
		if a.Reason != "" {
			line += ": " + a.Reason
		}
		fmt.Fprintln(w, bootstrap.Printable(line))
	}
}
