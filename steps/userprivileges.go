package steps

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
	"github.com/ccboot/ccboot/bootstrap/runner"
	"github.com/ccboot/ccboot/bootstrap/sysuser"
)

// rootGroups grant root, or what amounts to it, to their members.
var rootGroups = sysuser.RootGroups

const (
	// cloudInitSudoers is where cloud-init's default user gets
	// "NAME ALL=(ALL) NOPASSWD:ALL" (Amazon Linux, Debian's cloud images).
	// cloud-init writes it once per instance, in its init stage, which
	// ccboot.service is ordered after: once removed it stays removed.
	cloudInitSudoers = "etc/sudoers.d/90-cloud-init-users"
	// ptraceSysctl keeps Yama's ptrace_scope at 1 or more across boots: a
	// process of the user cannot ptrace (or read /proc/PID/mem of)
	// another of the same user unless it is that process's ancestor.
	ptraceSysctl = "etc/sysctl.d/60-ccboot-ptrace.conf"
	ptraceKey    = "kernel.yama.ptrace_scope"
)

// UserPrivileges leaves the target user, in [tiers] mode = enforced, no
// path to root: in none of rootGroups, no sudo rule (cloud-init's is
// removed; `sudo -l -U USER` proves none is left), and ptrace kept to a
// process's own descendants. Admins keep root through Session Manager's
// ssm-user. Advisory mode does nothing and spawns nothing; it does not put
// the user back in groups, because it cannot know which the user had.
type UserPrivileges struct{}

// Name implements bootstrap.Step.
func (UserPrivileges) Name() string { return "user-privileges" }

// Needs implements bootstrap.Step: the packages bring groups (docker) and
// sudo; docker-group must have made the group before membership is judged.
func (UserPrivileges) Needs() []string { return []string{"packages", "docker-group"} }

// Scope implements bootstrap.Step: the user is made at first boot.
func (UserPrivileges) Scope() bootstrap.Scope { return bootstrap.ScopeInstance }

// Check implements bootstrap.Step.
func (s UserPrivileges) Check(ctx context.Context, env *bootstrap.Env) (bootstrap.Drift, error) {
	return s.check(ctx, env, hostOf(env))
}

// Apply implements bootstrap.Step.
func (s UserPrivileges) Apply(ctx context.Context, env *bootstrap.Env) error {
	return s.apply(ctx, env, hostOf(env))
}

// privState is what inspect found.
type privState struct {
	user    sysuser.User
	groups  []string // root-granting groups that list the user
	sudoers managedFile
	oldSudo []byte
	hasRule bool // cloud-init's file has a rule for the user
	ptrace  managedFile
	scope   int // live ptrace_scope; -1 offline
}

func (UserPrivileges) inspect(env *bootstrap.Env, h host) (privState, error) {
	st := privState{scope: -1}
	u, err := env.TargetUser()
	if err != nil {
		return st, fmt.Errorf("user-privileges: %w", err)
	}
	st.user = u
	if u.UID == 0 {
		return st, fmt.Errorf("user-privileges: [ccboot] user %s has uid 0, and root reaches IMDS and everything else; enforced tiers need an unprivileged user: set [ccboot] user, or [tiers] mode = advisory", u.Name)
	}
	for _, name := range rootGroups {
		g, found, err := sysuser.LookupGroup(env.Sys, name)
		if err != nil {
			return st, fmt.Errorf("user-privileges: %w", err)
		}
		switch {
		case !found:
		case u.GID == g.GID:
			return st, fmt.Errorf("user-privileges: the primary group of %s is %s, which grants root; give it a group of its own (groupadd %s; usermod -g %s %s) or set [tiers] mode = advisory",
				u.Name, name, u.Name, u.Name, u.Name)
		case g.HasMember(u.Name):
			st.groups = append(st.groups, name)
		}
	}
	old, _, err := env.Sys.ReadFileCheck(cloudInitSudoers, nil)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return st, fmt.Errorf("user-privileges: %w", err)
	default:
		kept, removed := withoutUserRules(old, u.Name)
		st.hasRule, st.oldSudo = removed, old
		st.sudoers = managedFile{tree: env.Sys, name: cloudInitSudoers, want: kept, spec: fsroot.FileSpec{Mode: 0o440, UID: 0, GID: 0}}
	}
	want := 1
	if h.live {
		if st.scope, err = readPtraceScope(h.proc); err != nil {
			return st, fmt.Errorf("user-privileges: %w", err)
		}
		want = max(want, st.scope) // never lower a stricter setting
	}
	st.ptrace = managedFile{tree: env.Sys, name: ptraceSysctl,
		want: []byte(fmt.Sprintf("# Written by ccboot ([tiers] mode = enforced): no process of a user may\n# ptrace another of that user unless it is its ancestor.\n%s = %d\n", ptraceKey, want)),
		spec: fsroot.FileSpec{Mode: 0o644, UID: 0, GID: 0}}
	return st, nil
}

