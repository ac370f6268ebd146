//go:build reliability

package main

// The reliability suite (make reliability): the built binary under faults,
// hostile input and crashes, each family printing one figure line. This
// file holds what the families share: the crash-test build, the fake
// package managers put into a root, tree snapshots and the figure check.
//
//	go test -tags reliability -run Reliability -v ./cmd/ccboot/

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/steps/claudetest"
)

// figure prints a figure line exactly as the issue spells it and fails the
// test when it is below its goal.
func figure(t *testing.T, name string, got, goal int) {
	t.Helper()
	fmt.Printf("%s: %d/%d\n", name, got, goal)
	if got < goal {
		t.Errorf("%s: %d/%d is below the goal", name, got, goal)
	}
}

// figureOK prints "NAME: ok" or "NAME: FAILED".
func figureOK(t *testing.T, name string, ok bool) {
	t.Helper()
	if ok {
		fmt.Printf("%s: ok\n", name)
		return
	}
	fmt.Printf("%s: FAILED\n", name)
	t.Errorf("%s: failed", name)
}

// binaries built once per test process.
var (
	crashBinOnce sync.Once
	crashBin     string
	crashBinErr  error
	fakePMOnce   sync.Once
	fakePM       string
	fakePMErr    error
)

// crashBinary is ccboot built with -tags crashhook (see
// bootstrap/fsroot/crashpoint_on.go).
func crashBinary(t *testing.T) string {
	t.Helper()
	crashBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ccboot-crash")
		if err != nil {
			crashBinErr = err
			return
		}
		crashBin = filepath.Join(dir, "ccboot-crash")
		build := exec.Command("go", "build", "-tags", "crashhook,nethttpomithttp2", "-trimpath", "-o", crashBin, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			crashBinErr = fmt.Errorf("build crashhook binary: %v\n%s", err, out)
		}
	})
	if crashBinErr != nil {
		t.Fatal(crashBinErr)
	}
	return crashBin
}

