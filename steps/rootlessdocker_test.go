package steps

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/runner"
	"github.com/ccboot/ccboot/bootstrap/sysuser"
)

// enforcedEnv is newTestEnv with [tiers] mode = enforced and the given
// executables (empty files: the step only looks for them) in the tree.
func rootlessEnforcedEnv(t *testing.T, tools ...string) (*bootstrap.Env, *runner.Fake) {
	t.Helper()
	env, fake := newTestEnv(t)
	env.Config.TierMode = bootstrap.TierEnforced
	for _, name := range tools {
		writeTestFile(t, env.Root, name, "", 0o755)
	}
	return env, fake
}

// debianRootless is what docker.io + rootlesskit + slirp4netns + uidmap put
// on a Debian 12 machine (checked with dpkg -c).
var debianRootless = []string{
	"usr/share/docker.io/contrib/dockerd-rootless.sh", "usr/sbin/dockerd",
	"usr/bin/rootlesskit", "usr/bin/slirp4netns", "usr/bin/newuidmap", "usr/bin/newgidmap",
}

// fakeGlobalEnable plays `systemctl --root=R --global enable docker.service`:
// the link it makes is what Check reads.
func fakeGlobalEnable(t *testing.T, env *bootstrap.Env, fake *runner.Fake) {
	fake.On("systemctl --root="+env.Root+" --global enable docker.service", func(runner.Cmd) (runner.Result, error) {
		link := filepath.Join(env.Root, rootlessWantsPath)
		if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
			t.Error(err)
		}
		if err := os.Symlink("/"+rootlessUnitPath, link); err != nil {
			t.Error(err)
		}
		return runner.Result{}, nil
	})
}

