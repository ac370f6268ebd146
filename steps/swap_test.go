package steps

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/runner"
)

var updateGolden = flag.Bool("update-swap-golden", false, "rewrite steps/testdata/swap/*.golden")

// testSwapBytes keeps test files small; the minimum [swap] size accepts.
const testSwapBytes = bootstrap.MinSwapBytes

// writeSwapHeader does to p what mkswap does to the header: signature,
// version 1 and last_page for the file's current size.
func writeSwapHeader(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	page := os.Getpagesize()
	hdr := make([]byte, page)
	binary.NativeEndian.PutUint32(hdr[1024:], 1)
	binary.NativeEndian.PutUint32(hdr[1028:], uint32(fi.Size()/int64(page)-1))
	copy(hdr[page-len(swapMagic):], swapMagic)
	_, err = f.WriteAt(hdr, 0)
	return err
}

// fakeMkswap answers mkswap PATH by writing a real header into PATH.
func fakeMkswap(c runner.Cmd) (runner.Result, error) {
	if err := writeSwapHeader(c.Args[len(c.Args)-1]); err != nil {
		return runner.Result{ExitCode: 1}, &runner.ExitError{Cmd: c.String(), Code: 1, Stderr: err.Error()}
	}
	return runner.Result{}, nil
}

// makeSwapFile puts a swap file of size bytes at name under root.
func makeSwapFile(t *testing.T, root, name string, size int64, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(root, name)
	if err := os.WriteFile(p, make([]byte, size), perm); err != nil {
		t.Fatal(err)
	}
	if err := writeSwapHeader(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		t.Fatal(err)
	}
	return p
}

func swapEnv(t *testing.T) (*bootstrap.Env, *runner.Fake) {
	t.Helper()
	env, fake := newTestEnv(t)
	env.Config.SwapBytes = testSwapBytes
	return env, fake
}

// liveHost pretends the temp root is the running system, with /proc/swaps
// listing the given files.
func liveHost(t *testing.T, active ...string) host {
	t.Helper()
	proc := t.TempDir()
	setProcSwaps(t, proc, active...)
	return host{live: true, proc: proc}
}

