package steps

// Real apt and dnf transactions are proven in booted guests by the e2e
// harness (packaging/e2e); here a fake runner stands in for them, and the
// dpkg status parser is checked against a real dpkg where one is available.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/runner"
)

const (
	osReleaseAL2023 = "NAME=\"Amazon Linux\"\nVERSION=\"2023\"\nID=\"amzn\"\nID_LIKE=\"fedora\"\nVERSION_ID=\"2023\"\n"
	// dpkgInstalled builds a status stanza for an installed package.
	aptListFile = "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages"
)

func dpkgStanza(name, version, status string, extra ...string) string {
	s := "Package: " + name + "\nStatus: " + status + "\nArchitecture: amd64\nVersion: " + version + "\n"
	for _, e := range extra {
		s += e + "\n"
	}
	return s + "\n"
}

func installedStatus(names ...string) string {
	var b strings.Builder
	for _, n := range names {
		b.WriteString(dpkgStanza(n, "1.0-1", "install ok installed"))
	}
	return b.String()
}

func TestParseDpkgStatusTestdata(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/packages/dpkg-status")
	if err != nil {
		t.Fatal(err)
	}
	db := parseDpkgStatus(data)
	for name, want := range map[string]bool{
		"git":               true,  // install ok installed
		"jq":                false, // deinstall ok config-files: removed, conffiles left
		"unzip":             false, // half-installed: apt must reinstall
		"nodejs":            true,
		"libc6":             true,  // multi-arch, two stanzas
		"docker-ce":         false, // unpacked, not configured
		"not-a-real-stanza": false, // text inside a Description continuation
		"node-types-node":   true,  // Provides of an installed package
		"nodejs-abi-108":    true,
		"npm":               false,
	} {
		if got := db.has(name); got != want {
			t.Errorf("has(%q) = %v, want %v", name, got, want)
		}
	}
	if v := db.pkgs["git"].Version; v != "1:2.39.5-0+deb12u2" {
		t.Errorf("git version = %q", v)
	}
}

func TestParseDpkgStatusStates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, status string
		want         bool
	}{
		{"installed", "install ok installed", true},
		{"installed, odd spacing", "install  ok   installed", true},
		{"hold installed", "hold ok installed", false},
		{"deinstall config-files", "deinstall ok config-files", false},
		{"purge not-installed", "purge ok not-installed", false},
		{"half-installed", "install ok half-installed", false},
		{"unpacked", "install ok unpacked", false},
		{"half-configured", "install ok half-configured", false},
		{"reinst-required", "install reinstreq half-installed", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := parseDpkgStatus([]byte(dpkgStanza("jq", "1.6-2.1", tt.status, "Provides: jq-virtual (= 1)")))
			if got := db.has("jq"); got != tt.want {
				t.Errorf("has(jq) with Status %q = %v, want %v", tt.status, got, tt.want)
			}
			if got := db.has("jq-virtual"); got != tt.want {
				t.Errorf("Provides of a package in state %q counted = %v, want %v", tt.status, got, tt.want)
			}
		})
	}
}

func TestDistroFamily(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, osRelease string
		want            string
		wantErr         []string
	}{
		{"debian", "ID=debian\nVERSION_ID=\"12\"\n", familyApt, nil},
		{"ubuntu", "ID=ubuntu\nID_LIKE=debian\n", familyApt, nil},
		{"mint via ID_LIKE", "ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n", familyApt, nil},
		{"al2023", osReleaseAL2023, familyDnf, nil},
		{"fedora", "ID=fedora\nVERSION_ID=41\n", familyDnf, nil},
		{"rocky", "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n", familyDnf, nil},
		{"oracle via ID_LIKE", "ID=\"ol\"\nID_LIKE=\"fedora\"\n", familyDnf, nil},
		{"comment and blank", "# hi\n\nID='almalinux'\n", familyDnf, nil},
		{"amazon linux 2", "ID=\"amzn\"\nID_LIKE=\"centos rhel fedora\"\nVERSION_ID=\"2\"\n", "", []string{"Amazon Linux 2", "yum", "[steps] skip = packages"}},
		{"unknown", "ID=arch\n", "", []string{`"arch"`, "[steps] skip = packages"}},
		{"unknown with like", "ID=gentoo\nID_LIKE=funtoo\n", "", []string{`"gentoo"`, "funtoo", "[steps] skip = packages"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseOSRelease([]byte(tt.osRelease)).family()
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("family() = %q, want an error", got)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("family() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestPackagesUnknownDistroCheckFails(t *testing.T) {
	t.Parallel()
	env, fake := newTestEnv(t)
	writeTestFile(t, env.Root, "etc/os-release", "ID=nixos\n", 0o644)
	_, err := Packages{}.Check(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), `"nixos"`) || !strings.Contains(err.Error(), "skip = packages") {
		t.Fatalf("Check error = %v, want one naming nixos and the skip setting", err)
	}
	if n := len(fake.Calls()); n != 0 {
		t.Errorf("ran %d commands on an unknown distro", n)
	}
}

func TestAptWantMapping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		seed    string
		install []string
	}{
		{"docker", []string{"docker.io"}},
		{"nodejs", []string{"nodejs"}},
		{"git", []string{"git"}},
		{"ripgrep", []string{"ripgrep"}},
	}
	for _, tt := range tests {
		_, install := aptWant(tt.seed)
		if !reflect.DeepEqual(install, tt.install) {
			t.Errorf("aptWant(%q) installs %v, want %v", tt.seed, install, tt.install)
		}
	}
}

