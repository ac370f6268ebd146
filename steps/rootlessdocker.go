package steps

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
	"github.com/ccboot/ccboot/bootstrap/runner"
	"github.com/ccboot/ccboot/bootstrap/sysuser"
)

// Where the rootless-docker step writes. Every file is root's: the unit is a
// user unit in /etc/systemd/user (limited to the target user by
// ConditionUser=), so root never writes in the user's home.
const (
	rootlessUnit        = "docker.service"
	rootlessUnitPath    = "etc/systemd/user/" + rootlessUnit
	rootlessWantsPath   = "etc/systemd/user/default.target.wants/" + rootlessUnit
	rootlessProfilePath = "etc/profile.d/ccboot-rootless-docker.sh"
	lingerDir           = "var/lib/systemd/linger"
	// rootDockerSocket is the root daemon's socket (/var/run links to /run
	// on both distributions; fsroot refuses a linked parent).
	rootDockerSocket = "run/docker.sock"
	// subIDCount is what rootless Docker and Podman need: a full 16-bit
	// range, so images with uids up to 65535 unpack.
	subIDCount = 65536
	// subIDFloor is where useradd starts allocating (SUB_UID_MIN).
	subIDFloor = 100000
)

// rootlessAptPackages complete docker.io for rootless use on Debian, which
// ships dockerd-rootless.sh in docker.io's contrib directory: the packages
// step adds them in enforced mode. AL2023 has no package of rootlesskit,
// slirp4netns or podman, so there is no dnf list (see README).
var rootlessAptPackages = []string{"rootlesskit", "slirp4netns", "uidmap", "dbus-user-session"}

// dockerdRootlessScripts are where dockerd-rootless.sh lives: Docker's own
// docker-ce-rootless-extras, Debian's docker.io.
var dockerdRootlessScripts = []string{
	"usr/bin/dockerd-rootless.sh",
	"usr/share/docker.io/contrib/dockerd-rootless.sh",
}

// RootlessDocker gives the target user a Docker of their own in enforced
// mode ([tiers] mode): a rootless dockerd as a systemd user service, or
// Podman, whichever the system has. The root daemon stays root's (the
// docker-group step keeps the user out of group docker in that mode).
type RootlessDocker struct{}

// Name implements bootstrap.Step.
func (RootlessDocker) Name() string { return "rootless-docker" }

// Needs implements bootstrap.Step: packages brings the tools; docker-group
// settles the user's groups, which the root-socket check reads.
func (RootlessDocker) Needs() []string {
	return []string{"packages", "docker-group", "user-privileges"}
}

// Scope implements bootstrap.Step: the user (made at first boot), their
// subordinate ids and their lingering manager belong to the instance.
func (RootlessDocker) Scope() bootstrap.Scope { return bootstrap.ScopeInstance }

// Check implements bootstrap.Step.
func (s RootlessDocker) Check(ctx context.Context, env *bootstrap.Env) (bootstrap.Drift, error) {
	return s.check(ctx, env, hostOf(env))
}

// Apply implements bootstrap.Step.
func (s RootlessDocker) Apply(ctx context.Context, env *bootstrap.Env) error {
	return s.apply(ctx, env, hostOf(env))
}

// Kinds of container engine the user can be given.
const (
	engineNone           = ""
	engineRootlessDocker = "rootless-docker"
	enginePodman         = "podman"
)

// rootlessState is what inspect found.
type rootlessState struct {
	user    sysuser.User
	engine  string   // engineNone, engineRootlessDocker or enginePodman
	script  string   // absolute path of dockerd-rootless.sh (rootless docker)
	missing []string // what rootless Docker lacks, for the note
	subuid  subIDFile
	subgid  subIDFile
	files   []managedFile
	enabled bool // the user unit is enabled (default.target.wants link)
	linger  bool
	active  bool // live: the user's docker.service runs
	socket  string
}

