package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
// session's directory (sessionDir), through the user's login shell with
// AWS_PROFILE naming the Elevated profile. A scope, not a service with --pty: the command keeps
// the admin's terminal as it is (no pty relay, so claude's full-screen UI
// and Ctrl-C behave), and systemd-run moves itself into the scope before
// it drops to the user, so the whole process tree is in a cgroup that root
// owns and the user cannot join from outside. The approval ends with the
// session, at --for, or with --revoke, whichever is first.
func elevateWith(ctx context.Context, args []string, stdout, stderr io.Writer, tools elevateTools, now func() time.Time) int {
	c := newFlags("elevate", "Approve Elevated credentials for one session of the target user (root only), and start it:\n  sudo ccboot elevate --for 30m --dir ~ec2-user/app -- claude --continue\nruns COMMAND (default: the user's login shell) as the user, through the user's login shell with\nAWS_PROFILE set to the Elevated profile, in --dir (default: the current directory when it is in the\nuser's home, else the home); the broker issues Elevated only to that session's processes until\nthe window ends or the session exits. --revoke removes every approval.", stderr)
	window := c.fs.Duration("for", defaultWindow, "approve for this `duration` (at most 4h)")
	reason := c.fs.String("reason", "", "why, for the record (`text`)")
	dir := c.fs.String("dir", "", "start the session in this `directory` (default: the current one when it is in the user's home, else the home)")
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
	case *revoke && *dir != "":
		fmt.Fprintln(stderr, "ccboot elevate: --revoke takes no --dir; run `sudo ccboot elevate --revoke` alone")
		return exitUsage
	case strings.ContainsFunc(*dir, unicode.IsControl):
		fmt.Fprintln(stderr, "ccboot elevate: --dir: a path without control characters, e.g. --dir /home/ec2-user/app")
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
	cwd, cwdErr := os.Getwd()
	wd, err := sessionDir(*dir, cwd, cwdErr, u)
	if err != nil {
		fmt.Fprintf(stderr, "ccboot elevate: %v\n", err)
		return exitFailed
	}
	groups, err := sysuser.GroupsOf(s.Env.Sys, u)
	if err != nil {
		fmt.Fprintf(stderr, "ccboot elevate: the user's groups: %v\n", err)
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
		zap.String("reason", a.Reason), zap.Time("until", a.Until), zap.String("dir", wd))
	fmt.Fprintf(stdout, "ccboot elevate: Elevated approved for %s's session %s in %s until %s (%s), approved by %s\n",
		u.Name, unit, bootstrap.Printable(wd), a.Until.Format("15:04 MST"), *window, a.Approver)
	if len(command) == 0 {
		fmt.Fprintf(stdout, "ccboot elevate: starting %s's login shell; claude and claude-el use Elevated in it, and leaving the shell ends the approval\n", u.Name)
	}
	code = runSession(tools, session{user: u, groups: groups, unit: unit, approval: a, dir: wd, profile: s.Env.Config.ElevatedProfile, command: command}, stderr)
	if err := store.Remove(unit); err != nil {
		fmt.Fprintf(stderr, "ccboot elevate: %v\n", err)
		return exitFailed
	}
	log.Info("Elevated session ended", zap.String("approval", unit), zap.Int("exit", code))
	fmt.Fprintf(stdout, "ccboot elevate: session %s ended; its approval is removed\n", unit)
	return code
}

// session is what runSession starts.
type session struct {
	user     sysuser.User
	groups   []sysuser.Group // the user's, from /etc/group
	unit     string
	approval broker.Approval
	dir      string // absolute; entered as the user
	profile  string // the Elevated tier's AWS profile
	command  []string
}