// aptFake answers apt commands and records install argv and environment.
type aptFake struct {
	mu       sync.Mutex
	installs []runner.Cmd
}

func (a *aptFake) installed() []runner.Cmd {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.installs)
}

func newAptEnv(t *testing.T, status string, lists bool) (*bootstrap.Env, *runner.Fake, *aptFake) {
	t.Helper()
	env, fake := newTestEnv(t)
	writeTestFile(t, env.Root, "var/lib/dpkg/status", status, 0o644)
	if lists {
		writeTestFile(t, env.Root, aptListFile, "Package: jq\n", 0o644)
	} else if err := os.MkdirAll(filepath.Join(env.Root, "var/lib/apt/lists/partial"), 0o755); err != nil {
		t.Fatal(err)
	}
	return env, fake, &aptFake{}
}

func TestPackagesAptCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		status    string
		candidate string
		want      []string
		wantNotes []string
		wantCalls int
	}{
		{
			name:      "all installed: no process at all",
			status:    installedStatus("unzip", "git", "jq", "docker.io", "npm") + dpkgStanza("nodejs", "22.12.0-1nodesource1", "install ok installed"),
			want:      nil,
			wantCalls: 0,
		},
		{
			name:      "docker-ce counts as docker",
			status:    installedStatus("unzip", "git", "jq", "docker-ce", "npm") + dpkgStanza("nodejs", "22.12.0-1", "install ok installed"),
			want:      nil,
			wantCalls: 0,
		},
		{
			name:      "nodesource nodejs provides npm",
			status:    installedStatus("unzip", "git", "jq", "docker.io") + dpkgStanza("nodejs", "22.12.0-1nodesource1", "install ok installed", "Provides: nodejs-dev, nodejs-doc, npm (= 10.9.0)"),
			want:      nil,
			wantCalls: 0,
		},
		{
			name:      "old installed nodejs is a note, from dpkg status",
			status:    installedStatus("unzip", "git", "jq", "docker.io", "npm") + dpkgStanza("nodejs", "18.19.0+dfsg-6~deb12u2", "install ok installed"),
			want:      nil,
			wantNotes: []string{"Node.js 18.19.0+dfsg-6~deb12u2 (installed) is older than 22"},
			wantCalls: 0,
		},
		{
			name:      "missing ones only, mapped; candidate note",
			status:    installedStatus("unzip", "git") + dpkgStanza("jq", "1.6", "deinstall ok config-files"),
			candidate: "  Installed: (none)\n  Candidate: 18.19.0+dfsg-6~deb12u2\n",
			want:      []string{"install jq, nodejs, docker.io (apt)"},
			wantNotes: []string{"Node.js 18.19.0+dfsg-6~deb12u2 (apt candidate) is older than 22"},
			wantCalls: 1,
		},
		{
			name:      "new enough candidate: no note",
			status:    installedStatus("unzip", "git", "jq", "docker.io"),
			candidate: "  Installed: (none)\n  Candidate: 22.11.0-1\n",
			want:      []string{"install nodejs (apt)"},
			wantCalls: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, fake, _ := newAptEnv(t, tt.status, true)
			fake.OnOutput("chroot "+env.Root+" apt-cache -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= policy nodejs", "nodejs:\n"+tt.candidate)
			d, err := Packages{}.Check(context.Background(), env)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(d.Changes, tt.want) {
				t.Errorf("Changes = %q, want %q", d.Changes, tt.want)
			}
			if len(d.Notes) != len(tt.wantNotes) || !notesHavePrefixes(d.Notes, tt.wantNotes) {
				t.Errorf("Notes = %q, want prefixes %q", d.Notes, tt.wantNotes)
			}
			if n := len(fake.Calls()); n != tt.wantCalls {
				t.Errorf("Check ran %d commands (%q), want %d", n, fake.Calls(), tt.wantCalls)
			}
		})
	}
}

func notesHavePrefixes(notes, prefixes []string) bool {
	for i := range notes {
		if !strings.HasPrefix(notes[i], prefixes[i]) {
			return false
		}
	}
	return true
}

func (a *aptFake) handle(fake *runner.Fake, root string, results ...func(runner.Cmd) (runner.Result, error)) {
	var i int
	fake.On("chroot "+root+" apt-get install", func(c runner.Cmd) (runner.Result, error) {
		a.mu.Lock()
		a.installs = append(a.installs, c)
		n := i
		i++
		a.mu.Unlock()
		if n < len(results) {
			return results[n](c)
		}
		return runner.Result{}, nil
	})
	fake.OnOutput("chroot "+root+" apt-get update", "")
	fake.OnOutput("chroot "+root+" apt-cache -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= policy nodejs", "  Candidate: 22.11.0-1\n")
}

func aptFail(stderr string) func(runner.Cmd) (runner.Result, error) {
	return func(c runner.Cmd) (runner.Result, error) {
		return runner.Result{ExitCode: 100, Stderr: []byte(stderr)}, &runner.ExitError{Cmd: c.String(), Code: 100, Stderr: runner.Tail([]byte(stderr), 3)}
	}
}

