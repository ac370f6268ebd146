package steps

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/runner"
	"github.com/ccboot/ccboot/bootstrap/sysuser"
)

// fakeSystem plays systemctl, groupadd and usermod against a test root:
// systemctl keeps unit state in memory, the others edit <root>/etc/group
// the way the real tools do, so Check after Apply reads real changes.
type fakeSystem struct {
	mu              sync.Mutex
	root            string
	enabled, active bool
}

func (s *fakeSystem) install(t *testing.T, fake *runner.Fake) {
	fake.On("systemctl ", func(c runner.Cmd) (runner.Result, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		args := slices.DeleteFunc(slices.Clone(c.Args), func(a string) bool { return strings.HasPrefix(a, "--root=") })
		state := func(ok bool, yes, no string, code int) (runner.Result, error) {
			if ok {
				return runner.Result{Stdout: []byte(yes + "\n")}, nil
			}
			return runner.Result{Stdout: []byte(no + "\n"), ExitCode: code}, &runner.ExitError{Cmd: c.String(), Code: code}
		}
		switch args[0] {
		case "is-enabled":
			return state(s.enabled, "enabled", "disabled", 1)
		case "is-active":
			return state(s.active, "active", "inactive", 3)
		case "enable":
			s.enabled = true
		case "start":
			s.active = true
		}
		return runner.Result{}, nil
	})
	fake.On("groupadd ", func(runner.Cmd) (runner.Result, error) {
		appendFile(t, filepath.Join(s.root, "etc/group"), "docker:x:990:\n")
		return runner.Result{}, nil
	})
	fake.On("usermod -aG docker ", func(c runner.Cmd) (runner.Result, error) {
		user := c.Args[len(c.Args)-1]
		p := filepath.Join(s.root, "etc/group")
		data, err := os.ReadFile(p)
		if err != nil {
			t.Error(err)
		}
		out := strings.Replace(string(data), "docker:x:990:\n", "docker:x:990:"+user+"\n", 1)
		if err := os.WriteFile(p, []byte(out), 0o644); err != nil {
			t.Error(err)
		}
		return runner.Result{}, nil
	})
}

func appendFile(t *testing.T, p, s string) {
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Error(err)
	}
}

func dockerEnv(t *testing.T) (*bootstrap.Env, *runner.Fake) {
	t.Helper()
	env, fake := newTestEnv(t)
	writeTestFile(t, env.Root, "usr/lib/systemd/system/docker.service", "[Service]\nExecStart=/usr/bin/dockerd\n[Install]\nWantedBy=multi-user.target\n", 0o644)
	return env, fake
}

func TestDockerGroupCheckFreshRoot(t *testing.T) {
	t.Parallel()
	env, fake := newTestEnv(t) // no docker package yet
	d, err := DockerGroup{}.Check(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"docker.service is not installed (the packages step installs docker)",
		"create group docker",
		"add ec2-user to group docker",
	}
	if !slices.Equal(d.Changes, want) {
		t.Fatalf("changes %q, want %q", d.Changes, want)
	}
	if len(d.Notes) != 1 || !strings.Contains(d.Notes[0], "log in again") || !strings.Contains(d.Notes[0], "newgrp docker") {
		t.Fatalf("notes %q, want the log-in-again note", d.Notes)
	}
	if calls := fake.Calls(); len(calls) != 0 {
		t.Fatalf("Check without a docker unit ran %q", calls)
	}
}

func TestDockerGroupApplyWithoutDocker(t *testing.T) {
	t.Parallel()
	env, fake := newTestEnv(t)
	err := DockerGroup{}.Apply(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "docker is not installed") || !strings.Contains(err.Error(), "packages step") {
		t.Fatalf("err = %v, want 'docker is not installed' pointing at the packages step", err)
	}
	if calls := fake.Calls(); len(calls) != 0 {
		t.Fatalf("ran %q before finding docker missing", calls)
	}
}