func (RootlessDocker) inspect(ctx context.Context, env *bootstrap.Env, h host) (rootlessState, error) {
	var st rootlessState
	u, err := env.TargetUser()
	if err != nil {
		return st, fmt.Errorf("rootless-docker: %w", err)
	}
	st.user = u
	exists := func(names ...string) (string, error) {
		for _, n := range names {
			ok, err := env.Sys.Exists(n)
			if err != nil {
				return "", fmt.Errorf("rootless-docker: %w", err)
			}
			if ok {
				return n, nil
			}
		}
		return "", nil
	}
	need := []struct {
		what  string
		names []string
	}{
		{"dockerd-rootless.sh", dockerdRootlessScripts},
		{"dockerd", []string{"usr/bin/dockerd", "usr/sbin/dockerd"}},
		{"rootlesskit", []string{"usr/bin/rootlesskit"}},
		{"slirp4netns", []string{"usr/bin/slirp4netns", "usr/bin/vpnkit"}},
		{"newuidmap", []string{"usr/bin/newuidmap"}},
		{"newgidmap", []string{"usr/bin/newgidmap"}},
	}
	for _, n := range need {
		found, err := exists(n.names...)
		if err != nil {
			return st, err
		}
		if found == "" {
			st.missing = append(st.missing, n.what)
		} else if n.what == "dockerd-rootless.sh" {
			st.script = "/" + found
		}
	}
	podman, err := exists("usr/bin/podman")
	if err != nil {
		return st, err
	}
	switch {
	case len(st.missing) == 0:
		st.engine = engineRootlessDocker
	case podman != "" && !slices.Contains(st.missing, "newuidmap") && !slices.Contains(st.missing, "newgidmap"):
		st.engine = enginePodman
	}
	if st.socket, err = rootSocketReach(env, u); err != nil {
		return st, err
	}
	if st.engine == engineNone {
		return st, nil
	}
	if st.subuid, err = readSubIDs(env.Sys, "etc/subuid"); err != nil {
		return st, err
	}
	if st.subgid, err = readSubIDs(env.Sys, "etc/subgid"); err != nil {
		return st, err
	}
	if st.engine != engineRootlessDocker {
		return st, nil
	}
	root := fsroot.FileSpec{Mode: 0o644, UID: 0, GID: 0}
	st.files = []managedFile{
		{tree: env.Sys, name: rootlessUnitPath, want: renderRootlessUnit(u.Name, st.script), spec: root},
		{tree: env.Sys, name: rootlessProfilePath, want: renderRootlessProfile(u.UID), spec: root},
	}
	if target, err := env.Sys.Readlink(rootlessWantsPath); err == nil {
		st.enabled = target == "/"+rootlessUnitPath
	}
	if st.linger, err = env.Sys.Exists(path.Join(lingerDir, u.Name)); err != nil {
		return st, fmt.Errorf("rootless-docker: %w", err)
	}
	if h.live {
		res, err := env.Run.Run(ctx, userSystemctl(u, "is-active", rootlessUnit))
		var exit *runner.ExitError
		if err != nil && !errors.As(err, &exit) {
			return st, fmt.Errorf("rootless-docker: ask %s's service manager about %s: %w", u.Name, rootlessUnit, err)
		}
		st.active = strings.TrimSpace(string(res.Stdout)) == "active"
	}
	return st, nil
}

func (s RootlessDocker) check(ctx context.Context, env *bootstrap.Env, h host) (bootstrap.Drift, error) {
	var d bootstrap.Drift
	if !env.Config.Enforced() {
		d.Note("advisory: docker group as before")
		return d, nil
	}
	st, err := s.inspect(ctx, env, h)
	if err != nil {
		return d, err
	}
	if st.socket != "" {
		d.Differ("%s", st.socket)
	}
	switch st.engine {
	case engineNone:
		// Not a failure: the user simply has no docker (issue 21).
		d.Note("enforced: docker is not given to %s: no rootless Docker (missing %s) and no usable Podman here; on Debian install %s, then run `ccboot repair`",
			st.user.Name, strings.Join(st.missing, ", "), strings.Join(rootlessAptPackages, " "))
		return d, nil
	case enginePodman:
		d.Note("enforced: %s runs containers with rootless Podman (its docker CLI where podman-docker is installed)", st.user.Name)
	default:
		d.Note("enforced: %s runs its own rootless dockerd (DOCKER_HOST=unix:///run/user/%d/docker.sock)", st.user.Name, st.user.UID)
	}
	for _, f := range []struct {
		file subIDFile
		name string
	}{{st.subuid, "/etc/subuid"}, {st.subgid, "/etc/subgid"}} {
		if !f.file.covers(st.user) {
			d.Differ("add %s:%d:%d to %s", st.user.Name, f.file.free(), subIDCount, f.name)
		}
	}
	if st.engine != engineRootlessDocker {
		return d, nil
	}
	for _, f := range st.files {
		if err := f.drift(&d); err != nil {
			return d, fmt.Errorf("rootless-docker: %w", err)
		}
	}
	if !st.enabled {
		d.Differ("enable user unit %s (systemctl --global enable)", rootlessUnit)
	}
	if !st.linger {
		d.Differ("loginctl enable-linger %s", st.user.Name)
	}
	if h.live && !st.active {
		d.Differ("start %s's rootless %s", st.user.Name, rootlessUnit)
	}
	return d, nil
}

