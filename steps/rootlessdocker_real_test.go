package steps

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rootlessTreeEnv names a directory holding Debian 12's rootless Docker,
// unpacked (not installed) so the test changes nothing on the host:
//
//	apt-get download docker.io containerd runc tini rootlesskit slirp4netns libslirp0 uidmap
//	for f in *.deb; do dpkg -x "$f" "$TREE"; done
//
// dpkg -x run as root keeps newuidmap's setuid bit, which it needs.
const rootlessTreeEnv = "CCBOOT_ROOTLESS_TREE"

// TestRootlessDockerRunsForReal runs the rootless-docker step against a
// tree holding the real packages (it must find them there), then starts the
// daemon exactly as the unit the step wrote says, as an unprivileged user
// (nobody), with the subordinate ids the step wrote, and runs a container
// of an image the test makes. It proves the step's output is enough for
// `docker run` without root. It needs root (newuidmap, runuser, mounts in a
// namespace of its own); nothing leaves a loopback-only network namespace.
func TestRootlessDockerRunsForReal(t *testing.T) {
	tree := os.Getenv(rootlessTreeEnv)
	if tree == "" || os.Geteuid() != 0 {
		t.Skipf("needs root and %s (a directory with Debian's docker.io, rootlesskit, slirp4netns, uidmap unpacked; see its comment)", rootlessTreeEnv)
	}
	for _, p := range []string{"/etc/subuid", "/etc/subgid", "/bin/busybox"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("needs %s: %v", p, err)
		}
	}
	env, fake := rootlessEnforcedEnv(t)
	env.Config.User = "nobody"
	writeTestFile(t, env.Root, "etc/passwd", "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", 0o644)
	writeTestFile(t, env.Root, "etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644)
	// Hard links: the packages' files as they are, setuid bits included.
	if out, err := exec.Command("cp", "-al", filepath.Join(tree, "usr"), filepath.Join(env.Root, "usr")).CombinedOutput(); err != nil {
		t.Fatalf("cp -al %s: %v: %s", tree, err, out)
	}
	fakeGlobalEnable(t, env, fake)
	ctx := context.Background()
	if err := (RootlessDocker{}).Apply(ctx, env); err != nil {
		t.Fatal(err)
	}
	d, err := RootlessDocker{}.Check(ctx, env)
	if err != nil || !d.InSync() {
		t.Fatalf("Check after Apply: %v %v", d.Changes, err)
	}
	if len(d.Notes) != 1 || !strings.Contains(d.Notes[0], "runs its own rootless dockerd") {
		t.Fatalf("the step did not find rootless Docker in the real packages: %q", d.Notes)
	}
	execStart, path := unitCommand(t, filepath.Join(env.Root, rootlessUnitPath))

	// The user's runtime dir and home, as logind and useradd would make them.
	work := t.TempDir()
	// nobody runs the packages' binaries under the root and reads the
	// image under work: open the test's own directories to it.
	for _, dir := range []string{env.Root, filepath.Dir(env.Root), work, filepath.Dir(work)} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	xdg, home := filepath.Join(work, "xdg"), filepath.Join(work, "home")
	for _, dir := range []string{xdg, home, filepath.Join(work, "dev")} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	// Paths in the unit are the instance's; here they live under the root.
	inRoot := func(p string) string { return filepath.Join(env.Root, p) }
	var pathDirs []string
	for _, p := range strings.Split(path, ":") {
		pathDirs = append(pathDirs, inRoot(p))
	}
	pathDirs = append(pathDirs, "/usr/sbin", "/usr/bin", "/sbin", "/bin")
	script := `set -e
ip link set lo up
# Debian and AL2023 make /dev/net/tun 0666; a sandbox may not. A 0666 node
# of the same device, in this mount namespace only.
if [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
	mount -t tmpfs tmpfs "$WORK/dev"
	mknod -m 0666 "$WORK/dev/tun" c 10 200
	mount --bind "$WORK/dev/tun" /dev/net/tun
fi
# newuidmap reads the host's files: give it the ones the step wrote.
mount --bind "$ROOT/etc/subuid" /etc/subuid
mount --bind "$ROOT/etc/subgid" /etc/subgid
exec runuser -u nobody -- env -i HOME="$HOME_DIR" XDG_RUNTIME_DIR="$XDG" PATH="$UNIT_PATH" \
	LD_LIBRARY_PATH="$ROOT/usr/lib/x86_64-linux-gnu" "$EXEC_START" --iptables=false
`
	// --iptables=false: docker.io depends on iptables, which an unpacked
	// tree lacks; nothing here needs NAT.
	daemon := exec.Command("unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", script)
	daemon.Env = append(os.Environ(), "WORK="+work, "ROOT="+env.Root, "HOME_DIR="+home, "XDG="+xdg,
		"UNIT_PATH="+strings.Join(pathDirs, ":"), "EXEC_START="+inRoot(execStart))
	var log bytes.Buffer
	daemon.Stdout, daemon.Stderr = &log, &log
	daemon.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- daemon.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-daemon.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-daemon.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	sock := filepath.Join(xdg, "docker.sock")
	docker := func(args ...string) (string, error) {
		c := exec.Command("runuser", append([]string{"-u", "nobody", "--", "env", "DOCKER_HOST=unix://" + sock, inRoot("usr/bin/docker")}, args...)...)
		out, err := c.CombinedOutput()
		return string(out), err
	}
	start := time.Now()
	for {
		if _, err := docker("version"); err == nil {
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("the rootless daemon did not answer in 60 s; its log:\n%s", tail(log.String(), 30))
		}
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("the rootless daemon exited (%v); its log:\n%s", err, tail(log.String(), 30))
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Logf("rootless dockerd answered after %v", time.Since(start).Round(10*time.Millisecond))

	// An image of the test's own: busybox and its libraries.
	img := filepath.Join(work, "img")
	files := []string{"/bin/busybox"}
	ldd, err := exec.Command("ldd", "/bin/busybox").Output()
	if err == nil {
		for _, f := range strings.Fields(string(ldd)) {
			if strings.HasPrefix(f, "/") {
				files = append(files, f)
			}
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, img, f, string(data), 0o755)
	}
	tarball := filepath.Join(work, "img.tar")
	if out, err := exec.Command("tar", "-C", img, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	if out, err := docker("import", tarball, "ccboot-tiny:1"); err != nil {
		t.Fatalf("docker import: %v: %s", err, out)
	}
	start = time.Now()
	out, err := docker("run", "--rm", "--net=none", "ccboot-tiny:1", "/bin/busybox", "sh", "-c", "/bin/busybox id -u; /bin/busybox cat /proc/self/uid_map")
	if err != nil {
		t.Fatalf("docker run: %v: %s\ndaemon log:\n%s", err, out, tail(log.String(), 30))
	}
	t.Logf("docker run took %v", time.Since(start).Round(10*time.Millisecond))
	// Root in the container is nobody outside; the rest is the range the
	// step wrote to /etc/subuid.
	fields := strings.Fields(out)
	want := []string{"0", "0", "65534", "1", "1", "100000", "65536"}
	if strings.Join(fields, " ") != strings.Join(want, " ") {
		t.Errorf("in the container: %q, want uid 0 mapped to 65534 and 1.. to the step's 100000:65536", out)
	}
	if out, err := docker("info", "--format", "{{.SecurityOptions}}"); err != nil || !strings.Contains(out, "name=rootless") {
		t.Errorf("docker info: %q %v, want a rootless daemon", out, err)
	}
}

// unitCommand returns ExecStart= and the PATH of Environment= from a unit.
func unitCommand(t *testing.T, unit string) (execStart, path string) {
	t.Helper()
	data, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			execStart = v
		}
		if v, ok := strings.CutPrefix(line, "Environment=PATH="); ok {
			path = v
		}
	}
	if execStart == "" || path == "" {
		t.Fatalf("%s has no ExecStart= or PATH:\n%s", unit, data)
	}
	return execStart, path
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
