package steps

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/runner"
	"github.com/ccboot/ccboot/bootstrap/sysuser"
	"github.com/ccboot/ccboot/bootstrap/units"
)

const (
	dockerGroupName = "docker"
	dockerUnit      = "docker.service"
)

// dockerUnitFiles are where packages put docker.service (/usr/lib on
// Amazon Linux, /lib on Debian's docker.io) or an admin put their own.
var dockerUnitFiles = [...]string{
	"usr/lib/systemd/system/" + dockerUnit,
	"lib/systemd/system/" + dockerUnit,
	"etc/systemd/system/" + dockerUnit,
}

// DockerGroup puts the target user in group docker and turns
// docker.service on: enabled always, started on a live system only.
type DockerGroup struct{}

// Name implements bootstrap.Step.
func (DockerGroup) Name() string { return "docker-group" }

// Needs implements bootstrap.Step: the docker package brings the unit and
// usually the group.
func (DockerGroup) Needs() []string { return []string{"packages"} }

// Scope implements bootstrap.Step: the group and the enabled unit belong to the image; adding the user
// (created at first boot) and starting docker are left to the boot, see Env.Baking.
func (DockerGroup) Scope() bootstrap.Scope { return bootstrap.ScopeImage }

// Check implements bootstrap.Step. Membership is read from <root>/etc/group
// without running anything; unit state comes from systemctl.
func (s DockerGroup) Check(ctx context.Context, env *bootstrap.Env) (bootstrap.Drift, error) {
	return s.check(ctx, env, hostOf(env))
}

// Apply implements bootstrap.Step.
func (s DockerGroup) Apply(ctx context.Context, env *bootstrap.Env) error {
	return s.apply(ctx, env, hostOf(env))
}

// dockerState is what inspect found.
type dockerState struct {
	user      sysuser.User
	unitFile  string // "" when docker.service is not installed
	group     sysuser.Group
	haveGroup bool
	member    bool
	// shadow is the group's /etc/gshadow entry; a groupadd or usermod
	// killed between its two files leaves it missing or without the user.
	shadow     sysuser.ShadowGroup
	enabled    bool
	active     bool
	unitsMgr   units.Manager
	staleProcs int // live: processes of the user that predate the membership
}

func (DockerGroup) inspect(ctx context.Context, env *bootstrap.Env, h host) (dockerState, error) {
	var st dockerState
	u, err := env.TargetUser()
	switch {
	case err != nil && env.Baking:
		// The user is often made at first boot (cloud-init's default
		// user); joining the group is then the boot's job.
		u = sysuser.User{}
	case err != nil:
		return st, fmt.Errorf("docker-group: %w", err)
	}
	st.user = u
	for _, name := range dockerUnitFiles {
		ok, err := env.Sys.Exists(name)
		if err != nil {
			return st, fmt.Errorf("docker-group: %w", err)
		}
		if ok {
			st.unitFile = name
			break
		}
	}
	st.group, st.haveGroup, err = sysuser.LookupGroup(env.Sys, dockerGroupName)
	if err != nil {
		return st, fmt.Errorf("docker-group: %w", err)
	}
	// A user whose primary group is docker is a member without being listed.
	st.member = st.haveGroup && u.Name != "" && (st.group.HasMember(u.Name) || u.GID == st.group.GID)
	if env.Baking {
		st.member = true // not the image's business
	}
	if st.haveGroup {
		if st.shadow, err = sysuser.LookupShadowGroup(env.Sys, dockerGroupName); err != nil {
			return st, fmt.Errorf("docker-group: %w", err)
		}
	}
	st.unitsMgr = units.New(h.root(env), env.Run)
	if st.unitFile == "" {
		return st, nil
	}
	if st.enabled, err = st.unitsMgr.IsEnabled(ctx, dockerUnit); err != nil {
		return st, fmt.Errorf("docker-group: %w", err)
	}
	if h.live && !env.Baking {
		if st.active, err = st.unitsMgr.IsActive(ctx, dockerUnit); err != nil {
			return st, fmt.Errorf("docker-group: %w", err)
		}
		if st.member {
			st.staleProcs = staleSessions(h.proc, u.UID, st.group.GID)
		}
	}
	return st, nil
}

func (s DockerGroup) check(ctx context.Context, env *bootstrap.Env, h host) (bootstrap.Drift, error) {
	var d bootstrap.Drift
	st, err := s.inspect(ctx, env, h)
	if err != nil {
		return d, err
	}
	if st.unitFile == "" {
		d.Differ("%s is not installed (the packages step installs docker)", dockerUnit)
	}
	if !st.haveGroup {
		d.Differ("create group %s", dockerGroupName)
	}
	if st.shadow.File && st.haveGroup && !st.shadow.Found {
		d.Differ("add group %s to /etc/gshadow, which lacks it (grpconv)", dockerGroupName)
	}
	switch {
	case env.Config.Enforced():
		// Group docker is root-equivalent (the daemon's socket runs
		// containers as root): in enforced mode the user never joins it.
		if !env.Baking {
			d.Note("enforced tiers: %s is not added to group %s, which grants root (the rootless-docker step gives a Docker of its own)", st.user.Name, dockerGroupName)
		}
	case st.member && st.shadowLacksUser(env):
		d.Differ("add %s to group %s in /etc/gshadow", st.user.Name, dockerGroupName)
	case !st.member:
		d.Differ("add %s to group %s", st.user.Name, dockerGroupName)
		d.Note("%s must log in again (or run `newgrp %s`) before the new group applies to their sessions", st.user.Name, dockerGroupName)
	}
	if st.unitFile != "" && !st.enabled {
		d.Differ("enable %s", dockerUnit)
	}
	// Starting docker is the instance's; an image only has it enabled.
	if h.live && !env.Baking && st.unitFile != "" && !st.active {
		d.Differ("start %s", dockerUnit)
	}
	if st.staleProcs > 0 && !env.Config.Enforced() {
		d.Note("%d running processes of %s started before it joined group %s; log in again (or run `newgrp %s`) to use docker without sudo",
			st.staleProcs, st.user.Name, dockerGroupName, dockerGroupName)
	}
	return d, nil
}