func setProcSwaps(t *testing.T, proc string, active ...string) {
	t.Helper()
	s := "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
	for _, a := range active {
		s += fstabEscape(a) + "\tfile\t\t16380\t\t0\t\t-2\n"
	}
	if err := os.WriteFile(filepath.Join(proc, "swaps"), []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestSwapCheckFreshRoot(t *testing.T) {
	t.Parallel()
	env, fake := newTestEnv(t) // default config: 512 MiB at /swapfile
	d, err := Swap{}.Check(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"create 512 MiB swap file " + filepath.Join(env.Root, "swapfile"),
		"update " + filepath.Join(env.Root, "etc/fstab") + ": exactly one swap line for /swapfile",
	}
	if !slices.Equal(d.Changes, want) {
		t.Fatalf("changes:\n%q\nwant\n%q", d.Changes, want)
	}
	if !strings.Contains(d.Diff, "+/swapfile none swap defaults 0 0") {
		t.Fatalf("diff lacks the fstab line:\n%s", d.Diff)
	}
	if calls := fake.Calls(); len(calls) != 0 {
		t.Fatalf("Check ran %q; it must run nothing", calls)
	}
}

func TestSwapApplyRootMode(t *testing.T) {
	t.Parallel()
	env, fake := swapEnv(t)
	var mu sync.Mutex
	var progress []string
	env.Progress = func(s string) { mu.Lock(); progress = append(progress, s); mu.Unlock() }
	fake.On("mkswap ", fakeMkswap)
	ctx := context.Background()
	if err := (Swap{}).Apply(ctx, env); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(env.Root, ".swapfile.ccboot-new")
	if got := fake.Calls(); !slices.Equal(got, []string{"mkswap " + tmp}) {
		t.Fatalf("calls %q, want only mkswap on the temp file (no swapon under --root)", got)
	}
	if !slices.Contains(progress, "creating 16 MiB /swapfile") {
		t.Fatalf("progress %q lacks the creating line", progress)
	}
	p := filepath.Join(env.Root, "swapfile")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Size() != testSwapBytes || fi.Mode().Perm() != 0o600 || st.Uid != 0 || st.Gid != 0 {
		t.Fatalf("swap file: size %d mode %v owner %d:%d; want %d 0600 0:0", fi.Size(), fi.Mode().Perm(), st.Uid, st.Gid, testSwapBytes)
	}
	// Real blocks, not a sparse file: swapon refuses files with holes.
	if st.Blocks*512 < testSwapBytes {
		t.Fatalf("swap file has %d bytes allocated, want %d (no holes)", st.Blocks*512, testSwapBytes)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp file left behind: %v", err)
	}
	fstab, err := os.ReadFile(filepath.Join(env.Root, "etc/fstab"))
	if err != nil || string(fstab) != "/swapfile none swap defaults 0 0\n" {
		t.Fatalf("fstab %q, %v", fstab, err)
	}
	d, err := Swap{}.Check(ctx, env)
	if err != nil || !d.InSync() {
		t.Fatalf("after Apply: %v, %q; want in sync", err, d.Changes)
	}
	// A second Apply changes nothing and runs nothing.
	ino := inode(t, p)
	if err := (Swap{}).Apply(ctx, env); err != nil {
		t.Fatal(err)
	}
	if n := len(fake.Calls()); n != 1 || inode(t, p) != ino {
		t.Fatalf("second Apply ran %d commands or replaced the file", n-1)
	}
}

// TestSwapRealMkswap runs the whole Apply with the real mkswap, so the
// header reader is checked against what util-linux actually writes.
func TestSwapRealMkswap(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("mkswap"); err != nil {
		t.Skip("mkswap not installed (util-linux); the fake-header tests still run")
	}
	env, _ := swapEnv(t)
	env.Run = &runner.Exec{}
	ctx := context.Background()
	if err := (Swap{}).Apply(ctx, env); err != nil {
		t.Fatal(err)
	}
	ok, err := hasSwapHeader(env.Sys, "swapfile", testSwapBytes)
	if err != nil || !ok {
		t.Fatalf("real mkswap output not accepted: %v, %v", ok, err)
	}
	// The size check in the header is real: the same header does not pass
	// for a file of another size.
	if ok, _ := hasSwapHeader(env.Sys, "swapfile", 2*testSwapBytes); ok {
		t.Fatal("header accepted for the wrong size")
	}
	d, err := Swap{}.Check(ctx, env)
	if err != nil || !d.InSync() {
		t.Fatalf("after real Apply: %v, %q; want in sync", err, d.Changes)
	}
}

func TestSwapHeaderOK(t *testing.T) {
	t.Parallel()
	page := os.Getpagesize()
	size := int64(16 << 20)
	good := func() []byte {
		h := make([]byte, page)
		binary.NativeEndian.PutUint32(h[1024:], 1)
		binary.NativeEndian.PutUint32(h[1028:], uint32(size/int64(page)-1))
		copy(h[page-10:], swapMagic)
		return h
	}
	tests := []struct {
		name   string
		mutate func([]byte) []byte
		want   bool
	}{
		{"good", func(h []byte) []byte { return h }, true},
		{"no signature", func(h []byte) []byte { copy(h[page-10:], "0000000000"); return h }, false},
		{"old SWAP-SPACE", func(h []byte) []byte { copy(h[page-10:], "SWAP-SPACE"); return h }, false},
		{"version 2", func(h []byte) []byte { binary.NativeEndian.PutUint32(h[1024:], 2); return h }, false},
		{"stale last_page", func(h []byte) []byte { binary.NativeEndian.PutUint32(h[1028:], 100); return h }, false},
		{"short file", func(h []byte) []byte { return h[:page/2] }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := swapHeaderOK(bytes.NewReader(tt.mutate(good())), page, size)
			if err != nil || got != tt.want {
				t.Fatalf("swapHeaderOK = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestSwapWrongSizeRebuildRootMode(t *testing.T) {
	t.Parallel()
	env, fake := swapEnv(t)
	fake.On("mkswap ", fakeMkswap)
	p := makeSwapFile(t, env.Root, "swapfile", 8<<20, 0o600)
	writeTestFile(t, env.Root, "etc/fstab", "/swapfile none swap defaults 0 0\n", 0o644)
	ctx := context.Background()
	d, err := Swap{}.Check(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"rebuild " + p + ": it is 8 MiB, want 16 MiB"}
	if !slices.Equal(d.Changes, want) {
		t.Fatalf("changes %q, want %q", d.Changes, want)
	}
	if err := (Swap{}).Apply(ctx, env); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Size() != testSwapBytes {
		t.Fatalf("after rebuild: %v, %v", fi, err)
	}
	if fake.CallsWithPrefix("swapoff") != 0 || fake.CallsWithPrefix("mkswap") != 1 {
		t.Fatalf("calls %q: want one mkswap and no swapoff under --root", fake.Calls())
	}
	if d, err := (Swap{}).Check(ctx, env); err != nil || !d.InSync() {
		t.Fatalf("after Apply: %v, %q", err, d.Changes)
	}
}

// TestSwapLiveRebuildSequence drives the live path with a fake: an active
// swap file of the wrong size is turned off, rebuilt and turned on again.
func TestSwapLiveRebuildSequence(t *testing.T) {
	t.Parallel()
	env, fake := swapEnv(t)
	p := makeSwapFile(t, env.Root, "swapfile", 8<<20, 0o600)
	writeTestFile(t, env.Root, "etc/fstab", "/swapfile none swap defaults 0 0\n", 0o644)
	h := liveHost(t, p)
	fake.On("swapoff "+p, func(runner.Cmd) (runner.Result, error) { setProcSwaps(t, h.proc); return runner.Result{}, nil })
	fake.On("mkswap ", fakeMkswap)
	fake.On("swapon "+p, func(runner.Cmd) (runner.Result, error) { setProcSwaps(t, h.proc, p); return runner.Result{}, nil })
	ctx := context.Background()
	if err := (Swap{}).apply(ctx, env, h); err != nil {
		t.Fatal(err)
	}
	want := []string{"swapoff " + p, "mkswap " + filepath.Join(env.Root, ".swapfile.ccboot-new"), "swapon " + p}
	if got := fake.Calls(); !slices.Equal(got, want) {
		t.Fatalf("calls %q, want %q", got, want)
	}
	if d, err := (Swap{}).check(ctx, env, h); err != nil || !d.InSync() {
		t.Fatalf("after Apply: %v, %q", err, d.Changes)
	}
}

func TestSwapLiveInactive(t *testing.T) {
	t.Parallel()
	env, fake := swapEnv(t)
	p := makeSwapFile(t, env.Root, "swapfile", testSwapBytes, 0o600)
	writeTestFile(t, env.Root, "etc/fstab", "/swapfile none swap defaults 0 0\n", 0o644)
	h := liveHost(t, "/some/other/swap")
	ctx := context.Background()
	d, err := Swap{}.check(ctx, env, h)
	if err != nil || !slices.Equal(d.Changes, []string{"swapon " + p}) {
		t.Fatalf("check: %v, %q; want only swapon", err, d.Changes)
	}
	// Root mode never reports activity: it cannot fix it.
	if d, err := (Swap{}).Check(ctx, env); err != nil || !d.InSync() {
		t.Fatalf("root-mode check: %v, %q; want in sync", err, d.Changes)
	}
	fake.OnOutput("swapon "+p, "")
	if err := (Swap{}).apply(ctx, env, h); err != nil {
		t.Fatal(err)
	}
	if got := fake.Calls(); !slices.Equal(got, []string{"swapon " + p}) {
		t.Fatalf("calls %q, want only swapon", got)
	}
}

func TestSwapModeAndOwnerFix(t *testing.T) {
	t.Parallel()
	env, fake := swapEnv(t)
	p := makeSwapFile(t, env.Root, "swapfile", testSwapBytes, 0o644)
	if err := os.Chown(p, testUID, testGID); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, env.Root, "etc/fstab", "/swapfile none swap defaults 0 0\n", 0o644)
	ctx := context.Background()
	d, err := Swap{}.Check(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"chmod " + p + " 0600 (is 0644)", "chown " + p + " root:root (is 1000:1000)"}
	if !slices.Equal(d.Changes, want) {
		t.Fatalf("changes %q, want %q", d.Changes, want)
	}
	ino := inode(t, p)
	if err := (Swap{}).Apply(ctx, env); err != nil {
		t.Fatal(err)
	}
	if calls := fake.Calls(); len(calls) != 0 || inode(t, p) != ino {
		t.Fatalf("mode fix ran %q or replaced the file; want chmod/chown in place", calls)
	}
	if d, err := (Swap{}).Check(ctx, env); err != nil || !d.InSync() {
		t.Fatalf("after Apply: %v, %q", err, d.Changes)
	}
}

func TestSwapOffLeavesFileAlone(t *testing.T) {
	t.Parallel()
	env, fake := newTestEnv(t)
	env.Config.SwapBytes = 0
	p := makeSwapFile(t, env.Root, "swapfile", 8<<20, 0o644)
	ctx := context.Background()
	d, err := Swap{}.Check(ctx, env)
	if err != nil || !d.InSync() {
		t.Fatalf("check: %v, %q; want in sync", err, d.Changes)
	}
	if len(d.Notes) != 1 || !strings.Contains(d.Notes[0], "swap management off") {
		t.Fatalf("notes %q, want the off note", d.Notes)
	}
	if err := (Swap{}).Apply(ctx, env); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Size() != 8<<20 || fi.Mode().Perm() != 0o644 {
		t.Fatalf("swap off touched the existing file: %v, %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(env.Root, "etc/fstab")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("swap off wrote fstab: %v", err)
	}
	if calls := fake.Calls(); len(calls) != 0 {
		t.Fatalf("swap off ran %q", calls)
	}
}

func TestSwapSparseFileRebuilt(t *testing.T) {
	t.Parallel()
	env, fake := swapEnv(t)
	fake.On("mkswap ", fakeMkswap)
	p := filepath.Join(env.Root, "swapfile")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, testSwapBytes); err != nil { // all hole
		t.Fatal(err)
	}
	if err := writeSwapHeader(p); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, env.Root, "etc/fstab", "/swapfile none swap defaults 0 0\n", 0o644)
	ctx := context.Background()
	d, err := Swap{}.Check(ctx, env)
	if err != nil || !slices.Equal(d.Changes, []string{"rebuild " + p + ": it has holes, which swapon refuses"}) {
		t.Fatalf("check: %v, %q", err, d.Changes)
	}
	if err := (Swap{}).Apply(ctx, env); err != nil {
		t.Fatal(err)
	}
	if d, err := (Swap{}).Check(ctx, env); err != nil || !d.InSync() {
		t.Fatalf("after Apply: %v, %q", err, d.Changes)
	}
}

func TestSwapRefusesNonRegular(t *testing.T) {
	t.Parallel()
	env, _ := swapEnv(t)
	if err := os.Mkdir(filepath.Join(env.Root, "swapfile"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Swap{}.Check(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "is a directory") || !strings.Contains(err.Error(), "[swap] path") {
		t.Fatalf("err = %v, want a directory refusal naming [swap] path", err)
	}
}

func TestSwapMkswapFailureLeavesNothing(t *testing.T) {
	t.Parallel()
	env, fake := swapEnv(t)
	fake.OnExit("mkswap ", 1, "mkswap: error: swap area needs to be at least 40 KiB")
	err := Swap{}.Apply(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "mkswap") {
		t.Fatalf("err = %v, want the mkswap failure", err)
	}
	for _, name := range []string{"swapfile", ".swapfile.ccboot-new", "etc/fstab"} {
		if _, err := os.Stat(filepath.Join(env.Root, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after a failed build: %v", name, err)
		}
	}
}

// TestSwapDiskFull builds the swap file on a 4 MiB tmpfs (the zero-writing
// path; the other Apply tests run on the temp dir's filesystem, ext4 in CI,
// which takes the fallocate path and is asserted hole-free): the build fails
// with ENOSPC, the partial temp file is removed and fstab is untouched.
func TestSwapDiskFull(t *testing.T) {
	t.Parallel()
	env, fake := swapEnv(t)
	fake.On("mkswap ", fakeMkswap)
	small := filepath.Join(env.Root, "small")
	if err := os.Mkdir(small, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", small, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v); needs root with CAP_SYS_ADMIN", err)
	}
	t.Cleanup(func() { unix.Unmount(small, unix.MNT_DETACH) })
	env.Config.SwapPath = "/small/swapfile"
	fstab := "UUID=77aa0000 / ext4 defaults 0 1\n"
	writeTestFile(t, env.Root, "etc/fstab", fstab, 0o644)

	err := Swap{}.Apply(context.Background(), env)
	if err == nil {
		t.Fatal("Apply succeeded on a full filesystem")
	}
	for _, want := range []string{"no space left on device", "free 16 MiB", "set [swap] size = off"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	entries, _ := os.ReadDir(small)
	if len(entries) != 0 {
		t.Errorf("left behind on the full filesystem: %v", entries)
	}
	if got, _ := os.ReadFile(filepath.Join(env.Root, "etc/fstab")); string(got) != fstab {
		t.Errorf("fstab changed to %q", got)
	}
	if n := fake.CallsWithPrefix("mkswap"); n != 0 {
		t.Errorf("mkswap ran %d times after allocation failed", n)
	}
}

func TestSwapActiveParsesProcSwaps(t *testing.T) {
	t.Parallel()
	p := filepath.Join("testdata", "swap", "proc-swaps")
	for file, want := range map[string]bool{
		"/swap file":      true, // written as /swap\040file by the kernel
		"/dev/nvme0n1p3":  true,
		"/swapfile":       false,
		"/old.swap":       false, // a replaced file still in use shows as "(deleted)"
		"Filename":        false, // the header is not an entry
		"/swap\\040file":  false,
		"/dev/nvme0n1p30": false,
	} {
		got, err := swapActive(p, file)
		if err != nil || got != want {
			t.Errorf("swapActive(%q) = %v, %v; want %v", file, got, err, want)
		}
	}
}

func TestEditFstab(t *testing.T) {
	t.Parallel()
	const line = "/swapfile none swap defaults 0 0\n"
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", line},
		{"append", "UUID=1 / ext4 defaults 0 1\n", "UUID=1 / ext4 defaults 0 1\n" + line},
		{"no trailing newline", "UUID=1 / ext4 defaults 0 1", "UUID=1 / ext4 defaults 0 1\n" + line},
		{"already there", "UUID=1 / ext4 defaults 0 1\n" + line, "UUID=1 / ext4 defaults 0 1\n" + line},
		{"tabs and spaces kept", "/swapfile\t none   swap\tdefaults\t0 0\n", "/swapfile\t none   swap\tdefaults\t0 0\n"},
		{"leading blanks kept", "  /swapfile none swap sw\n", "  /swapfile none swap sw\n"},
		{"operator options kept", "/swapfile swap swap pri=10,discard 0 0\n", "/swapfile swap swap pri=10,discard 0 0\n"},
		{"noauto replaced in place", "a b c d\n/swapfile none swap noauto 0 0\nz y x w\n", "a b c d\n" + line + "z y x w\n"},
		{"bad pass replaced", "/swapfile none swap defaults 0 2\n", line},
		{"bad mount point replaced", "/swapfile /mnt swap defaults 0 0\n", line},
		{"no options replaced", "/swapfile none swap\n", line},
		{"last line without newline replaced", "x y z w\n/swapfile none swap noauto", "x y z w\n" + line},
		{"last line without newline kept", "x y z w\n/swapfile none swap sw", "x y z w\n/swapfile none swap sw"},
		{"duplicates removed", line + "# keep me\n/swapfile  none swap sw 0 0\n" + line, line + "# keep me\n"},
		{"duplicate without newline removed", line + "/swapfile none swap sw", line},
		{"commented line is not ours", "#/swapfile none swap defaults 0 0\n", "#/swapfile none swap defaults 0 0\n" + line},
		{"indented comment is not ours", "  # /swapfile none swap defaults 0 0\n", "  # /swapfile none swap defaults 0 0\n" + line},
		{"other swap files untouched", "/swapfile2 none swap defaults 0 0\n/var/swapfile none swap sw 0 0\n", "/swapfile2 none swap defaults 0 0\n/var/swapfile none swap sw 0 0\n" + line},
		{"UUID swap untouched", "UUID=77aa none swap sw 0 0\n", "UUID=77aa none swap sw 0 0\n" + line},
		{"same path other type untouched", "/swapfile /mnt/x ext4 loop 0 0\n", "/swapfile /mnt/x ext4 loop 0 0\n" + line},
		{"blank lines kept", "\n\n", "\n\n" + line},
		{"octal escaped path recognised", "/swap\\146ile none swap sw 0 0\n", "/swap\\146ile none swap sw 0 0\n"},
		{"crlf line kept", "/swapfile none swap defaults 0 0\r\n", "/swapfile none swap defaults 0 0\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, changed := editFstab([]byte(tt.in), "/swapfile")
			if string(got) != tt.want {
				t.Fatalf("editFstab(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
			if changed != (tt.in != tt.want) {
				t.Fatalf("changed = %v, want %v", changed, tt.in != tt.want)
			}
		})
	}
}

func TestEditFstabEscapesPath(t *testing.T) {
	t.Parallel()
	got, _ := editFstab(nil, "/my swap\\file")
	if want := "/my\\040swap\\134file none swap defaults 0 0\n"; string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if again, changed := editFstab(got, "/my swap\\file"); changed || !bytes.Equal(again, got) {
		t.Fatalf("escaped line not recognised on the next run: %q", again)
	}
}

func TestEditFstabGolden(t *testing.T) {
	t.Parallel()
	in, err := os.ReadFile("testdata/swap/fstab-debian")
	if err != nil {
		t.Fatal(err)
	}
	got, changed := editFstab(in, "/swapfile")
	if !changed {
		t.Fatal("duplicate swap line not removed")
	}
	golden := "testdata/swap/fstab-debian.golden"
	if *updateGolden {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("editFstab mismatch (-want +got):\n%s", bootstrap.UnifiedDiff("fstab", want, got))
	}
}

// FuzzEditFstab checks the properties the step relies on for any input:
// applying twice equals applying once, the result has exactly one swap
// line for the path, and every other line survives in order, byte for byte.
func FuzzEditFstab(f *testing.F) {
	seeds := []string{
		"",
		"/swapfile none swap defaults 0 0\n",
		"/swapfile none swap defaults 0 0",
		"UUID=1 / ext4 defaults 0 1\n#/swapfile none swap defaults 0 0\n",
		"/swapfile\tnone\tswap\tsw\t0\t0\n/swapfile none swap defaults 0 0\n",
		"/swapfile none swap noauto 0 0\r\nx\n\n",
		"/swap\\040file none swap sw 0 0\n",
		"  \t\n#\n/swapfile /mnt ext4 loop 0 0",
	}
	for _, s := range seeds {
		f.Add([]byte(s), "/swapfile")
	}
	f.Add([]byte("/swap\\040file none swap sw 0 0\n"), "/swap file")
	f.Fuzz(func(t *testing.T, content []byte, path string) {
		if !strings.HasPrefix(path, "/") {
			t.Skip("[swap] path is always absolute")
		}
		once, changed := editFstab(content, path)
		if changed != !bytes.Equal(once, content) {
			t.Fatalf("changed = %v but output differs = %v", changed, !bytes.Equal(once, content))
		}
		twice, changed2 := editFstab(once, path)
		if changed2 || !bytes.Equal(once, twice) {
			t.Fatalf("not idempotent:\n once %q\ntwice %q", once, twice)
		}
		var ours int
		for _, l := range strings.Split(string(once), "\n") {
			if isSwapLineFor(fstabFields([]byte(l)), path) {
				ours++
			}
		}
		if ours != 1 {
			t.Fatalf("%d swap lines for %q in %q, want 1", ours, path, once)
		}
		if a, b := otherLines(content, path), otherLines(once, path); !slices.Equal(a, b) {
			t.Fatalf("other lines changed:\n before %q\n  after %q", a, b)
		}
	})
}

// otherLines are the lines editFstab must keep: everything but swap lines
// for path, without terminators (appending may end a last line).
func otherLines(content []byte, path string) []string {
	var out []string
	for i, l := range strings.Split(string(content), "\n") {
		if isSwapLineFor(fstabFields([]byte(l)), path) {
			continue
		}
		if l == "" && i == strings.Count(string(content), "\n") {
			continue // the empty remainder after a final newline
		}
		out = append(out, l)
	}
	return out
}

// In a container swapon is refused whatever ccboot does; the error says so
// and names the setting that turns swap management off.
func TestSwapInContainerSaysWhy(t *testing.T) {
	t.Parallel()
	env, fake := swapEnv(t)
	p := makeSwapFile(t, env.Root, "swapfile", testSwapBytes, 0o600)
	writeTestFile(t, env.Root, "etc/fstab", "/swapfile none swap defaults 0 0\n", 0o644)
	writeTestFile(t, env.Root, "run/systemd/container", "systemd-nspawn\n", 0o444)
	fake.OnExit("swapon "+p, 255, "swapon: /swapfile: swapon failed: Operation not permitted")
	err := (Swap{}).apply(context.Background(), env, liveHost(t, "/some/other/swap"))
	if err == nil || !strings.Contains(err.Error(), "container (systemd-nspawn)") || !strings.Contains(err.Error(), "[swap] size = off") {
		t.Fatalf("err = %v", err)
	}
}

// TestSwapRefusesNonSwapFile: [swap] path naming a file that is not swap
// (/etc/shadow, in the audit) is refused by Check and Apply alike, and the
// file, fstab and the tools are left alone.
func TestSwapRefusesNonSwapFile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, content string }{
		{"etc/shadow", "root:*:20000:0:99999:7:::\n"},
		{"etc/empty-flag", ""},                   // an empty marker file is not swap either
		{"big", strings.Repeat("data", 8<<20/4)}, // right size, no signature
		{"zeros", string(make([]byte, 64<<10))},  // all zeros past every page size
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, fake := swapEnv(t)
			fake.On("mkswap ", fakeMkswap)
			env.Config.SwapPath = "/" + tc.name
			writeTestFile(t, env.Root, tc.name, tc.content, 0o640)
			p := filepath.Join(env.Root, tc.name)
			ino := inode(t, p)
			ctx := context.Background()
			for _, h := range []host{{}, liveHost(t)} {
				_, err := Swap{}.check(ctx, env, h)
				if err == nil || !strings.Contains(err.Error(), p+" exists and is not a swap file") || !strings.Contains(err.Error(), "[swap] path") {
					t.Fatalf("check (live %v): %v, want a refusal naming the file and [swap] path", h.live, err)
				}
				if err := (Swap{}).apply(ctx, env, h); err == nil || !strings.Contains(err.Error(), "not a swap file") {
					t.Fatalf("apply (live %v): %v, want a refusal", h.live, err)
				}
			}
			if got, _ := os.ReadFile(p); string(got) != tc.content || inode(t, p) != ino {
				t.Fatal("the file was changed")
			}
			if calls := fake.Calls(); len(calls) != 0 {
				t.Fatalf("ran %q", calls)
			}
			if _, err := os.Stat(filepath.Join(env.Root, "etc/fstab")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("fstab written: %v", err)
			}
		})
	}
}

// TestSwapRecognisesSwapFilesItMayRebuild: a swap file made for another
// page size, an old-style one, and one the kernel lists as active without a
// signature this check can see, are swap files: rebuilt, not refused.
func TestSwapRecognisesSwapFilesItMayRebuild(t *testing.T) {
	t.Parallel()
	sig := func(page int, magic string) string {
		b := make([]byte, 8<<20)
		copy(b[page-len(magic):], magic)
		return string(b)
	}
	for _, tc := range []struct {
		name, content string
		active        bool
	}{
		{"64K-page signature", sig(64<<10, swapMagic), false},
		{"16K-page signature", sig(16<<10, swapMagic), false},
		{"old SWAP-SPACE signature", sig(4<<10, "SWAP-SPACE"), false},
		{"in use, signature unreadable", string(make([]byte, 8<<20)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, fake := swapEnv(t)
			fake.On("mkswap ", fakeMkswap)
			writeTestFile(t, env.Root, "swapfile", tc.content, 0o600)
			p := filepath.Join(env.Root, "swapfile")
			var active []string
			if tc.active {
				active = []string{p}
			}
			h := liveHost(t, active...)
			fake.On("swapoff "+p, func(runner.Cmd) (runner.Result, error) { setProcSwaps(t, h.proc); return runner.Result{}, nil })
			fake.On("swapon "+p, func(runner.Cmd) (runner.Result, error) { setProcSwaps(t, h.proc, p); return runner.Result{}, nil })
			ctx := context.Background()
			d, err := Swap{}.check(ctx, env, h)
			if err != nil || len(d.Changes) == 0 || !strings.HasPrefix(d.Changes[0], "rebuild "+p) {
				t.Fatalf("check: %v, %q; want a rebuild", err, d.Changes)
			}
			if err := (Swap{}).apply(ctx, env, h); err != nil {
				t.Fatal(err)
			}
			if d, err := (Swap{}).check(ctx, env, h); err != nil || !d.InSync() {
				t.Fatalf("after apply: %v, %q", err, d.Changes)
			}
		})
	}
}