// fakePMSource is a static program put into a root as usr/bin/apt-get,
// usr/bin/apt-cache and usr/bin/npm, run by ccboot through a real chroot.
// It behaves like the real tools where ccboot depends on it: apt-get takes
// dpkg's frontend lock with fcntl (as apt does, so a `flock`-held lock would
// not block it) and honours DPkg::Lock::Timeout, prints apt's messages for a
// held lock and an unknown package, and records installs in dpkg's status
// file (written beside and renamed, as dpkg does); npm installs the package
// layout ccboot checks, or with FAKEPM_NPM=offline really connects to a
// closed loopback port and prints npm's ECONNREFUSED error. Every npm
// attempt is appended to /var/log/fakenpm-attempts.
const fakePMSource = `package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var available = map[string]bool{"unzip": true, "git": true, "jq": true, "nodejs": true, "npm": true, "docker.io": true, "docker-ce": true}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "--hold-lock" {
		holdLock(os.Args[2])
		return
	}
	switch filepath.Base(os.Args[0]) {
	case "apt-get":
		os.Exit(aptGet(os.Args[1:]))
	case "apt-cache":
		fmt.Println("nodejs:\n  Installed: (none)\n  Candidate: 20.19.2+dfsg-1\n")
	case "npm":
		os.Exit(npm(os.Args[1:]))
	default:
		fmt.Fprintln(os.Stderr, "fakepm: unknown name", os.Args[0])
		os.Exit(2)
	}
}

func lockRange() *syscall.Flock_t {
	return &syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: 0, Len: 0}
}

func holdLock(path string) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLKW, lockRange()); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("locked")
	for {
		time.Sleep(time.Hour)
	}
}

const frontend = "/var/lib/dpkg/lock-frontend"

func aptGet(args []string) int {
	timeout := 0
	var cmd string
	var pkgs []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o" && i+1 < len(args):
			i++
			k, v, _ := strings.Cut(args[i], "=")
			if strings.EqualFold(k, "DPkg::Lock::Timeout") {
				timeout, _ = strconv.Atoi(v)
			}
		case strings.HasPrefix(a, "-"):
		case cmd == "":
			cmd = a
		default:
			pkgs = append(pkgs, a)
		}
	}
	// update locks the lists, install dpkg's frontend, as apt does.
	lockFile, what := frontend, "the dpkg frontend lock"
	if cmd == "update" {
		lockFile, what = "/var/lib/apt/lists/lock", "directory /var/lib/apt/lists/"
		os.MkdirAll("/var/lib/apt/lists", 0o755)
	}
	f, err := os.OpenFile(lockFile, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		fmt.Fprintf(os.Stderr, "E: Could not open lock file %s - open (%v)\n", lockFile, err)
		return 100
	}
	defer f.Close()
	start := time.Now()
	for waited := false; ; waited = true {
		if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, lockRange()); err == nil {
			break
		}
		probe := lockRange()
		syscall.FcntlFlock(f.Fd(), syscall.F_GETLK, probe)
		held := fmt.Sprintf("Could not get lock %s. It is held by process %d", lockFile, probe.Pid)
		if time.Since(start) >= time.Duration(timeout)*time.Second {
			fmt.Fprintf(os.Stderr, "E: %s\nE: Unable to lock %s, is another process using it?\n", held, what)
			return 100
		}
		if !waited {
			fmt.Printf("Waiting for cache lock: %s...\n", held)
		}
		time.Sleep(200 * time.Millisecond)
	}
	switch cmd {
	case "update":
		os.MkdirAll("/var/lib/apt/lists", 0o755)
		os.WriteFile("/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages", []byte("fake\n"), 0o644)
		fmt.Println("Reading package lists... Done")
		return 0
	case "install":
	default:
		fmt.Fprintf(os.Stderr, "E: Invalid operation %s\n", cmd)
		return 100
	}
	code := 0
	for _, p := range pkgs {
		if !available[p] {
			fmt.Fprintf(os.Stderr, "E: Unable to locate package %s\n", p)
			code = 100
		}
	}
	if code != 0 {
		return code
	}
	status, _ := os.ReadFile("/var/lib/dpkg/status")
	for _, p := range pkgs {
		status = append(status, fmt.Sprintf("Package: %s\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n\n", p)...)
		fmt.Printf("Setting up %s (1.0) ...\n", p)
	}
	tmp := "/var/lib/dpkg/status-new"
	if err := os.WriteFile(tmp, status, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "E:", err)
		return 100
	}
	if err := os.Rename(tmp, "/var/lib/dpkg/status"); err != nil {
		fmt.Fprintln(os.Stderr, "E:", err)
		return 100
	}
	return 0
}

func npm(args []string) int {
	if f, err := os.OpenFile("/var/log/fakenpm-attempts", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
		fmt.Fprintln(f, strings.Join(args, " "))
		f.Close()
	}
	prefix, spec := "/usr/local", ""
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "--prefix" && i+1 < len(args):
			i++
			prefix = args[i]
		case strings.HasPrefix(args[i], "@anthropic-ai/claude-code@"):
			spec = args[i]
		}
	}
	if os.Getenv("FAKEPM_NPM") == "offline" {
		registry := "127.0.0.1:9"
		_, err := net.DialTimeout("tcp", registry, 2*time.Second)
		reason := fmt.Sprint(err)
		fmt.Fprintf(os.Stderr, "npm error code ECONNREFUSED\nnpm error syscall connect\nnpm error errno ECONNREFUSED\nnpm error FetchError: request to http://%s/@anthropic-ai%%2fclaude-code failed, reason: %s\n", registry, reason)
		return 1
	}
	version := strings.TrimPrefix(spec, "@anthropic-ai/claude-code@")
	dir := filepath.Join(prefix, "lib/node_modules/@anthropic-ai/claude-code")
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "npm error", err)
		return 1
	}
	os.WriteFile(filepath.Join(dir, "bin/claude.exe"), []byte("#!/bin/sh\necho claude\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "package.json"), []byte("{\"name\":\"@anthropic-ai/claude-code\",\"version\":\""+version+"\"}"), 0o644)
	os.MkdirAll(filepath.Join(prefix, "bin"), 0o755)
	link := filepath.Join(prefix, "bin/claude")
	os.Remove(link)
	if err := os.Symlink("../lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe", link); err != nil {
		fmt.Fprintln(os.Stderr, "npm error", err)
		return 1
	}
	fmt.Println("added 1 package in 1s")
	return 0
}
`