func TestRootlessDockerAdvisoryIsANoop(t *testing.T) {
	env, fake := newTestEnv(t)
	for _, name := range debianRootless {
		writeTestFile(t, env.Root, name, "", 0o755)
	}
	ctx := context.Background()
	d, err := RootlessDocker{}.Check(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	if !d.InSync() || len(d.Notes) != 1 || d.Notes[0] != "advisory: docker group as before" {
		t.Fatalf("advisory Check = %+v, want in sync with the advisory note", d)
	}
	if err := (RootlessDocker{}).Apply(ctx, env); err != nil {
		t.Fatal(err)
	}
	if calls := fake.Calls(); len(calls) != 0 {
		t.Errorf("advisory Apply ran %v", calls)
	}
	for _, name := range []string{"etc/subuid", "etc/subgid", rootlessUnitPath, rootlessProfilePath} {
		if _, err := os.Lstat(filepath.Join(env.Root, name)); !os.IsNotExist(err) {
			t.Errorf("advisory Apply made %s", name)
		}
	}
}

func TestRootlessDockerEnforcedDebian(t *testing.T) {
	env, fake := rootlessEnforcedEnv(t, debianRootless...)
	// Another user already holds the first range: ours must not overlap it.
	writeTestFile(t, env.Root, "etc/subuid", "admin:100000:65536\n", 0o644)
	fakeGlobalEnable(t, env, fake)
	ctx := context.Background()
	d, err := RootlessDocker{}.Check(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"add ec2-user:165536:65536 to /etc/subuid",
		"add ec2-user:100000:65536 to /etc/subgid",
		"create " + filepath.Join(env.Root, rootlessUnitPath),
		"create " + filepath.Join(env.Root, rootlessProfilePath),
		"enable user unit docker.service (systemctl --global enable)",
		"loginctl enable-linger ec2-user",
	}
	if strings.Join(d.Changes, "\n") != strings.Join(want, "\n") {
		t.Fatalf("Check changes:\n%s\nwant:\n%s", strings.Join(d.Changes, "\n"), strings.Join(want, "\n"))
	}
	if err := (RootlessDocker{}).Apply(ctx, env); err != nil {
		t.Fatal(err)
	}
	if d, err = (RootlessDocker{}).Check(ctx, env); err != nil || !d.InSync() {
		t.Fatalf("Check after Apply: %v %v", d.Changes, err)
	}
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join(env.Root, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	if got := read("etc/subuid"); got != "admin:100000:65536\nec2-user:165536:65536\n" {
		t.Errorf("/etc/subuid = %q", got)
	}
	if got := read("etc/subgid"); got != "ec2-user:100000:65536\n" {
		t.Errorf("/etc/subgid = %q", got)
	}
	unit := read(rootlessUnitPath)
	for _, line := range []string{
		"ConditionUser=ec2-user\n",
		"ExecStart=/usr/share/docker.io/contrib/dockerd-rootless.sh\n",
		"Environment=PATH=/usr/share/docker.io/contrib:/usr/sbin:/usr/bin:/sbin:/bin\n",
		"Delegate=yes\n",
		"WantedBy=default.target\n",
	} {
		if !strings.Contains(unit, line) {
			t.Errorf("unit lacks %q:\n%s", line, unit)
		}
	}
	if got := read(rootlessProfilePath); !strings.Contains(got, `if [ "$(id -u)" = "1000" ]; then`+"\n\texport DOCKER_HOST=unix:///run/user/1000/docker.sock\n") {
		t.Errorf("profile.d file:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(env.Root, lingerDir, "ec2-user")); err != nil {
		t.Errorf("linger flag: %v", err)
	}
	// Root writes nothing in the user's home.
	if entries, _ := os.ReadDir(filepath.Join(env.Root, "home/ec2-user")); len(entries) != 0 {
		t.Errorf("Apply wrote in the user's home: %v", entries)
	}

	// A second Apply changes nothing: no command, the same inode.
	before, _ := os.Stat(filepath.Join(env.Root, "etc/subuid"))
	n := len(fake.Calls())
	if err := (RootlessDocker{}).Apply(ctx, env); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(filepath.Join(env.Root, "etc/subuid"))
	if len(fake.Calls()) != n {
		t.Errorf("second Apply ran %v", fake.Calls()[n:])
	}
	if before.Sys().(*syscall.Stat_t).Ino != after.Sys().(*syscall.Stat_t).Ino {
		t.Error("second Apply rewrote /etc/subuid")
	}
}

func TestRootlessDockerLiveStartsTheUsersDaemon(t *testing.T) {
	env, fake := rootlessEnforcedEnv(t, debianRootless...)
	fake.On("systemctl --global enable docker.service", func(runner.Cmd) (runner.Result, error) {
		if err := os.MkdirAll(filepath.Join(env.Root, filepath.Dir(rootlessWantsPath)), 0o755); err != nil {
			t.Error(err)
		}
		return runner.Result{}, os.Symlink("/"+rootlessUnitPath, filepath.Join(env.Root, rootlessWantsPath))
	})
	active := false
	fake.On("systemctl --user --machine=ec2-user@.host is-active docker.service", func(c runner.Cmd) (runner.Result, error) {
		if active {
			return runner.Result{Stdout: []byte("active\n")}, nil
		}
		return runner.Result{Stdout: []byte("inactive\n"), ExitCode: 3}, &runner.ExitError{Cmd: c.String(), Code: 3}
	})
	fake.On("loginctl enable-linger ec2-user", func(runner.Cmd) (runner.Result, error) {
		writeTestFile(t, env.Root, "var/lib/systemd/linger/ec2-user", "", 0o644)
		return runner.Result{}, nil
	})
	fake.OnOutput("systemctl start user@1000.service", "")
	fake.OnOutput("systemctl --user --machine=ec2-user@.host daemon-reload", "")
	fake.On("systemctl --user --machine=ec2-user@.host start docker.service", func(runner.Cmd) (runner.Result, error) {
		active = true
		return runner.Result{}, nil
	})
	h := host{live: true, proc: "/proc"}
	ctx := context.Background()
	d, err := RootlessDocker{}.check(ctx, env, h)
	if err != nil {
		t.Fatal(err)
	}
	if last := d.Changes[len(d.Changes)-1]; last != "start ec2-user's rootless docker.service" {
		t.Errorf("live Check's last change = %q", last)
	}
	if err := (RootlessDocker{}).apply(ctx, env, h); err != nil {
		t.Fatal(err)
	}
	if d, err := (RootlessDocker{}).check(ctx, env, h); err != nil || !d.InSync() {
		t.Fatalf("Check after Apply: %v %v", d.Changes, err)
	}
	if got := strings.Join(fake.Calls(), "\n"); !strings.Contains(got, "loginctl enable-linger ec2-user\nsystemctl start user@1000.service\nsystemctl --user --machine=ec2-user@.host daemon-reload\nsystemctl --user --machine=ec2-user@.host start docker.service") {
		t.Errorf("commands:\n%s", got)
	}
}

func TestRootlessDockerWithoutToolsWithholdsDocker(t *testing.T) {
	// docker.io alone: no rootlesskit, slirp4netns or uidmap, no podman.
	env, fake := rootlessEnforcedEnv(t, "usr/share/docker.io/contrib/dockerd-rootless.sh", "usr/sbin/dockerd")
	ctx := context.Background()
	d, err := RootlessDocker{}.Check(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	if !d.InSync() {
		t.Fatalf("the install must not fail for it: %v", d.Changes)
	}
	want := "enforced: docker is not given to ec2-user: no rootless Docker (missing rootlesskit, slirp4netns, newuidmap, newgidmap) and no usable Podman here; on Debian install rootlesskit slirp4netns uidmap dbus-user-session, then run `ccboot repair`"
	if len(d.Notes) != 1 || d.Notes[0] != want {
		t.Errorf("notes = %q\nwant %q", d.Notes, want)
	}
	if err := (RootlessDocker{}).Apply(ctx, env); err != nil {
		t.Fatal(err)
	}
	if len(fake.Calls()) != 0 {
		t.Errorf("Apply ran %v", fake.Calls())
	}
	if _, err := os.Lstat(filepath.Join(env.Root, "etc/subuid")); !os.IsNotExist(err) {
		t.Error("Apply wrote /etc/subuid with nothing to use it")
	}
}

func TestRootlessDockerPodmanNeedsOnlySubIDs(t *testing.T) {
	env, fake := rootlessEnforcedEnv(t, "usr/bin/podman", "usr/bin/newuidmap", "usr/bin/newgidmap")
	ctx := context.Background()
	if err := (RootlessDocker{}).Apply(ctx, env); err != nil {
		t.Fatal(err)
	}
	d, err := RootlessDocker{}.Check(ctx, env)
	if err != nil || !d.InSync() {
		t.Fatalf("Check after Apply: %v %v", d.Changes, err)
	}
	if len(d.Notes) != 1 || !strings.Contains(d.Notes[0], "rootless Podman") {
		t.Errorf("notes = %q", d.Notes)
	}
	if len(fake.Calls()) != 0 {
		t.Errorf("Apply ran %v", fake.Calls())
	}
	if _, err := os.Lstat(filepath.Join(env.Root, rootlessUnitPath)); !os.IsNotExist(err) {
		t.Error("a dockerd unit for Podman")
	}
}

// TestSubIDRanges: a new range never overlaps another user's (overlapping
// ranges would let this user's containers own that user's files), an
// existing big-enough range by name or uid is kept, and other lines stay.
func TestSubIDRanges(t *testing.T) {
	u := sysuser.User{Name: "ec2-user", UID: 1000}
	for _, tc := range []struct {
		name, in, out string
	}{
		{"empty", "", "ec2-user:100000:65536\n"},
		{"after others", "a:100000:65536\nb:165536:65536\n", "a:100000:65536\nb:165536:65536\nec2-user:231072:65536\n"},
		{"odd range in the way", "a:150000:10\n", "a:150000:10\nec2-user:165536:65536\n"},
		{"gap is used", "a:165536:65536\n", "a:165536:65536\nec2-user:100000:65536\n"},
		{"huge range", "a:100000:1000000\n", "a:100000:1000000\nec2-user:1148576:65536\n"},
		{"too small: a new one", "ec2-user:100000:1000\n", "ec2-user:100000:1000\nec2-user:165536:65536\n"},
		{"kept by name", "ec2-user:300000:65536\n", "ec2-user:300000:65536\n"},
		{"kept by uid", "1000:300000:65536\n", "1000:300000:65536\n"},
		{"no final newline, junk kept", "# comment\nbad:line\na:100000:65536", "# comment\nbad:line\na:100000:65536\nec2-user:165536:65536\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, _ := newTestEnv(t)
			writeTestFile(t, env.Root, "etc/subuid", tc.in, 0o644)
			f, err := readSubIDs(env.Sys, "etc/subuid")
			if err != nil {
				t.Fatal(err)
			}
			if err := addSubIDs(env.Sys, "etc/subuid", f, u); err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(filepath.Join(env.Root, "etc/subuid"))
			if string(data) != tc.out {
				t.Errorf("got %q, want %q", data, tc.out)
			}
		})
	}
}

// TestSubIDFileIsNotFollowed: a link at /etc/subuid is refused, not
// written through.
func TestSubIDFileIsNotFollowed(t *testing.T) {
	env, _ := rootlessEnforcedEnv(t, "usr/bin/podman", "usr/bin/newuidmap", "usr/bin/newgidmap")
	outside := filepath.Join(t.TempDir(), "target")
	writeTestFile(t, filepath.Dir(outside), "target", "x:1:1\n", 0o644)
	if err := os.Symlink(outside, filepath.Join(env.Root, "etc/subuid")); err != nil {
		t.Fatal(err)
	}
	if err := (RootlessDocker{}).Apply(context.Background(), env); err == nil {
		t.Error("Apply wrote through a symbolic link at /etc/subuid")
	}
	if data, _ := os.ReadFile(outside); string(data) != "x:1:1\n" {
		t.Errorf("link target changed: %q", data)
	}
}

// TestRootDockerSocketUnreachable: the second line of proof that the
// user cannot drive the root daemon, on a real unix socket.
func TestRootDockerSocketUnreachable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mode    os.FileMode // 0: no socket
		gid     int
		members string // of group docker (gid 990)
		want    string // "" in sync, else a substring of the one change
	}{
		{"root:docker 0660, user not a member", 0o660, 990, "", ""},
		{"root:root 0660", 0o660, 0, "", ""},
		{"root:docker 0600, user a member", 0o600, 990, "ec2-user", "run `gpasswd -d ec2-user docker`"},
		{"root:docker 0660, user a member", 0o660, 990, "ec2-user", "run `gpasswd -d ec2-user docker`"},
		{"no socket, user a member", 0, 990, "ec2-user", "run `gpasswd -d ec2-user docker`"},
		{"world-writable", 0o666, 990, "", "is mode 0666, so every user drives the root daemon"},
		{"user's own group", 0o660, 1000, "", "ec2-user's own group"},
		{"user's own group, no group bits", 0o600, 1000, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, _ := rootlessEnforcedEnv(t, "usr/bin/podman", "usr/bin/newuidmap", "usr/bin/newgidmap")
			writeTestFile(t, env.Root, "etc/group", "root:x:0:\nec2-user:x:1000:\ndocker:x:990:"+tc.members+"\n", 0o644)
			// Subordinate ids in place: the socket is the only possible change.
			writeTestFile(t, env.Root, "etc/subuid", "ec2-user:100000:65536\n", 0o644)
			writeTestFile(t, env.Root, "etc/subgid", "ec2-user:100000:65536\n", 0o644)
			sock := filepath.Join(env.Root, rootDockerSocket)
			if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
				t.Fatal(err)
			}
			if tc.mode != 0 {
				l, err := net.Listen("unix", sock)
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				if err := os.Chown(sock, 0, tc.gid); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(sock, tc.mode); err != nil {
					t.Fatal(err)
				}
			}
			ctx := context.Background()
			d, err := RootlessDocker{}.Check(ctx, env)
			if err != nil {
				t.Fatal(err)
			}
			applyErr := RootlessDocker{}.Apply(ctx, env)
			if tc.want == "" {
				if len(d.Changes) != 0 || applyErr != nil {
					t.Errorf("changes %v, Apply: %v; want none", d.Changes, applyErr)
				}
				return
			}
			if len(d.Changes) == 0 || !strings.Contains(d.Changes[0], tc.want) {
				t.Errorf("changes %v, want one with %q", d.Changes, tc.want)
			}
			if applyErr == nil || strings.Contains(applyErr.Error(), "\n") {
				t.Errorf("Apply = %v, want a one-line error", applyErr)
			}
		})
	}
}

func TestRootlessAptPackagesInEnforcedMode(t *testing.T) {
	env, _ := newTestEnv(t)
	env.Config.TierMode = bootstrap.TierEnforced
	env.Config.Packages = []string{"docker"}
	pl, err := planApt(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(pl.install, " "); got != "docker.io rootlesskit slirp4netns uidmap dbus-user-session nftables" {
		t.Errorf("enforced apt plan = %q", got)
	}
	env.Config.TierMode = bootstrap.TierAdvisory
	if pl, _ = planApt(context.Background(), env); strings.Join(pl.install, " ") != "docker.io" {
		t.Errorf("advisory apt plan = %q", pl.install)
	}
}