func (s RootlessDocker) apply(ctx context.Context, env *bootstrap.Env, h host) error {
	if !env.Config.Enforced() {
		return nil
	}
	st, err := s.inspect(ctx, env, h)
	if err != nil {
		return err
	}
	if st.socket != "" {
		// Not ours to repair (the docker-group step and docker's own
		// config own it), and never to be left as it is.
		return fmt.Errorf("rootless-docker: %s", st.socket)
	}
	if st.engine == engineNone {
		return nil
	}
	if err := addSubIDs(env.Sys, "etc/subuid", st.subuid, st.user); err != nil {
		return err
	}
	if err := addSubIDs(env.Sys, "etc/subgid", st.subgid, st.user); err != nil {
		return err
	}
	if st.engine != engineRootlessDocker {
		return nil
	}
	for _, dir := range []string{"etc/systemd/user", "etc/profile.d"} {
		if _, err := env.Sys.EnsureDir(dir, fsroot.FileSpec{Mode: 0o755, UID: 0, GID: 0}); err != nil {
			return fmt.Errorf("rootless-docker: %w", err)
		}
	}
	for _, f := range st.files {
		if err := f.write(); err != nil {
			return fmt.Errorf("rootless-docker: %w", err)
		}
	}
	if !st.enabled {
		args := []string{"--global", "enable", rootlessUnit}
		if !h.live {
			args = append([]string{"--root=" + env.Root}, args...)
		}
		if _, err := env.Run.Run(ctx, runner.Cmd{Name: "systemctl", Args: args}); err != nil {
			return fmt.Errorf("rootless-docker: enable user unit %s: %w", rootlessUnit, err)
		}
	}
	if !st.linger {
		if err := enableLinger(ctx, env, h, st.user); err != nil {
			return err
		}
	}
	if h.live && !st.active {
		env.Progress("starting " + st.user.Name + "'s rootless docker")
		// The user's manager (started by linger) must read the new unit.
		for _, c := range []runner.Cmd{
			{Name: "systemctl", Args: []string{"start", fmt.Sprintf("user@%d.service", st.user.UID)}},
			userSystemctl(st.user, "daemon-reload"),
			userSystemctl(st.user, "start", rootlessUnit),
		} {
			if _, err := env.Run.Run(ctx, c); err != nil {
				return fmt.Errorf("rootless-docker: %s: %w; see `journalctl _UID=%d --user-unit=%s`", c, err, st.user.UID, rootlessUnit)
			}
		}
	}
	return nil
}

// userSystemctl talks to the user's own service manager from root, without
// running anything as root in the user's session.
func userSystemctl(u sysuser.User, args ...string) runner.Cmd {
	return runner.Cmd{Name: "systemctl", Args: append([]string{"--user", "--machine=" + u.Name + "@.host"}, args...)}
}

// enableLinger keeps the user's manager (and so their dockerd) running
// without a login. Offline, the flag file is all loginctl would write.
func enableLinger(ctx context.Context, env *bootstrap.Env, h host, u sysuser.User) error {
	if h.live {
		if _, err := env.Run.Run(ctx, runner.Cmd{Name: "loginctl", Args: []string{"enable-linger", u.Name}}); err != nil {
			return fmt.Errorf("rootless-docker: loginctl enable-linger %s: %w", u.Name, err)
		}
		return nil
	}
	if _, err := env.Sys.EnsureDir(lingerDir, fsroot.FileSpec{Mode: 0o755, UID: 0, GID: 0}); err != nil {
		return fmt.Errorf("rootless-docker: %w", err)
	}
	if _, err := env.Sys.WriteFile(path.Join(lingerDir, u.Name), nil, fsroot.FileSpec{Mode: 0o644, UID: 0, GID: 0}); err != nil {
		return fmt.Errorf("rootless-docker: %w", err)
	}
	return nil
}

// renderRootlessUnit is dockerd-rootless-setuptool.sh's unit, written once
// by root for the one user ConditionUser= names: other users' managers skip it.
func renderRootlessUnit(user, script string) []byte {
	return []byte(`# Written by ccboot (rootless-docker step); edits are replaced.
[Unit]
Description=Docker Application Container Engine (Rootless)
Documentation=https://docs.docker.com/go/rootless/
ConditionUser=` + user + `

[Service]
Environment=PATH=` + path.Dir(script) + `:/usr/sbin:/usr/bin:/sbin:/bin
ExecStart=` + script + `
ExecReload=/bin/kill -s HUP $MAINPID
TimeoutSec=0
RestartSec=2
Restart=always
StartLimitBurst=3
StartLimitInterval=60s
LimitNOFILE=infinity
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
Delegate=yes
Type=simple
KillMode=mixed

[Install]
WantedBy=default.target
`)
}

// renderRootlessProfile points the user's docker CLI at their own daemon;
// other users' shells are left alone.
func renderRootlessProfile(uid int) []byte {
	id := strconv.Itoa(uid)
	return []byte(`# Written by ccboot (rootless-docker step): the user's docker talks to their own rootless dockerd.
if [ "$(id -u)" = "` + id + `" ]; then
	export DOCKER_HOST=unix:///run/user/` + id + `/docker.sock
fi
`)
}

