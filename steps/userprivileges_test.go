package steps

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/runner"
)

// In enforced mode docker-group still creates the group and enables the
// daemon, but never adds the user (group docker grants root), and says so.
func TestDockerGroupEnforcedDoesNotAddTheUser(t *testing.T) {
	t.Parallel()
	env, fake := dockerEnv(t)
	env.Config.TierMode = bootstrap.TierEnforced
	sys := &fakeSystem{root: env.Root}
	sys.install(t, fake)
	ctx := context.Background()
	d, err := DockerGroup{}.Check(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"create group docker", "enable docker.service"}; !slices.Equal(d.Changes, want) {
		t.Fatalf("changes %q, want %q", d.Changes, want)
	}
	if len(d.Notes) != 1 || !strings.Contains(d.Notes[0], "enforced tiers: ec2-user is not added to group docker, which grants root") {
		t.Fatalf("notes %q", d.Notes)
	}
	if err := (DockerGroup{}).Apply(ctx, env); err != nil {
		t.Fatal(err)
	}
	if n := fake.CallsWithPrefix("usermod"); n != 0 {
		t.Fatalf("enforced mode ran usermod: %q", fake.Calls())
	}
	if d, err := (DockerGroup{}).Check(ctx, env); err != nil || !d.InSync() {
		t.Fatalf("after Apply: %v %q", err, d.Changes)
	}
}

// privEnv is an enforced env whose user is in docker and wheel and has
// cloud-init's sudo rule, with fakes for gpasswd (editing etc/group),
// sysctl (writing the fake /proc) and sudo -l (answering sudoOut); visudo
// is the real one when installed, so what is written has really parsed.
func privEnv(t *testing.T) (*bootstrap.Env, *runner.Fake, host, *string) {
	t.Helper()
	env, fake := newTestEnv(t)
	env.Config.TierMode = bootstrap.TierEnforced
	writeTestFile(t, env.Root, "etc/group", "root:x:0:\nwheel:x:10:ec2-user\ndocker:x:990:admin1,ec2-user\nec2-user:x:1000:\n", 0o644)
	writeTestFile(t, env.Root, cloudInitSudoers, cloudInitSudoersContent, 0o440)
	proc := t.TempDir()
	writeTestFile(t, proc, "sys/kernel/yama/ptrace_scope", "0\n", 0o644)
	sudoOut := "User ec2-user is not allowed to run sudo on vm.\n"
	fake.On("gpasswd ", func(c runner.Cmd) (runner.Result, error) {
		user, group := c.Args[len(c.Args)-2], c.Args[len(c.Args)-1]
		p := filepath.Join(env.Root, "etc/group")
		data, _ := os.ReadFile(p)
		var out []string
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, group+":") {
				f := strings.Split(line, ":")
				f[3] = strings.Join(slices.DeleteFunc(strings.Split(f[3], ","), func(m string) bool { return m == user }), ",")
				line = strings.Join(f, ":")
			}
			out = append(out, line)
		}
		return runner.Result{}, os.WriteFile(p, []byte(strings.Join(out, "\n")), 0o644)
	})
	fake.On("sysctl -q -w kernel.yama.ptrace_scope=1", func(runner.Cmd) (runner.Result, error) {
		return runner.Result{}, os.WriteFile(filepath.Join(proc, "sys/kernel/yama/ptrace_scope"), []byte("1\n"), 0o644)
	})
	fake.On("sudo -l -U ec2-user", func(runner.Cmd) (runner.Result, error) { return runner.Result{Stdout: []byte(sudoOut)}, nil })
	if _, err := exec.LookPath("visudo"); err == nil {
		real := &runner.Exec{}
		fake.On("visudo ", func(c runner.Cmd) (runner.Result, error) { return real.Run(context.Background(), c) })
	} else {
		fake.OnOutput("visudo ", "")
	}
	return env, fake, host{live: true, proc: proc}, &sudoOut
}

// What cloud-init writes for its default user, plus an admin's own rule.
const cloudInitSudoersContent = "# Created by cloud-init v. 22.2.2 on Tue, 01 Dec 2026 09:00:00 +0000\n\n# User rules for ec2-user\nec2-user ALL=(ALL) NOPASSWD:ALL\n\n# User rules for admin1\nadmin1 ALL=(ALL) ALL\n"