func TestDockerGroupApplyRootMode(t *testing.T) {
	t.Parallel()
	for _, unitDir := range []string{"usr/lib/systemd/system", "lib/systemd/system", "etc/systemd/system"} {
		t.Run(unitDir, func(t *testing.T) {
			t.Parallel()
			env, fake := newTestEnv(t)
			writeTestFile(t, env.Root, unitDir+"/docker.service", "[Install]\nWantedBy=multi-user.target\n", 0o644)
			sys := &fakeSystem{root: env.Root}
			sys.install(t, fake)
			ctx := context.Background()
			d, err := DockerGroup{}.Check(ctx, env)
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{"create group docker", "add ec2-user to group docker", "enable docker.service"}; !slices.Equal(d.Changes, want) {
				t.Fatalf("changes %q, want %q (no start under --root)", d.Changes, want)
			}
			before := len(fake.Calls())
			if err := (DockerGroup{}).Apply(ctx, env); err != nil {
				t.Fatal(err)
			}
			r := env.Root
			want := []string{
				"systemctl --root=" + r + " is-enabled docker.service",
				"groupadd --system --root " + r + " docker",
				"usermod -aG docker --root " + r + " ec2-user",
				"systemctl --root=" + r + " enable docker.service",
			}
			if got := fake.Calls()[before:]; !slices.Equal(got, want) {
				t.Fatalf("calls\n%q\nwant\n%q", got, want)
			}
			d, err = DockerGroup{}.Check(ctx, env)
			if err != nil || !d.InSync() {
				t.Fatalf("after Apply: %v, %q", err, d.Changes)
			}
			if len(d.Notes) != 0 {
				t.Fatalf("root mode has no sessions to warn about, got notes %q", d.Notes)
			}
		})
	}
}

func TestDockerGroupAlreadyMember(t *testing.T) {
	t.Parallel()
	for name, group := range map[string]string{
		"listed":        "root:x:0:\nec2-user:x:1000:\ndocker:x:990:alice,ec2-user\n",
		"primary group": "root:x:0:\ndocker:x:1000:\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env, fake := dockerEnv(t)
			writeTestFile(t, env.Root, "etc/group", group, 0o644)
			sys := &fakeSystem{root: env.Root, enabled: true}
			sys.install(t, fake)
			d, err := DockerGroup{}.Check(context.Background(), env)
			if err != nil || !d.InSync() {
				t.Fatalf("check: %v, %q; want in sync", err, d.Changes)
			}
			if err := (DockerGroup{}).Apply(context.Background(), env); err != nil {
				t.Fatal(err)
			}
			if n := fake.CallsWithPrefix("groupadd") + fake.CallsWithPrefix("usermod") + fake.CallsWithPrefix("systemctl --root="+env.Root+" enable"); n != 0 {
				t.Fatalf("in-sync Apply changed things: %q", fake.Calls())
			}
		})
	}
}

func TestDockerGroupExistingGroupOnlyAddsMember(t *testing.T) {
	t.Parallel()
	env, fake := dockerEnv(t)
	writeTestFile(t, env.Root, "etc/group", "root:x:0:\nec2-user:x:1000:\ndocker:x:990:\n", 0o644)
	sys := &fakeSystem{root: env.Root, enabled: true}
	sys.install(t, fake)
	if err := (DockerGroup{}).Apply(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if fake.CallsWithPrefix("groupadd") != 0 || fake.CallsWithPrefix("usermod") != 1 {
		t.Fatalf("calls %q: want usermod only", fake.Calls())
	}
	g, ok, err := sysuser.LookupGroup(env.Sys, "docker")
	if err != nil || !ok || !g.HasMember("ec2-user") {
		t.Fatalf("group after Apply: %+v %v %v", g, ok, err)
	}
}

// TestDockerGroupLive drives the live path with a fake: the service is
// started, and sessions started before the membership are reported.
func TestDockerGroupLive(t *testing.T) {
	t.Parallel()
	env, fake := dockerEnv(t)
	sys := &fakeSystem{root: env.Root}
	sys.install(t, fake)
	h := host{live: true, proc: "testdata/dockergroup/proc"}
	ctx := context.Background()
	d, err := DockerGroup{}.check(ctx, env, h)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"create group docker", "add ec2-user to group docker", "enable docker.service", "start docker.service"}; !slices.Equal(d.Changes, want) {
		t.Fatalf("changes %q, want %q", d.Changes, want)
	}
	if err := (DockerGroup{}).apply(ctx, env, h); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"groupadd --system docker", "usermod -aG docker ec2-user", "systemctl enable docker.service", "systemctl start docker.service"} {
		if !slices.Contains(fake.Calls(), want) {
			t.Errorf("live Apply did not run %q; ran %q", want, fake.Calls())
		}
	}
	d, err = DockerGroup{}.check(ctx, env, h)
	if err != nil || !d.InSync() {
		t.Fatalf("after Apply: %v, %q", err, d.Changes)
	}
	// Fixture: pid 101 is ec2-user without gid 990, 102 has it, 103 is root.
	if len(d.Notes) != 1 || !strings.HasPrefix(d.Notes[0], "1 running processes of ec2-user") {
		t.Fatalf("notes %q, want one stale session reported", d.Notes)
	}
}