// fakePMBinary builds fakePMSource as a static binary.
func fakePMBinary(t *testing.T) string {
	t.Helper()
	fakePMOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ccboot-fakepm")
		if err != nil {
			fakePMErr = err
			return
		}
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(fakePMSource), 0o644); err != nil {
			fakePMErr = err
			return
		}
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module fakepm\n\ngo 1.24\n"), 0o644); err != nil {
			fakePMErr = err
			return
		}
		fakePM = filepath.Join(dir, "fakepm")
		build := exec.Command("go", "build", "-o", fakePM, ".")
		build.Dir = dir
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
		if out, err := build.CombinedOutput(); err != nil {
			fakePMErr = fmt.Errorf("build fake package managers: %v\n%s", err, out)
		}
	})
	if fakePMErr != nil {
		t.Fatal(fakePMErr)
	}
	return fakePM
}

// aptListsFile makes apt's package lists present, so ccboot installs
// without refreshing them first.
const aptListsFile = "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages"

// withFakePM puts the fake apt-get and apt-cache into root and makes the
// packages and claude-code steps have work to do: jq is not installed and
// neither is Claude Code, which a loopback release channel serves.
func withFakePM(t *testing.T, root string) {
	t.Helper()
	bin, err := os.ReadFile(fakePMBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"usr/bin/apt-get", "usr/bin/apt-cache"} {
		p := filepath.Join(root, name)
		mustMkdir(t, filepath.Dir(p))
		if err := os.WriteFile(p, bin, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustMkdir(t, filepath.Join(root, "var/lib/apt/lists"))
	mustWrite(t, filepath.Join(root, aptListsFile), "fake\n", 0o644)
	mustMkdir(t, filepath.Join(root, "var/log"))
	status := filepath.Join(root, "var/lib/dpkg/status")
	b, err := os.ReadFile(status)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte("Package: jq\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n\n"), nil, 1)
	mustWrite(t, status, string(b), 0o644)
	if err := os.RemoveAll(filepath.Join(root, "usr/local/lib/claude-code")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, "usr/local/bin/claude")); err != nil {
		t.Fatal(err)
	}
	// Claude Code comes from a loopback release channel.
	srv := claudetest.New()
	t.Cleanup(srv.Close)
	srv.Add(bootstrap.DefaultClaudeCodeVersion, "linux-x64", claudetest.Executable(bootstrap.DefaultClaudeCodeVersion, 1<<20))
	if _, err := srv.WriteKey(root); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(root, "etc/ccboot/ccboot.conf"), "[claude-code]\nrelease_url = "+srv.ReleaseURL()+"\nsigning_key = "+claudetest.KeyPath+"\n", 0o644)
}

func mustMkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	mustMkdir(t, filepath.Dir(p))
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// binRun is one finished invocation of a binary.
type binRun struct {
	code           int
	signaled       bool
	stdout, stderr string
	took           time.Duration
}

// runBin runs bin with args and extra environment in its own process group
// (like a systemd unit's cgroup: a crash hook kills the whole group) and
// waits until every process of the group is gone.
func runBin(t *testing.T, bin string, env []string, args ...string) binRun {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// Never let an ambient setting point the binary at a real IMDS.
	cmd.Env = append(append(os.Environ(), "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9", "INVOCATION_ID=", "NOTIFY_SOCKET="), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	err := cmd.Start()
	if err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	pgid := cmd.Process.Pid
	err = cmd.Wait()
	r := binRun{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	r.signaled = ws.Signaled()
	r.code = cmd.ProcessState.ExitCode()
	// Children the hook killed with the group may still be exiting.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if syscall.Kill(-pgid, 0) != nil {
			break
		}
	}
	return r
}

// entry is what a tree snapshot records for one path.
type entry struct {
	kind     string // "file", "dir", "link", "fifo", ...
	mode     fs.FileMode
	uid, gid uint32
	size     int64
	content  string // sha256, the link target, or the swap signature
}

// volatile paths differ between two correct runs (timestamps, PIDs).
// created.json records inode numbers, which differ between two roots.
var volatile = []string{"var/log/ccboot.log", "var/lib/ccboot/state.json", "var/lib/ccboot/created.json", "run/ccboot/lock", "var/log/fakenpm-attempts",
	"var/lib/ccboot/doctor.json", "var/lib/amazon/ssm/i-0123456789abcdef0/inventory/custom/ccboot.json"} // the inventory holds the run's time

// perRoot paths differ between two roots of the same test: Claude Code's
// install record holds the executable's mtime and the URL of the root's
// loopback release channel, whose port the config names as well.
var perRoot = []string{"etc/ccboot/ccboot.conf", "usr/local/lib/claude-code/versions/" + bootstrap.DefaultClaudeCodeVersion + "/install.json"}