// Enforced: the user leaves every root-granting group, loses cloud-init's
// sudo rule (the admin's stays), ptrace_scope goes to 1 now and at every
// boot, and sudo -l then proves no rule is left.
func TestUserPrivilegesEnforcedTakesRootAway(t *testing.T) {
	t.Parallel()
	env, fake, h, _ := privEnv(t)
	ctx := context.Background()
	d, err := UserPrivileges{}.check(ctx, env, h)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"remove ec2-user from group docker (it grants root)",
		"remove ec2-user from group wheel (it grants root)",
		"remove the sudo rule for ec2-user from " + env.Sys.Path(cloudInitSudoers),
		"create " + env.Sys.Path(ptraceSysctl),
		"set kernel.yama.ptrace_scope = 1 (is 0: any process of ec2-user can ptrace the others)",
	}
	if !slices.Equal(d.Changes, want) || !strings.Contains(d.Diff, "-ec2-user ALL=(ALL) NOPASSWD:ALL") {
		t.Fatalf("changes\n%q\nwant\n%q\n%s", d.Changes, want, d.Diff)
	}
	if n := fake.CallsWithPrefix("sudo"); n != 0 {
		t.Errorf("sudo -l ran with changes pending")
	}
	if err := (UserPrivileges{}).apply(ctx, env, h); err != nil {
		t.Fatal(err)
	}
	group, _ := os.ReadFile(env.Sys.Path("etc/group"))
	if !strings.Contains(string(group), "\nwheel:x:10:\ndocker:x:990:admin1\n") {
		t.Errorf("etc/group still lists ec2-user in a root group, or lost another member:\n%s", group)
	}
	sudoers, _ := os.ReadFile(env.Sys.Path(cloudInitSudoers))
	if strings.Contains(string(sudoers), "ec2-user") || !strings.Contains(string(sudoers), "admin1 ALL=(ALL) ALL") {
		t.Errorf("sudoers now:\n%s", sudoers)
	}
	if fi, _ := os.Stat(env.Sys.Path(cloudInitSudoers)); fi.Mode().Perm() != 0o440 {
		t.Errorf("sudoers mode %v", fi.Mode())
	}
	if ptrace, _ := os.ReadFile(env.Sys.Path(ptraceSysctl)); !strings.Contains(string(ptrace), "\nkernel.yama.ptrace_scope = 1\n") {
		t.Errorf("sysctl file:\n%s", ptrace)
	}
	if d, err := (UserPrivileges{}).check(ctx, env, h); err != nil || !d.InSync() {
		t.Fatalf("after Apply: %v %q", err, d.Changes)
	}
	if n := fake.CallsWithPrefix("sudo -l -U ec2-user"); n != 1 {
		t.Errorf("sudo -l ran %d times, want once (the in-sync Check proves it)", n)
	}
}

// A sudo rule ccboot did not write (here in /etc/sudoers) is not silently
// accepted: Check fails with the rule and the fix.
func TestUserPrivilegesOtherSudoRuleFailsWithTheFix(t *testing.T) {
	t.Parallel()
	env, _, h, sudoOut := privEnv(t)
	ctx := context.Background()
	if err := (UserPrivileges{}).apply(ctx, env, h); err != nil {
		t.Fatal(err)
	}
	*sudoOut = "Matching Defaults entries for ec2-user on vm:\n    env_reset\n\nUser ec2-user may run the following commands on vm:\n    (ALL) NOPASSWD: /usr/bin/apt-get\n"
	_, err := UserPrivileges{}.check(ctx, env, h)
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "still has sudo rules (sudo -l -U ec2-user lists (ALL) NOPASSWD: /usr/bin/apt-get)") || !strings.Contains(err.Error(), "visudo") {
		t.Errorf("error: %v", err)
	}
}

// A rewrite visudo refuses is never written.
func TestUserPrivilegesSudoersRefusedByVisudoIsLeftAlone(t *testing.T) {
	t.Parallel()
	env, fake := newTestEnv(t)
	env.Config.TierMode = bootstrap.TierEnforced
	writeTestFile(t, env.Root, cloudInitSudoers, cloudInitSudoersContent, 0o440)
	fake.OnExit("visudo ", 1, "stdin:3:1: syntax error")
	err := UserPrivileges{}.apply(context.Background(), env, host{})
	if err == nil || !strings.Contains(err.Error(), "does not parse, left as it is") {
		t.Fatalf("error: %v", err)
	}
	if got, _ := os.ReadFile(env.Sys.Path(cloudInitSudoers)); string(got) != cloudInitSudoersContent {
		t.Errorf("sudoers changed:\n%s", got)
	}
}

func TestUserPrivilegesPrimaryRootGroupIsAnError(t *testing.T) {
	t.Parallel()
	env, _ := newTestEnv(t)
	env.Config.TierMode = bootstrap.TierEnforced
	writeTestFile(t, env.Root, "etc/group", "root:x:0:\nwheel:x:1000:\n", 0o644)
	_, err := UserPrivileges{}.check(context.Background(), env, host{})
	if err == nil || !strings.Contains(err.Error(), "primary group of ec2-user is wheel") || !strings.Contains(err.Error(), "usermod -g") {
		t.Errorf("error: %v", err)
	}
}

func TestUserPrivilegesAdvisoryIsANoOp(t *testing.T) {
	t.Parallel()
	env, fake := newTestEnv(t)
	writeTestFile(t, env.Root, cloudInitSudoers, cloudInitSudoersContent, 0o440)
	assertAdvisoryNoOp(t, env, fake, UserPrivileges{})
}

func TestWithoutUserRules(t *testing.T) {
	t.Parallel()
	in := "ec2-user ALL=(ALL) NOPASSWD:ALL\nec2-user2 ALL=(ALL) ALL\n%ec2-user ALL=(ALL) ALL\n  ec2-user\tALL=(root) /bin/true\n# ec2-user comment\n"
	got, removed := withoutUserRules([]byte(in), "ec2-user")
	if want := "ec2-user2 ALL=(ALL) ALL\n%ec2-user ALL=(ALL) ALL\n# ec2-user comment\n"; !removed || string(got) != want {
		t.Errorf("got %q (removed %v), want %q", got, removed, want)
	}
	if got, removed := withoutUserRules([]byte("admin1 ALL=(ALL) ALL\n"), "ec2-user"); removed || string(got) != "admin1 ALL=(ALL) ALL\n" {
		t.Errorf("no rule: %q %v", got, removed)
	}
}

// Enforced mode for root itself would be a filter with nothing behind it.
func TestUserPrivilegesRootUserIsAnError(t *testing.T) {
	t.Parallel()
	env, _ := newTestEnv(t)
	env.Config.TierMode = bootstrap.TierEnforced
	env.Config.User = "root"
	_, err := UserPrivileges{}.check(context.Background(), env, host{})
	if err == nil || !strings.Contains(err.Error(), "uid 0") || !strings.Contains(err.Error(), "set [ccboot] user") {
		t.Errorf("error: %v", err)
	}
}