// sessionDir is where the session starts: dir when given (relative to
// the current directory wd), else wd when it is the user's home or inside
// it, else the home. Lexical only: the user's shell enters it
// (sessionScript), so root never follows a path the user controls.
func sessionDir(dir, wd string, wdErr error, u sysuser.User) (string, error) {
	switch {
	case filepath.IsAbs(dir):
		return filepath.Clean(dir), nil
	case wdErr != nil && dir != "":
		return "", fmt.Errorf("--dir %s: the current directory is gone (%v); give --dir an absolute path", dir, wdErr)
	case wdErr != nil:
		return u.Home, nil
	case dir != "":
		return filepath.Join(wd, dir), nil
	}
	if rel, err := filepath.Rel(u.Home, wd); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
		return wd, nil
	}
	return u.Home, nil
}

// sessionScript runs as the user, in the scope: enter the directory, then
// exec the command through the user's login shell, so the session has the
// login environment (/etc/profile.d, the user's profile) as `sudo -i` or
// `su -` would give it. $1 is the directory, the rest the command; with
// no command, the login shell itself.
const (
	sessionEnter       = `cd -- "$1" 2>/dev/null || { echo "ccboot elevate: $(id -un) cannot enter $1; give --dir a directory the user can open" >&2; exit 1; }; shift; `
	sessionScript      = sessionEnter + `exec "${SHELL:-/bin/sh}" -l -c 'exec "$0" "$@"' "$@"`
	sessionShellScript = sessionEnter + `exec "${SHELL:-/bin/sh}" -l`
)

// sessionArgs is systemd-run's command line for the approved session.
func sessionArgs(ss session) []string {
	script := sessionShellScript
	if len(ss.command) > 0 {
		script = sessionScript
	}
	return append([]string{
		"--quiet", "--scope", "--collect",
		"--unit=" + strings.TrimSuffix(ss.unit, ".scope"),
		"--slice=" + strings.TrimPrefix(broker.DefaultSlice, "/"),
		"--uid=" + strconv.Itoa(ss.user.UID), "--gid=" + strconv.Itoa(ss.user.GID),
		"--description=ccboot Elevated session of " + ss.user.Name + " approved by " + ss.approval.Approver + " until " + ss.approval.Until.Format(time.RFC3339),
		"--", "/bin/sh", "-c", script, "ccboot-elevate", ss.dir,
	}, ss.command...)
}

// sessionEnv is the session's whole environment: none of root's (its
// AWS keys, endpoints or LD_* must not reach the user), the terminal's
// type so the UI draws, and the Elevated profile. systemd-run adds HOME,
// SHELL, USER and LOGNAME from the user's passwd entry; they are set here
// as well so no root value can stand in for them.
func sessionEnv(ss session) []string {
	env := []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"HOME=" + ss.user.Home, "USER=" + ss.user.Name, "LOGNAME=" + ss.user.Name,
		"AWS_PROFILE=" + ss.profile,
	}
	for _, k := range []string{"TERM", "COLORTERM"} {
		if v := os.Getenv(k); v != "" && len(v) <= 64 && !strings.ContainsFunc(v, unicode.IsControl) {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// sessionCredential is systemd-run's: still root (it asks systemd for
// the scope), but with the user's supplementary groups already. In scope
// mode systemd-run only calls setresgid and setresuid before it execs the
// command; it never sets the groups, so without this the session would
// keep root's (gid 0, and on some images disk or wheel).
func sessionCredential(ss session) *syscall.Credential {
	gids := make([]uint32, 0, len(ss.groups))
	for _, g := range ss.groups {
		gids = append(gids, uint32(g.GID))
	}
	return &syscall.Credential{Uid: 0, Gid: 0, Groups: gids}
}

// runSession runs the session on this terminal and returns its exit code.
// Ctrl-C belongs to the session: elevate only waits for it (main's signal
// handling keeps SIGINT from ending elevate before the approval is removed).
func runSession(tools elevateTools, ss session, stderr io.Writer) int {
	cmd := exec.Command(tools.SystemdRun, sessionArgs(ss)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = sessionEnv(ss)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: sessionCredential(ss)}
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