// shadowLeftover matches the lock files shadow-utils (groupadd, usermod)
// leaves when it is killed together with ccboot, as systemd kills a unit's
// whole cgroup: NAME.PID and NAME.lock. They are the tool's, not ccboot's,
// and the next groupadd/usermod removes a stale lock itself.
// NAME- is the backup copy each of them writes before changing NAME.
var shadowLeftover = regexp.MustCompile(`^etc/(passwd|group|shadow|gshadow|subuid|subgid)(\.([0-9]+|lock)|-)$`)

// gshadowMembers is /etc/gshadow as group names and members, one line each:
// after a groupadd killed between /etc/group and /etc/gshadow, the repair
// (grpconv) writes the entry's password field as "x" where groupadd writes
// "!"; both are "no group password", so only names and members count.
func gshadowMembers(b []byte) string {
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) == 4 {
			out = append(out, f[0]+":"+f[3])
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// snapshot records every path under root. Swap files are recorded by size
// and signature (mkswap writes a random UUID).
func snapshot(t *testing.T, root string) map[string]entry {
	t.Helper()
	m := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." || slices.Contains(volatile, rel) || slices.Contains(perRoot, rel) || shadowLeftover.MatchString(rel) {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := entry{mode: fi.Mode(), uid: st.Uid, gid: st.Gid}
		switch {
		case fi.Mode().IsRegular():
			e.kind, e.size = "file", fi.Size()
			switch {
			case isSwapFile(p):
				e.content = "swap signature"
			case fi.Size() > 64<<20:
				// Too big to hash (a planted sparse file): identity, blocks
				// on disk and mtime show any rewrite.
				e.content = fmt.Sprintf("large: ino %d, %d blocks, mtime %d", st.Ino, st.Blocks, fi.ModTime().UnixNano())
			default:
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				if rel == "etc/gshadow" {
					b = []byte(gshadowMembers(b))
					e.size = int64(len(b))
				}
				sum := sha256.Sum256(b)
				e.content = hex.EncodeToString(sum[:])
			}
		case fi.IsDir():
			e.kind = "dir"
		case fi.Mode()&fs.ModeSymlink != 0:
			e.kind = "link"
			e.content, _ = os.Readlink(p)
		case fi.Mode()&fs.ModeNamedPipe != 0:
			e.kind = "fifo"
		default:
			e.kind = "other"
		}
		m[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func isSwapFile(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	page := os.Getpagesize()
	b := make([]byte, 10)
	if _, err := f.ReadAt(b, int64(page-10)); err != nil {
		return false
	}
	return string(b) == "SWAPSPACE2"
}

// diffTrees lists how got differs from want, one line per path.
func diffTrees(want, got map[string]entry) []string {
	var out []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			out = append(out, "missing "+p)
		case g != w:
			out = append(out, fmt.Sprintf("differs %s: want %+v, got %+v", p, w, g))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			out = append(out, "extra "+p)
		}
	}
	sort.Strings(out)
	return out
}

// leftovers lists temp files, zero-length managed files and duplicated
// managed lines in root.
func leftovers(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && (strings.Contains(d.Name(), ".ccboot-tmp-") || strings.HasSuffix(d.Name(), ".ccboot-new")) {
			out = append(out, "temp file left: "+p)
		}
		return nil
	})
	if _, err := os.Lstat(filepath.Join(root, "usr/local/bin/claude")); err == nil {
		if _, err := os.Stat(filepath.Join(root, "usr/local/bin/claude")); err != nil {
			out = append(out, "dangling usr/local/bin/claude: "+err.Error())
		}
	}
	for _, f := range managedFiles {
		if fi, err := os.Stat(filepath.Join(root, f)); err == nil && fi.Size() == 0 {
			out = append(out, "zero-length managed file: "+f)
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/fstab")); err == nil {
		if n := strings.Count(string(b), "/swapfile "); n > 1 {
			out = append(out, fmt.Sprintf("fstab has %d swap lines", n))
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "home/ec2-user/.bashrc")); err == nil {
		for _, marker := range []string{"# >>> ccboot aliases >>>", "# <<< ccboot aliases <<<", "alias claude-ro=", "alias claude-el="} {
			if n := strings.Count(string(b), marker); n > 1 {
				out = append(out, fmt.Sprintf(".bashrc has %q %d times", marker, n))
			}
		}
	}
	return out
}