func TestParseProcStatus(t *testing.T) {
	t.Parallel()
	uid, gids, ok := parseProcStatus([]byte("Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t50\t50\t50\t50\nGroups:\t4 990 \n"))
	if !ok || uid != 1000 || !slices.Equal(gids, []int{50, 4, 990}) {
		t.Fatalf("got %d %v %v", uid, gids, ok)
	}
	if _, _, ok := parseProcStatus([]byte("Name:\tx\n")); ok {
		t.Fatal("status without Uid accepted")
	}
}

// TestDockerGroupRealTools runs the real groupadd, usermod and systemctl
// against a temp root, as an image bake would.
func TestDockerGroupRealTools(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"groupadd", "usermod", "systemctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed; the fake-runner tests cover the commands", tool)
		}
	}
	env, _ := dockerEnv(t)
	env.Run = &runner.Exec{}
	ctx := context.Background()
	if err := (DockerGroup{}).Apply(ctx, env); err != nil {
		t.Fatal(err)
	}
	g, ok, err := sysuser.LookupGroup(env.Sys, "docker")
	if err != nil || !ok || !g.HasMember("ec2-user") {
		t.Fatalf("group after Apply: %+v %v %v", g, ok, err)
	}
	if _, err := os.Readlink(filepath.Join(env.Root, "etc/systemd/system/multi-user.target.wants/docker.service")); err != nil {
		t.Fatalf("docker.service not enabled in the root: %v", err)
	}
	d, err := DockerGroup{}.Check(ctx, env)
	if err != nil || !d.InSync() {
		t.Fatalf("after real Apply: %v, %q", err, d.Changes)
	}
}

// A groupadd or usermod killed between /etc/group and /etc/gshadow leaves
// the two disagreeing. Check sees it, and Apply repairs it with the real
// tools (grpconv, usermod), so a rerun after a crash converges.
func TestDockerGroupRepairsGshadowLeftBehind(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"grpconv", "usermod", "systemctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	for name, gshadow := range map[string]string{
		"groupadd killed: no entry": "root:*::\nec2-user:!::\n",
		"usermod killed: no member": "root:*::\nec2-user:!::\ndocker:!::\n",
	} {
		t.Run(name, func(t *testing.T) {
			env, _ := dockerEnv(t)
			env.Run = &runner.Exec{}
			ctx := context.Background()
			appendFile(t, filepath.Join(env.Root, "etc/group"), "docker:x:990:ec2-user\n")
			writeTestFile(t, env.Root, "etc/gshadow", gshadow, 0o640)
			d, err := DockerGroup{}.Check(ctx, env)
			if err != nil || !slices.ContainsFunc(d.Changes, func(c string) bool { return strings.Contains(c, "/etc/gshadow") }) {
				t.Fatalf("Check with /etc/gshadow behind /etc/group: %v, %q; want a change naming /etc/gshadow", err, d.Changes)
			}
			if err := (DockerGroup{}).Apply(ctx, env); err != nil {
				t.Fatal(err)
			}
			sg, err := sysuser.LookupShadowGroup(env.Sys, "docker")
			if err != nil || !sg.Found || !slices.Contains(sg.Members, "ec2-user") {
				t.Fatalf("/etc/gshadow after Apply: %+v %v", sg, err)
			}
			if d, err := (DockerGroup{}).Check(ctx, env); err != nil || !d.InSync() {
				t.Fatalf("after Apply: %v, %q", err, d.Changes)
			}
		})
	}
}