// rootSocketReach returns, as one line with its fix, why the user could
// reach the root daemon's socket, or "" when they cannot. It is the second
// line of proof behind the docker-group step: membership in group docker
// counts even while the socket is absent (docker makes it root:docker when
// it starts), and a socket that exists must not be open to the user by its
// owner, its mode or its group.
func rootSocketReach(env *bootstrap.Env, u sysuser.User) (string, error) {
	g, found, err := sysuser.LookupGroup(env.Sys, dockerGroupName)
	if err != nil {
		return "", fmt.Errorf("rootless-docker: %w", err)
	}
	if found && (g.HasMember(u.Name) || g.GID == u.GID) {
		return fmt.Sprintf("%s is in group %s, which opens the root daemon's socket: run `gpasswd -d %s %s` (enforced mode keeps the user out of it)", u.Name, dockerGroupName, u.Name, dockerGroupName), nil
	}
	sockets := []string{rootDockerSocket}
	// /var/run is a link to /run on both distributions; where it is a
	// directory of its own, docker's default socket is there.
	if fi, err := env.Sys.Lstat("var/run"); err == nil && fi.IsDir() {
		sockets = append(sockets, "var/"+rootDockerSocket)
	}
	for _, name := range sockets {
		fi, err := env.Sys.Lstat(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("rootless-docker: %w", err)
		}
		display := env.Sys.Path(name)
		uid, gid := fsroot.Owner(fi)
		switch {
		case uid == u.UID:
			return fmt.Sprintf("%s belongs to %s: the root daemon's socket must be root's; fix docker's config and restart docker", display, u.Name), nil
		case fi.Mode().Perm()&0o002 != 0: // connect(2) needs write permission
			return fmt.Sprintf("%s is mode %04o, so every user drives the root daemon: run `chmod 0660 %s` and remove what set it (a -H or \"hosts\" in docker's config)", display, fi.Mode().Perm(), display), nil
		case fi.Mode().Perm()&0o020 != 0 && gid == u.GID:
			return fmt.Sprintf("%s is group %d, %s's own group, so %s drives the root daemon: set group docker in docker's config", display, gid, u.Name, u.Name), nil
		}
	}
	return "", nil
}

// subIDRange is one line of /etc/subuid or /etc/subgid.
type subIDRange struct {
	owner        string // a login name or a numeric uid
	start, count int
}

// subIDFile is a parsed /etc/subuid or /etc/subgid, with its bytes kept so
// an addition leaves every other line as it was.
type subIDFile struct {
	data   []byte
	ranges []subIDRange
}

func readSubIDs(sys *fsroot.Tree, name string) (subIDFile, error) {
	data, err := sys.ReadFile(name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return subIDFile{}, fmt.Errorf("rootless-docker: read %s: %w", sys.Path(name), err)
	}
	f := subIDFile{data: data}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(fields) != 3 {
			continue
		}
		start, err1 := strconv.Atoi(fields[1])
		count, err2 := strconv.Atoi(fields[2])
		if err1 != nil || err2 != nil || start < 0 || count <= 0 {
			continue // not ours to judge; newuidmap ignores it too
		}
		f.ranges = append(f.ranges, subIDRange{fields[0], start, count})
	}
	return f, nil
}

// covers reports whether u owns at least subIDCount ids in one range, by
// name or by uid (both forms are valid).
func (f subIDFile) covers(u sysuser.User) bool {
	for _, r := range f.ranges {
		if (r.owner == u.Name || r.owner == strconv.Itoa(u.UID)) && r.count >= subIDCount {
			return true
		}
	}
	return false
}

// free returns the lowest start at or above subIDFloor, on a subIDCount
// boundary as useradd allocates, that overlaps no existing range.
func (f subIDFile) free() int {
	start := subIDFloor
	for {
		clash := false
		for _, r := range f.ranges {
			if start < r.start+r.count && r.start < start+subIDCount {
				clash = true
				start = ((r.start+r.count-subIDFloor+subIDCount-1)/subIDCount)*subIDCount + subIDFloor
				break
			}
		}
		if !clash {
			return start
		}
	}
}

// addSubIDs appends one range for u unless it has one; the file is
// replaced atomically and keeps every other line byte for byte.
func addSubIDs(sys *fsroot.Tree, name string, f subIDFile, u sysuser.User) error {
	if f.covers(u) {
		return nil
	}
	data := slices.Clone(f.data)
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	data = fmt.Appendf(data, "%s:%d:%d\n", u.Name, f.free(), subIDCount)
	if _, err := sys.WriteFile(name, data, fsroot.FileSpec{Mode: 0o644, UID: 0, GID: 0}); err != nil {
		return fmt.Errorf("rootless-docker: %w", err)
	}
	return nil
}