func (s UserPrivileges) check(ctx context.Context, env *bootstrap.Env, h host) (bootstrap.Drift, error) {
	var d bootstrap.Drift
	if !env.Config.Enforced() {
		d.Note("advisory: not enforced (set [tiers] mode = enforced to take root away from %s)", env.Config.User)
		return d, nil
	}
	st, err := s.inspect(env, h)
	if err != nil {
		return d, err
	}
	for _, g := range st.groups {
		d.Differ("remove %s from group %s (it grants root)", st.user.Name, g)
	}
	if st.hasRule {
		d.Differ("remove the sudo rule for %s from %s", st.user.Name, env.Sys.Path(cloudInitSudoers))
		d.Diff += bootstrap.UnifiedDiff(env.Sys.Path(cloudInitSudoers), st.oldSudo, st.sudoers.want)
	}
	if err := st.ptrace.drift(&d); err != nil {
		return d, fmt.Errorf("user-privileges: %w", err)
	}
	if st.scope == 0 {
		d.Differ("set %s = 1 (is 0: any process of %s can ptrace the others)", ptraceKey, st.user.Name)
	}
	if !h.live || !d.InSync() {
		// sudo reads the running system's sudoers; with changes pending
		// it would only list what Apply is about to remove.
		return d, nil
	}
	if err := proveNoSudo(ctx, env, st.user.Name); err != nil {
		return d, err
	}
	return d, nil
}

func (s UserPrivileges) apply(ctx context.Context, env *bootstrap.Env, h host) error {
	if !env.Config.Enforced() {
		return nil
	}
	st, err := s.inspect(env, h)
	if err != nil {
		return err
	}
	for _, g := range st.groups {
		// gpasswd edits /etc/group and /etc/gshadow together; --root
		// points it at an image, like groupadd and usermod in docker-group.
		args := []string{"-d", st.user.Name, g}
		if !h.live {
			args = append([]string{"--root", env.Root}, args...)
		}
		if _, err := env.Run.Run(ctx, runner.Cmd{Name: "gpasswd", Args: args}); err != nil {
			return fmt.Errorf("user-privileges: remove %s from group %s: %w", st.user.Name, g, err)
		}
	}
	if st.hasRule {
		// What visudo parsed is exactly what is written: a broken sudoers
		// file would lock root's own sudo out too.
		if _, err := env.Run.Run(ctx, runner.Cmd{Name: "visudo", Args: []string{"-c", "-q", "-f", "-"}, Stdin: st.sudoers.want}); err != nil {
			return fmt.Errorf("user-privileges: %s without %s's rule does not parse, left as it is: %w; fix it with visudo -f %s", env.Sys.Path(cloudInitSudoers), st.user.Name, err, "/"+cloudInitSudoers)
		}
		if err := st.sudoers.write(); err != nil {
			return fmt.Errorf("user-privileges: %w", err)
		}
	}
	if _, err := env.Sys.EnsureDir("etc/sysctl.d", fsroot.FileSpec{Mode: 0o755, UID: 0, GID: 0}); err != nil {
		return fmt.Errorf("user-privileges: %w", err)
	}
	if err := st.ptrace.write(); err != nil {
		return fmt.Errorf("user-privileges: %w", err)
	}
	if st.scope == 0 {
		if _, err := env.Run.Run(ctx, runner.Cmd{Name: "sysctl", Args: []string{"-q", "-w", ptraceKey + "=1"}}); err != nil {
			return fmt.Errorf("user-privileges: %w", err)
		}
	}
	return nil
}

// withoutUserRules drops the lines of a sudoers file whose first word is
// the user (cloud-init writes "NAME ALL=(ALL) NOPASSWD:ALL" under a
// "# User rules for NAME" comment, which goes too); removed says whether
// there was a rule.
func withoutUserRules(data []byte, user string) (kept []byte, removed bool) {
	var b bytes.Buffer
	for _, line := range strings.SplitAfter(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == user:
			removed = true
			continue
		case strings.TrimSpace(line) == "# User rules for "+user:
			continue
		}
		b.WriteString(line)
	}
	if !removed {
		return data, false
	}
	return b.Bytes(), true
}

// cutText bounds text quoted from a command's output.
func cutText(s string, most int) string {
	if len(s) <= most {
		return s
	}
	return s[:most] + "..."
}

// readPtraceScope reads Yama's setting from the running kernel.
func readPtraceScope(proc string) (int, error) {
	p := filepath.Join(proc, strings.TrimPrefix(bootstrap.YamaSysctlDir, "/proc/"), "ptrace_scope")
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%s is missing: this kernel has no Yama LSM, so any process of the user can ptrace the others; boot a kernel with Yama (Amazon Linux's and Debian's have it) or set [tiers] mode = advisory", p)
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a number", p, data)
	}
	return n, nil
}

// proveNoSudo asks sudo itself, which reads every sudoers file and group
// rule, whether the user may run anything; a rule ccboot did not write is
// an error naming the fix.
func proveNoSudo(ctx context.Context, env *bootstrap.Env, user string) error {
	res, err := env.Run.Run(ctx, runner.Cmd{Name: "sudo", Args: []string{"-l", "-U", user}, Env: []string{"LC_ALL=C"}})
	out := string(res.Stdout)
	var exit *runner.ExitError
	if err != nil && !errors.As(err, &exit) {
		if strings.Contains(err.Error(), "not found") {
			return nil // no sudo at all: nothing grants root through it
		}
		return fmt.Errorf("user-privileges: sudo -l -U %s: %w", user, err)
	}
	switch list, ok := sysuser.ParseSudoList(out); {
	case ok && list.None:
		return nil
	case ok:
		return fmt.Errorf("user-privileges: %s still has sudo rules (sudo -l -U %s lists %s); remove them from /etc/sudoers or /etc/sudoers.d with visudo, then run ccboot repair",
			user, user, cutText(list.Rules, 200))
	default:
		return fmt.Errorf("user-privileges: cannot tell whether %s may use sudo: sudo -l -U %s printed %q (%v)", user, user, runner.Tail(res.Stdout, 2), err)
	}
}