func TestPackagesAptApplyOneTransaction(t *testing.T) {
	t.Parallel()
	env, fake, apt := newAptEnv(t, installedStatus("unzip", "git", "docker.io"), true)
	apt.handle(fake, env.Root)
	var progress []string
	var mu sync.Mutex
	env.Progress = func(s string) { mu.Lock(); progress = append(progress, s); mu.Unlock() }
	if err := (Packages{}).Apply(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	installs := apt.installed()
	if len(installs) != 1 {
		t.Fatalf("ran %d apt-get install commands, want exactly 1: %q", len(installs), fake.Calls())
	}
	c := installs[0]
	wantArgs := []string{env.Root, "apt-get", "install", "-y", "--no-install-recommends",
		"-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
		"-o", "DPkg::Lock::Timeout=300", "jq", "nodejs"}
	if c.Name != "chroot" || !reflect.DeepEqual(c.Args, wantArgs) {
		t.Errorf("install = %s %q\nwant chroot %q", c.Name, c.Args, wantArgs)
	}
	if !slices.Contains(c.Env, "DEBIAN_FRONTEND=noninteractive") {
		t.Errorf("install env = %q, want DEBIAN_FRONTEND=noninteractive", c.Env)
	}
	if n := fake.CallsWithPrefix("chroot " + env.Root + " apt-get update"); n != 0 {
		t.Errorf("apt-get update ran %d times with package lists present", n)
	}
	if !slices.Contains(progress, "installing jq, nodejs") {
		t.Errorf("progress = %q, want \"installing jq, nodejs\"", progress)
	}
}

func TestPackagesAptLockTimeoutFollowsConfig(t *testing.T) {
	t.Parallel()
	env, fake, apt := newAptEnv(t, installedStatus("unzip", "git", "docker.io", "nodejs", "npm"), true)
	env.Config.PackageLockTimeout = 90 * time.Second
	apt.handle(fake, env.Root)
	if err := (Packages{}).Apply(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	installs := apt.installed()
	if len(installs) != 1 || !slices.Contains(installs[0].Args, "DPkg::Lock::Timeout=90") {
		t.Fatalf("installs = %v, want one with DPkg::Lock::Timeout=90", installs)
	}
}

func TestPackagesAptApplyNothingMissing(t *testing.T) {
	t.Parallel()
	env, fake, apt := newAptEnv(t, installedStatus("unzip", "git", "jq", "docker.io", "nodejs", "npm"), false)
	apt.handle(fake, env.Root)
	if err := (Packages{}).Apply(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	// Installed nodejs' version comes from dpkg's status file: no process.
	if calls := fake.Calls(); len(calls) != 0 || len(apt.installed()) != 0 {
		t.Errorf("Apply with nothing missing ran %q", calls)
	}
}

func TestPackagesAptUpdateOnlyWhenListsMissing(t *testing.T) {
	t.Parallel()
	for _, lists := range []bool{false, true} {
		t.Run(map[bool]string{false: "no lists", true: "lists"}[lists], func(t *testing.T) {
			t.Parallel()
			env, fake, apt := newAptEnv(t, installedStatus("unzip", "git", "docker.io", "nodejs", "npm"), lists)
			apt.handle(fake, env.Root)
			if err := (Packages{}).Apply(context.Background(), env); err != nil {
				t.Fatal(err)
			}
			want := 0
			if !lists {
				want = 1
			}
			calls := fake.Calls()
			if n := fake.CallsWithPrefix("chroot " + env.Root + " apt-get update"); n != want {
				t.Errorf("apt-get update ran %d times, want %d: %q", n, want, calls)
			}
			if !lists {
				iu := slices.IndexFunc(calls, func(s string) bool { return strings.Contains(s, "apt-get update") })
				ii := slices.IndexFunc(calls, func(s string) bool { return strings.Contains(s, "apt-get install") })
				if iu > ii {
					t.Errorf("update after install: %q", calls)
				}
			}
		})
	}
}

func TestPackagesAptUnableToLocate(t *testing.T) {
	t.Parallel()
	t.Run("stale lists: update once, retry once, succeed", func(t *testing.T) {
		t.Parallel()
		env, fake, apt := newAptEnv(t, installedStatus("unzip", "git", "docker.io", "nodejs", "npm"), true)
		apt.handle(fake, env.Root, aptFail("Reading package lists...\nE: Unable to locate package jq\n"))
		if err := (Packages{}).Apply(context.Background(), env); err != nil {
			t.Fatal(err)
		}
		if n, u := len(apt.installed()), fake.CallsWithPrefix("chroot "+env.Root+" apt-get update"); n != 2 || u != 1 {
			t.Errorf("installs = %d, updates = %d; want 2 and 1: %q", n, u, fake.Calls())
		}
	})
	t.Run("really unknown: clear error naming it", func(t *testing.T) {
		t.Parallel()
		env, fake, apt := newAptEnv(t, installedStatus("unzip", "git", "docker.io", "nodejs", "npm"), true)
		env.Config.Packages = []string{"git", "jq", "no-such-pkg"}
		fail := aptFail("E: Unable to locate package no-such-pkg\n")
		apt.handle(fake, env.Root, fail, fail, fail)
		err := (Packages{}).Apply(context.Background(), env)
		if err == nil || !strings.Contains(err.Error(), "apt has no package no-such-pkg") || !strings.Contains(err.Error(), "[packages] install") {
			t.Fatalf("err = %v, want one naming no-such-pkg and [packages] install", err)
		}
		if n := len(apt.installed()); n != 2 {
			t.Errorf("install attempts = %d, want 2 (one retry after update)", n)
		}
	})
	t.Run("no installation candidate", func(t *testing.T) {
		t.Parallel()
		env, fake, apt := newAptEnv(t, installedStatus("unzip", "git", "jq", "nodejs", "npm"), false)
		fail := aptFail("E: Package 'docker.io' has no installation candidate\n")
		apt.handle(fake, env.Root, fail, fail)
		err := (Packages{}).Apply(context.Background(), env)
		if err == nil || !strings.Contains(err.Error(), "no package docker.io") {
			t.Fatalf("err = %v, want one naming docker.io", err)
		}
		// Lists were refreshed up front, so no second update and no retry.
		if n, u := len(apt.installed()), fake.CallsWithPrefix("chroot "+env.Root+" apt-get update"); n != 1 || u != 1 {
			t.Errorf("installs = %d, updates = %d; want 1 and 1", n, u)
		}
	})
	t.Run("lock still held", func(t *testing.T) {
		t.Parallel()
		env, fake, apt := newAptEnv(t, installedStatus("unzip", "git", "jq", "nodejs", "npm"), true)
		apt.handle(fake, env.Root, aptFail("E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (unattended-upgr)\n"))
		err := (Packages{}).Apply(context.Background(), env)
		if err == nil || !strings.Contains(err.Error(), "process 4242") || !strings.Contains(err.Error(), "lock_timeout") {
			t.Fatalf("err = %v, want the lock holder and lock_timeout", err)
		}
	})
}

// dnfFake answers the rpm query from a set of installed packages, the
// repoquery from a set of available ones, and records installs.
type dnfFake struct {
	mu        sync.Mutex
	installed map[string]string // name -> version
	available []string
	installs  []runner.Cmd
	lockFails int // installs that fail on the lock first
}

func (d *dnfFake) register(fake *runner.Fake) {
	fake.On("rpm -q --whatprovides", func(c runner.Cmd) (runner.Result, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		var out strings.Builder
		missing := false
		caps := c.Args[slices.Index(c.Args, "--root")+2:]
		for _, a := range caps {
			if v, ok := d.installed[a]; ok {
				out.WriteString(a + " " + v + "\n")
			} else {
				out.WriteString("no package provides " + a + "\n")
				missing = true
			}
		}
		if missing {
			return runner.Result{Stdout: []byte(out.String()), ExitCode: 2}, &runner.ExitError{Cmd: c.String(), Code: 2}
		}
		return runner.Result{Stdout: []byte(out.String())}, nil
	})
	fake.On("dnf --installroot", func(c runner.Cmd) (runner.Result, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		switch {
		case slices.Contains(c.Args, "repoquery"):
			var out strings.Builder
			for _, a := range c.Args {
				if slices.Contains(d.available, a) {
					out.WriteString(a + "\n")
				}
			}
			return runner.Result{Stdout: []byte(out.String())}, nil
		case slices.Contains(c.Args, "install"):
			d.installs = append(d.installs, c)
			if len(d.installs) <= d.lockFails {
				msg := "RPMDB already locked by 4242\nThe application with PID 4242 is: /usr/bin/python3 /usr/bin/dnf makecache\n"
				return runner.Result{ExitCode: 200, Stderr: []byte(msg)}, &runner.ExitError{Cmd: c.String(), Code: 200, Stderr: msg}
			}
			return runner.Result{}, nil
		}
		return runner.Result{ExitCode: 1}, &runner.ExitError{Cmd: c.String(), Code: 1}
	})
	fake.OnOutput("chroot", "")
}

func (d *dnfFake) installCmds() []runner.Cmd {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.installs)
}

func newDnfEnv(t *testing.T, d *dnfFake, osRelease string) (*bootstrap.Env, *runner.Fake) {
	t.Helper()
	env, fake := newTestEnv(t)
	writeTestFile(t, env.Root, "etc/os-release", osRelease, 0o644)
	d.register(fake)
	return env, fake
}

func TestPackagesDnfAL2023PrefersNode22(t *testing.T) {
	t.Parallel()
	d := &dnfFake{
		installed: map[string]string{"git": "2.47.1", "unzip": "6.0"},
		available: []string{"nodejs22", "nodejs22-npm", "jq", "docker"},
	}
	env, fake := newDnfEnv(t, d, osReleaseAL2023)
	drift, err := Packages{}.Check(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"install jq, nodejs22, docker (dnf)",
		"point node and npm at /usr/bin/node-22 (alternatives --set node /usr/bin/node-22)",
	}
	if !reflect.DeepEqual(drift.Changes, want) {
		t.Errorf("Changes = %q\nwant %q", drift.Changes, want)
	}
	rpm := fake.Calls()[0]
	if !strings.HasPrefix(rpm, "rpm -q --whatprovides --qf %{NAME} %{VERSION}\\n --root "+env.Root+" ") {
		t.Errorf("rpm query = %q, want --root %s", rpm, env.Root)
	}
	if n := fake.CallsWithPrefix("rpm "); n != 1 {
		t.Errorf("Check ran %d rpm queries, want 1", n)
	}

	if err := (Packages{}).Apply(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	installs := d.installCmds()
	if len(installs) != 1 {
		t.Fatalf("dnf install ran %d times, want 1", len(installs))
	}
	wantArgs := []string{"--installroot", env.Root, "install", "-y", "--setopt=install_weak_deps=False", "--setopt=exit_on_lock=True", "jq", "nodejs22", "docker"}
	if !reflect.DeepEqual(installs[0].Args, wantArgs) {
		t.Errorf("dnf args = %q\nwant %q", installs[0].Args, wantArgs)
	}
	if n := fake.CallsWithPrefix("chroot " + env.Root + " alternatives --set node /usr/bin/node-22"); n != 1 {
		t.Errorf("alternatives --set ran %d times: %q", n, fake.Calls())
	}
}

func TestPackagesDnfNode22InstalledIsInSync(t *testing.T) {
	t.Parallel()
	d := &dnfFake{installed: map[string]string{
		"unzip": "6.0", "git": "2.47.1", "jq": "1.7.1", "docker": "25.0.8",
		"nodejs22": "22.14.0", "nodejs22-npm": "10.9.2", "nodejs": "18.20.8", "npm": "10.8.2",
	}}
	env, fake := newDnfEnv(t, d, osReleaseAL2023)
	writeTestFile(t, env.Root, "usr/bin/node-22", "", 0o755)
	if err := os.Symlink("/etc/alternatives/node", filepath.Join(env.Root, "usr/bin/node")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/alternatives/npm", filepath.Join(env.Root, "usr/bin/npm")); err != nil {
		t.Fatal(err)
	}
	drift, err := Packages{}.Check(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if !drift.InSync() || len(drift.Notes) != 0 {
		t.Errorf("drift = %+v, want in sync without notes", drift)
	}
	if calls := fake.Calls(); len(calls) != 1 {
		t.Errorf("no-op Check ran %q, want only the rpm query", calls)
	}
}

func TestPackagesDnfNode22WithoutAlternatives(t *testing.T) {
	t.Parallel()
	d := &dnfFake{installed: map[string]string{
		"unzip": "6.0", "git": "2.47.1", "jq": "1.7.1", "docker": "25.0.8",
		"nodejs22": "22.14.0", "nodejs22-npm": "10.9.2",
	}}
	env, fake := newDnfEnv(t, d, osReleaseAL2023)
	drift, err := Packages{}.Check(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"point node and npm at /usr/bin/node-22 (alternatives --set node /usr/bin/node-22)"}
	if !reflect.DeepEqual(drift.Changes, want) {
		t.Errorf("Changes = %q, want %q", drift.Changes, want)
	}
	if err := (Packages{}).Apply(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if len(d.installCmds()) != 0 || fake.CallsWithPrefix("chroot "+env.Root+" alternatives --set node /usr/bin/node-22") != 1 {
		t.Errorf("Apply ran %q, want only alternatives --set", fake.Calls())
	}
}

func TestPackagesDnfNoNode22Fallback(t *testing.T) {
	t.Parallel()
	t.Run("nothing installed", func(t *testing.T) {
		t.Parallel()
		d := &dnfFake{installed: map[string]string{"unzip": "6.0", "git": "2", "jq": "1", "docker": "25"}}
		env, _ := newDnfEnv(t, d, osReleaseAL2023)
		drift, err := Packages{}.Check(context.Background(), env)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"install nodejs (dnf)"}; !reflect.DeepEqual(drift.Changes, want) {
			t.Errorf("Changes = %q, want %q", drift.Changes, want)
		}
		if len(drift.Notes) != 1 || !strings.Contains(drift.Notes[0], "no Node.js >= 22 available from the configured repositories") {
			t.Errorf("Notes = %q", drift.Notes)
		}
	})
	t.Run("old nodejs installed: in sync with a note", func(t *testing.T) {
		t.Parallel()
		d := &dnfFake{installed: map[string]string{"unzip": "6.0", "git": "2", "jq": "1", "docker": "25", "nodejs": "18.20.8", "npm": "10.8.2"}}
		env, _ := newDnfEnv(t, d, osReleaseAL2023)
		drift, err := Packages{}.Check(context.Background(), env)
		if err != nil {
			t.Fatal(err)
		}
		want := "no Node.js >= 22 available from the configured repositories; installed nodejs 18.20.8"
		if !drift.InSync() || !reflect.DeepEqual(drift.Notes, []string{want}) {
			t.Errorf("drift = %+v, want in sync with note %q", drift, want)
		}
	})
	t.Run("old nodejs installed, nodejs22 offered: upgrade", func(t *testing.T) {
		t.Parallel()
		d := &dnfFake{
			installed: map[string]string{"unzip": "6.0", "git": "2", "jq": "1", "docker": "25", "nodejs": "18.20.8", "npm": "10.8.2"},
			available: []string{"nodejs22", "nodejs22-npm"},
		}
		env, _ := newDnfEnv(t, d, osReleaseAL2023)
		drift, err := Packages{}.Check(context.Background(), env)
		if err != nil {
			t.Fatal(err)
		}
		if len(drift.Changes) == 0 || drift.Changes[0] != "install nodejs22 (dnf)" {
			t.Errorf("Changes = %q", drift.Changes)
		}
	})
	t.Run("fedora with nodejs 22: no repoquery", func(t *testing.T) {
		t.Parallel()
		d := &dnfFake{installed: map[string]string{"unzip": "6.0", "git": "2", "jq": "1", "docker": "25", "nodejs": "22.11.0", "npm": "10.9.0"}}
		env, fake := newDnfEnv(t, d, "ID=fedora\nVERSION_ID=41\n")
		drift, err := Packages{}.Check(context.Background(), env)
		if err != nil {
			t.Fatal(err)
		}
		if !drift.InSync() || len(drift.Notes) != 0 || len(fake.Calls()) != 1 {
			t.Errorf("drift = %+v, calls %q", drift, fake.Calls())
		}
	})
}

func TestPackagesDnfLockRetry(t *testing.T) {
	t.Parallel()
	base := map[string]string{"unzip": "6.0", "git": "2", "docker": "25", "nodejs22": "22", "nodejs22-npm": "10"}
	t.Run("lock released", func(t *testing.T) {
		t.Parallel()
		d := &dnfFake{installed: base, lockFails: 2}
		env, _ := newDnfEnv(t, d, osReleaseAL2023)
		var waits []time.Duration
		p := Packages{sleep: func(_ context.Context, w time.Duration) error { waits = append(waits, w); return nil }}
		if err := p.Apply(context.Background(), env); err != nil {
			t.Fatal(err)
		}
		if n := len(d.installCmds()); n != 3 {
			t.Errorf("install attempts = %d, want 3", n)
		}
		if want := []time.Duration{time.Second, 2 * time.Second}; !reflect.DeepEqual(waits, want) {
			t.Errorf("waits = %v, want %v", waits, want)
		}
	})
	t.Run("lock held past the bound", func(t *testing.T) {
		t.Parallel()
		d := &dnfFake{installed: base, lockFails: 1000}
		env, _ := newDnfEnv(t, d, osReleaseAL2023)
		env.Config.PackageLockTimeout = 10 * time.Second
		var total time.Duration
		p := Packages{sleep: func(_ context.Context, w time.Duration) error { total += w; return nil }}
		err := p.Apply(context.Background(), env)
		if err == nil || !strings.Contains(err.Error(), "process 4242") || !strings.Contains(err.Error(), "lock_timeout") {
			t.Fatalf("err = %v, want the holder pid and lock_timeout", err)
		}
		if total > 10*time.Second || total < 5*time.Second {
			t.Errorf("waited %v in total, want close to but not over 10s", total)
		}
	})
}

func TestPackagesDnf5NoExitOnLock(t *testing.T) {
	t.Parallel()
	d := &dnfFake{installed: map[string]string{"unzip": "6.0", "git": "2", "docker": "25", "nodejs": "22.11.0", "npm": "10.9.0"}, lockFails: 1}
	env, _ := newDnfEnv(t, d, "ID=fedora\nVERSION_ID=42\n")
	writeTestFile(t, env.Root, "usr/bin/dnf5", "", 0o755)
	p := Packages{sleep: func(context.Context, time.Duration) error { return nil }}
	if err := p.Apply(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	installs := d.installCmds()
	if len(installs) != 2 {
		t.Fatalf("installs = %d, want a retry after the lock failure", len(installs))
	}
	want := []string{"--installroot", env.Root, "install", "-y", "--setopt=install_weak_deps=False", "jq"}
	if !reflect.DeepEqual(installs[0].Args, want) {
		t.Errorf("dnf5 args = %q, want %q (no exit_on_lock)", installs[0].Args, want)
	}
}

func TestPackagesDnfNoMatch(t *testing.T) {
	t.Parallel()
	env, fake := newTestEnv(t)
	writeTestFile(t, env.Root, "etc/os-release", "ID=rocky\nID_LIKE=\"rhel centos fedora\"\n", 0o644)
	env.Config.Packages = []string{"git", "bogus"}
	fake.OnOutput("rpm -q", "git 2.43.5\nno package provides bogus\n")
	msg := "No match for argument: bogus\nError: Unable to find a match: bogus\n"
	fake.On("dnf --installroot", func(c runner.Cmd) (runner.Result, error) {
		return runner.Result{ExitCode: 1, Stderr: []byte(msg)}, &runner.ExitError{Cmd: c.String(), Code: 1, Stderr: msg}
	})
	err := (Packages{}).Apply(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "dnf has no package bogus") {
		t.Fatalf("err = %v, want one naming bogus", err)
	}
	if n := fake.CallsWithPrefix("dnf --installroot " + env.Root + " install"); n != 1 {
		t.Errorf("dnf install attempts = %d, want 1 (no retry for a missing package)", n)
	}
}

func TestParseRPMQuery(t *testing.T) {
	t.Parallel()
	// Output shape of rpm 4.18 `rpm -q --whatprovides --qf '%{NAME} %{VERSION}\n'`.
	db := parseRPMQuery([]byte("git 2.47.1\nno package provides jq\nmoby-engine 27.3.1\nnodejs 18.20.8\n"))
	for capability, want := range map[string]bool{"git": true, "jq": false, "docker": true} {
		if got := db.has(capability); got != want {
			t.Errorf("has(%q) = %v, want %v", capability, got, want)
		}
	}
	if db.versions["nodejs"] != "18.20.8" {
		t.Errorf("nodejs version = %q", db.versions["nodejs"])
	}
}

// TestDpkgStatusRealDpkg installs a tiny real .deb into a temp admin
// directory with the real dpkg and checks the parser reads the states
// dpkg itself writes: installed, unpacked-only, and removed-with-conffiles.
func TestDpkgStatusRealDpkg(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root: dpkg --root refuses to install as a normal user")
	}
	for _, tool := range []string{"dpkg", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed; this test needs a Debian-family host", tool)
		}
	}
	work := t.TempDir()
	buildDeb := func(name string) string {
		dir := filepath.Join(work, name)
		writeTestFile(t, dir, "DEBIAN/control", "Package: "+name+"\nVersion: 1.2-3\nArchitecture: all\nMaintainer: ccboot tests <t@example.com>\nProvides: "+name+"-virtual\nDescription: ccboot test package\n continuation line\n", 0o644)
		writeTestFile(t, dir, "DEBIAN/conffiles", "/etc/"+name+".conf\n", 0o644)
		writeTestFile(t, dir, "etc/"+name+".conf", "x=1\n", 0o644)
		writeTestFile(t, dir, "usr/share/"+name+"/README", "hello\n", 0o644)
		deb := filepath.Join(work, name+".deb")
		runTool(t, "dpkg-deb", "--root-owner-group", "--build", dir, deb)
		return deb
	}
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeTestFile(t, root, "var/lib/dpkg/status", "", 0o644)
	dpkg := func(args ...string) {
		runTool(t, "dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--force-not-root", "--log=/dev/null"}, args...)...)
	}
	dpkg("-i", buildDeb("ccboot-installed"))
	dpkg("--unpack", buildDeb("ccboot-unpacked"))
	dpkg("-i", buildDeb("ccboot-removed"))
	dpkg("-r", "ccboot-removed")

	data, err := os.ReadFile(filepath.Join(root, "var/lib/dpkg/status"))
	if err != nil {
		t.Fatal(err)
	}
	db := parseDpkgStatus(data)
	for name, want := range map[string]bool{
		"ccboot-installed":         true,
		"ccboot-installed-virtual": true,
		"ccboot-unpacked":          false,
		"ccboot-unpacked-virtual":  false,
		"ccboot-removed":           false,
		"ccboot-removed-virtual":   false,
	} {
		if got := db.has(name); got != want {
			t.Errorf("has(%q) = %v, want %v; status file:\n%s", name, got, want, data)
		}
	}
	if v := db.pkgs["ccboot-installed"].Version; v != "1.2-3" {
		t.Errorf("version = %q, want 1.2-3", v)
	}
	if !strings.Contains(string(data), "Status: deinstall ok config-files") {
		t.Errorf("dpkg did not leave a config-files stanza; the removed case proves nothing:\n%s", data)
	}
}

func runTool(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func TestDnfLockMessages(t *testing.T) {
	t.Parallel()
	tests := []struct{ out, holder string }{
		{"RPMDB already locked by 4242\n", " by process 4242"},
		{"metadata already locked by 77\n", " by process 77"},
		{"Failed to obtain rpm transaction lock. Another transaction is in progress.\n", ""}, // dnf5
	}
	for _, tt := range tests {
		m := dnfLocked.FindStringSubmatch(tt.out)
		if m == nil {
			t.Errorf("%q not recognised as a lock failure", tt.out)
			continue
		}
		if got := lockHolder(m); got != tt.holder {
			t.Errorf("lockHolder(%q) = %q, want %q", tt.out, got, tt.holder)
		}
	}
	if dnfLocked.MatchString("Error: Unable to find a match: bogus\n") {
		t.Error("a missing package was taken for a lock failure")
	}
}

// A run killed inside dpkg leaves packages unpacked; apt then refuses every
// install ("dpkg was interrupted"). Found by the e2e interrupted-bootstrap
// scenario: Check must call it drift and Apply must finish dpkg's work first.
func TestPackagesAptInterruptedDpkg(t *testing.T) {
	t.Parallel()
	all := installedStatus("unzip", "git", "jq", "docker.io", "npm") + dpkgStanza("nodejs", "22.12.0-1", "install ok installed")
	tests := []struct {
		name     string
		status   string
		updates  bool
		wantText string // in the drift; "" means no drift
	}{
		{"all installed", all, false, ""},
		{"unpacked dependency", all + dpkgStanza("libfoo1", "1.0-1", "install ok unpacked"), false, "libfoo1"},
		{"half-configured", all + dpkgStanza("containerd", "1.6-1", "install ok half-configured"), false, "containerd"},
		{"pending status updates", all, true, "/var/lib/dpkg/updates"},
		{"removed, config files left: not interrupted", all + dpkgStanza("old", "1", "deinstall ok config-files"), false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, fake, _ := newAptEnv(t, tt.status, true)
			if tt.updates {
				writeTestFile(t, env.Root, "var/lib/dpkg/updates/0001", "Package: libfoo1\n", 0o644)
			}
			d, err := Packages{}.Check(context.Background(), env)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(d.Changes, "; ")
			if tt.wantText == "" {
				if len(d.Changes) != 0 {
					t.Fatalf("drift %q, want none", got)
				}
				return
			}
			if !strings.Contains(got, "dpkg --configure -a") || !strings.Contains(got, tt.wantText) {
				t.Fatalf("drift %q, want dpkg --configure -a naming %s", got, tt.wantText)
			}
			fake.OnOutput("chroot "+env.Root+" dpkg ", "")
			fake.OnOutput("chroot "+env.Root+" apt-get install", "")
			if err := (Packages{}).Apply(context.Background(), env); err != nil {
				t.Fatal(err)
			}
			calls := fake.Calls()
			conf, fix := -1, -1
			for i, c := range calls {
				switch {
				case strings.HasPrefix(c, "chroot "+env.Root+" dpkg ") && strings.Contains(c, "--configure -a"):
					conf = i
				case strings.HasPrefix(c, "chroot "+env.Root+" apt-get install") && strings.Contains(c, "--fix-broken"):
					fix = i
				}
			}
			if conf < 0 || fix < conf {
				t.Errorf("want dpkg --configure -a, then apt-get install --fix-broken; calls: %q", calls)
			}
		})
	}
}

func TestPackagesAptInterruptedDpkgFails(t *testing.T) {
	t.Parallel()
	env, fake, _ := newAptEnv(t, installedStatus("unzip", "git", "jq", "docker.io", "npm", "nodejs")+dpkgStanza("libfoo1", "1", "install ok unpacked"), true)
	fake.OnExit("chroot "+env.Root+" dpkg", 1, "dpkg: error processing package libfoo1 (--configure)\n")
	err := (Packages{}).Apply(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "dpkg --configure -a") {
		t.Fatalf("err = %v, want one naming dpkg --configure -a", err)
	}
}

// The rootless-docker step's tools are optional: a repository without them
// must neither fail the transaction nor show as drift at every repair.
func TestPackagesAptRootlessToolsOptional(t *testing.T) {
	t.Parallel()
	t.Run("no lists yet: asked for, dropped when apt does not know them", func(t *testing.T) {
		t.Parallel()
		env, fake, apt := newAptEnv(t, installedStatus("unzip", "git", "jq", "nodejs", "npm", "docker.io", "nftables"), false)
		env.Config.TierMode = "enforced"
		fail := aptFail("E: Unable to locate package rootlesskit\nE: Unable to locate package slirp4netns\nE: Unable to locate package uidmap\nE: Unable to locate package dbus-user-session\n")
		apt.handle(fake, env.Root, fail)
		if err := (Packages{}).Apply(context.Background(), env); err != nil {
			t.Fatalf("Apply = %v, want the optional tools dropped", err)
		}
		// Nothing left to install once they are dropped: one attempt only.
		if n := len(apt.installed()); n != 1 {
			t.Errorf("install attempts = %d, want 1: %q", n, fake.Calls())
		}
	})
	t.Run("a required package apt does not know still fails", func(t *testing.T) {
		t.Parallel()
		env, fake, apt := newAptEnv(t, installedStatus("unzip", "git", "nodejs", "npm", "docker.io", "nftables"), false)
		env.Config.TierMode = "enforced"
		fail := aptFail("E: Unable to locate package jq\nE: Unable to locate package rootlesskit\n")
		apt.handle(fake, env.Root, fail, fail)
		err := (Packages{}).Apply(context.Background(), env)
		if err == nil || !strings.Contains(err.Error(), "apt has no package jq") {
			t.Fatalf("Apply = %v, want jq named", err)
		}
	})
	t.Run("lists present: only what has a candidate is planned", func(t *testing.T) {
		t.Parallel()
		env, fake, _ := newAptEnv(t, installedStatus("unzip", "git", "jq", "nodejs", "npm", "docker.io", "nftables"), true)
		env.Config.TierMode = "enforced"
		fake.OnOutput("chroot "+env.Root+" apt-cache -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= policy rootlesskit",
			"rootlesskit:\n  Installed: (none)\n  Candidate: 1.1.0-1\nslirp4netns:\n  Installed: (none)\n  Candidate: (none)\nuidmap:\n  Installed: (none)\n  Candidate: 1:4.13\n")
		pl, err := planApt(context.Background(), env)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"rootlesskit", "uidmap"}; !slices.Equal(pl.install, want) || !slices.Equal(pl.optional, want) {
			t.Errorf("install %q optional %q, want %q for both", pl.install, pl.optional, want)
		}
	})
}

// Enforced mode needs nft for the imds-filter step: the package set has
// it whatever [packages] install says, and advisory mode leaves it alone.
func TestPackagesEnforcedAddsNftables(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"advisory", "enforced"} {
		env, _, _ := newAptEnv(t, installedStatus("unzip", "git", "jq", "nodejs", "npm", "docker.io", "rootlesskit", "slirp4netns", "uidmap", "dbus-user-session"), false)
		env.Config.TierMode = mode
		pl, err := planApt(context.Background(), env)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := slices.Contains(pl.install, "nftables"), mode == "enforced"; got != want {
			t.Errorf("%s: nftables planned = %v, want %v (install %q)", mode, got, want, pl.install)
		}
	}
}