func (s DockerGroup) apply(ctx context.Context, env *bootstrap.Env, h host) error {
	st, err := s.inspect(ctx, env, h)
	if err != nil {
		return err
	}
	if st.unitFile == "" {
		return fmt.Errorf("docker-group: docker is not installed (no %s, %s or %s); the packages step installs it: check its result, or add docker to [packages] install",
			env.Sys.Path(dockerUnitFiles[0]), env.Sys.Path(dockerUnitFiles[1]), env.Sys.Path(dockerUnitFiles[2]))
	}
	// groupadd and usermod take the root themselves (they chroot to edit
	// the image's databases), so they run from the host, not through chroot.
	rootArgs := func(args ...string) []string {
		if h.live {
			return args
		}
		return append([]string{"--root", env.Root}, args...)
	}
	if !st.haveGroup {
		c := runner.Cmd{Name: "groupadd", Args: append([]string{"--system"}, rootArgs(dockerGroupName)...)}
		var exit *runner.ExitError
		// Exit 9 is "group already exists": someone made it since we looked.
		if _, err := env.Run.Run(ctx, c); err != nil && !(errors.As(err, &exit) && exit.Code == 9) {
			return fmt.Errorf("docker-group: create group %s: %w", dockerGroupName, err)
		}
	}
	if st.shadow.File && st.haveGroup && !st.shadow.Found {
		// grpconv adds the entries /etc/gshadow lacks, from /etc/group.
		if _, err := env.Run.Run(ctx, runner.Cmd{Name: "grpconv", Args: rootArgs()}); err != nil {
			return fmt.Errorf("docker-group: add group %s to /etc/gshadow: %w; run `grpck` to see what else disagrees", dockerGroupName, err)
		}
		if st.shadow, err = sysuser.LookupShadowGroup(env.Sys, dockerGroupName); err != nil {
			return fmt.Errorf("docker-group: %w", err)
		}
	}
	if !env.Config.Enforced() && (!st.member || st.shadowLacksUser(env)) {
		c := runner.Cmd{Name: "usermod", Args: append([]string{"-aG", dockerGroupName}, rootArgs(st.user.Name)...)}
		if _, err := env.Run.Run(ctx, c); err != nil {
			return fmt.Errorf("docker-group: add %s to group %s: %w", st.user.Name, dockerGroupName, err)
		}
	}
	if !st.enabled {
		if err := st.unitsMgr.Enable(ctx, dockerUnit); err != nil {
			return fmt.Errorf("docker-group: enable %s: %w", dockerUnit, err)
		}
	}
	if h.live && !env.Baking && !st.active {
		env.Progress("starting " + dockerUnit)
		if err := st.unitsMgr.Start(ctx, dockerUnit); err != nil {
			return fmt.Errorf("docker-group: start %s: %w", dockerUnit, err)
		}
	}
	return nil
}

// staleSessions counts processes running as uid that lack gid: they were
// started before the user joined the group and keep their old groups until
// they exit. It reads the running kernel's /proc, so only live runs call
// it; anything unreadable (a process that just exited) is skipped.
func staleSessions(proc string, uid, gid int) int {
	entries, err := os.ReadDir(proc)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(proc, e.Name(), "status"))
		if err != nil {
			continue
		}
		pUID, gids, ok := parseProcStatus(data)
		if ok && pUID == uid && !slices.Contains(gids, gid) {
			n++
		}
	}
	return n
}

// parseProcStatus returns the real uid and every group (primary and
// supplementary) from /proc/PID/status.
func parseProcStatus(data []byte) (uid int, gids []int, ok bool) {
	haveUID := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, val, found := strings.Cut(sc.Text(), ":")
		if !found {
			continue
		}
		f := strings.Fields(val)
		switch key {
		case "Uid":
			if len(f) > 0 {
				if n, err := strconv.Atoi(f[0]); err == nil {
					uid, haveUID = n, true
				}
			}
		case "Gid":
			if len(f) > 0 {
				if n, err := strconv.Atoi(f[0]); err == nil {
					gids = append(gids, n)
				}
			}
		case "Groups":
			for _, g := range f {
				if n, err := strconv.Atoi(g); err == nil {
					gids = append(gids, n)
				}
			}
		}
	}
	return uid, gids, haveUID
}

// shadowLacksUser: /etc/group lists the user in group docker but the
// group's /etc/gshadow entry does not (usermod was killed between the two
// files). A user whose primary group is docker needs neither list.
func (st dockerState) shadowLacksUser(env *bootstrap.Env) bool {
	if env.Baking || !st.shadow.Found || st.user.GID == st.group.GID || !st.group.HasMember(st.user.Name) {
		return false
	}
	return !slices.Contains(st.shadow.Members, st.user.Name)
}
