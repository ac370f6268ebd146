package fsroot

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func openTree(t *testing.T) (*Tree, string) {
	t.Helper()
	dir := t.TempDir()
	tr, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr, dir
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

var spec = FileSpec{Mode: 0o640, UID: KeepOwner, GID: KeepOwner}

func TestWriteFileIsNoOpWhenUnchanged(t *testing.T) {
	t.Parallel()
	tr, dir := openTree(t)
	changed, err := tr.WriteFile("a.conf", []byte("x=1\n"), spec)
	if err != nil || !changed {
		t.Fatalf("first write: changed=%v err=%v", changed, err)
	}
	p := filepath.Join(dir, "a.conf")
	ino := inode(t, p)
	past := time.Now().Add(-time.Hour)
	os.Chtimes(p, past, past)
	changed, err = tr.WriteFile("a.conf", []byte("x=1\n"), spec)
	if err != nil || changed {
		t.Fatalf("same content: changed=%v err=%v", changed, err)
	}
	fi, _ := os.Stat(p)
	if inode(t, p) != ino || !fi.ModTime().Equal(past) {
		t.Fatal("unchanged write replaced or touched the file")
	}
	if fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", fi.Mode())
	}
	changed, err = tr.WriteFile("a.conf", []byte("x=2\n"), spec)
	if err != nil || !changed || inode(t, p) == ino {
		t.Fatalf("new content: changed=%v err=%v (inode must change: atomic rename)", changed, err)
	}
}

func TestWriteFileFixesModeWithoutRewriting(t *testing.T) {
	t.Parallel()
	tr, dir := openTree(t)
	p := filepath.Join(dir, "a")
	os.WriteFile(p, []byte("same"), 0o666)
	os.Chmod(p, 0o666)
	ino := inode(t, p)
	changed, err := tr.WriteFile("a", []byte("same"), spec)
	if err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o640 || inode(t, p) != ino {
		t.Fatalf("mode %v, inode changed %v", fi.Mode().Perm(), inode(t, p) != ino)
	}
}

func TestWriteFileSetsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	t.Parallel()
	tr, dir := openTree(t)
	if _, err := tr.WriteFile("a", []byte("x"), FileSpec{Mode: 0o600, UID: 1234, GID: 4321}); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(dir, "a"))
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 1234 || st.Gid != 4321 {
		t.Fatalf("owner %d:%d", st.Uid, st.Gid)
	}
}

func TestRefusesSymlinks(t *testing.T) {
	t.Parallel()
	tr, dir := openTree(t)
	outside := t.TempDir()
	secret := filepath.Join(outside, "shadow")
	os.WriteFile(secret, []byte("root:*:"), 0o600)
	os.Symlink(secret, filepath.Join(dir, "config"))
	os.Symlink(outside, filepath.Join(dir, ".aws"))
	os.Mkdir(filepath.Join(dir, "real"), 0o755)
	os.Symlink("real", filepath.Join(dir, "inside-link"))
	for _, name := range []string{"config", ".aws/config", "inside-link/x"} {
		_, err := tr.WriteFile(name, []byte("pwned"), spec)
		if !errors.Is(err, ErrSymlink) {
			t.Errorf("WriteFile(%s) err = %v, want ErrSymlink", name, err)
		}
		if err != nil && (!strings.Contains(err.Error(), "remove the link") || strings.Contains(err.Error(), "\n")) {
			t.Errorf("error is not a one-line fix: %q", err)
		}
	}
	if _, err := tr.EnsureDir(".aws", FileSpec{Mode: 0o700, UID: KeepOwner, GID: KeepOwner}); !errors.Is(err, ErrSymlink) {
		t.Errorf("EnsureDir through a link: %v", err)
	}
	if _, err := tr.ReadFile("config"); !errors.Is(err, ErrSymlink) {
		t.Errorf("ReadFile of a link: %v", err)
	}
	got, _ := os.ReadFile(secret)
	entries, _ := os.ReadDir(outside)
	if string(got) != "root:*:" || len(entries) != 1 {
		t.Fatalf("something was written outside the tree: %q, %d entries", got, len(entries))
	}
}

func TestRefusesFIFOWithoutBlocking(t *testing.T) {
	t.Parallel()
	tr, dir := openTree(t)
	if err := syscall.Mkfifo(filepath.Join(dir, ".bashrc"), 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	done := make(chan error, 2)
	go func() {
		_, err := tr.ReadFile(".bashrc")
		done <- err
		_, err = tr.WriteFile(".bashrc", []byte("x"), spec)
		done <- err
	}()
	for i := 0; i < 2; i++ {
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotRegular) {
				t.Fatalf("err = %v, want ErrNotRegular", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("blocked on a FIFO")
		}
	}
}

func TestRelativeLinkOutOfTreeCannotEscape(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	home := filepath.Join(parent, "home")
	os.Mkdir(home, 0o755)
	os.Mkdir(filepath.Join(parent, "etc"), 0o755)
	os.Symlink("../etc", filepath.Join(home, "sub"))
	tr, err := Open(home)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	// Even the raw os.Root operations refuse the escape.
	if f, err := tr.OpenFile("sub/x", os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
		f.Close()
		t.Fatal("created a file through ../ out of the tree")
	}
	if _, err := os.Stat(filepath.Join(parent, "etc/x")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("file appeared outside the tree")
	}
}

func TestStaleTempFilesAreRemoved(t *testing.T) {
	t.Parallel()
	tr, dir := openTree(t)
	stale := filepath.Join(dir, ".a"+tempMarker+"deadbeef")
	os.WriteFile(stale, []byte("half"), 0o600)
	if _, err := tr.WriteFile("a", []byte("whole"), spec); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("stale temp file left behind")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("entries after write: %d", len(entries))
	}
}

func TestEnsureDir(t *testing.T) {
	t.Parallel()
	tr, dir := openTree(t)
	d := FileSpec{Mode: 0o700, UID: KeepOwner, GID: KeepOwner}
	changed, err := tr.EnsureDir("a/b", d)
	if err != nil || !changed {
		t.Fatalf("create: %v %v", changed, err)
	}
	changed, err = tr.EnsureDir("a/b", d)
	if err != nil || changed {
		t.Fatalf("second: %v %v", changed, err)
	}
	os.Chmod(filepath.Join(dir, "a/b"), 0o755)
	if changed, _ := tr.EnsureDir("a/b", d); !changed {
		t.Fatal("mode drift not fixed")
	}
	os.WriteFile(filepath.Join(dir, "f"), nil, 0o644)
	if _, err := tr.EnsureDir("f", d); err == nil {
		t.Fatal("file accepted as directory")
	}
	if _, err := tr.EnsureDir("f/g", d); err == nil {
		t.Fatal("a file accepted as a parent directory")
	}
}

// Creating a directory under an existing one leaves the existing one's mode
// alone: var/lib must not become 0700 because var/lib/ccboot is.
func TestEnsureDirLeavesExistingParents(t *testing.T) {
	t.Parallel()
	tr, dir := openTree(t)
	tmp := filepath.Join(dir, "var/tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o777|fs.ModeSticky); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(tmp)
	if _, err := tr.EnsureDir("var/tmp/swap/dir", FileSpec{Mode: 0o700, UID: KeepOwner, GID: KeepOwner}); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(tmp)
	if after.Mode() != before.Mode() {
		t.Errorf("existing parent var/tmp: mode %v -> %v", before.Mode(), after.Mode())
	}
	for _, name := range []string{"var/tmp/swap", "var/tmp/swap/dir"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s (created): %v %v, want 0700", name, fi, err)
		}
	}
}

func TestReadInfoFollowsLinksInsideTheTreeOnly(t *testing.T) {
	t.Parallel()
	tr, dir := openTree(t)
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.MkdirAll(filepath.Join(dir, "usr/lib"), 0o755)
	os.WriteFile(filepath.Join(dir, "usr/lib/os-release"), []byte("ID=debian\n"), 0o644)
	os.Symlink("../usr/lib/os-release", filepath.Join(dir, "etc/os-release"))
	// An absolute link means the same path inside the tree, not the host's.
	os.Symlink("/usr/lib/os-release", filepath.Join(dir, "etc/abs"))
	for _, name := range []string{"etc/os-release", "etc/abs"} {
		if got, err := tr.ReadInfo(name); err != nil || string(got) != "ID=debian\n" {
			t.Errorf("ReadInfo(%s) = %q, %v", name, got, err)
		}
	}
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("host"), 0o644)
	os.Symlink("../../../../../../../.."+outside, filepath.Join(dir, "etc/escape"))
	if got, err := tr.ReadInfo("etc/escape"); err == nil && string(got) == "host" {
		t.Fatal("ReadInfo followed a link out of the tree")
	}
	os.Symlink("loop", filepath.Join(dir, "etc/loop"))
	if _, err := tr.ReadInfo("etc/loop"); err == nil {
		t.Fatal("a link loop was read")
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "etc/fifo"), 0o644); err == nil {
		if _, err := tr.ReadInfo("etc/fifo"); !errors.Is(err, ErrNotRegular) {
			t.Fatalf("FIFO: %v", err)
		}
	}
	// Managed reads stay strict.
	if _, err := tr.ReadFile("etc/os-release"); !errors.Is(err, ErrSymlink) {
		t.Fatalf("ReadFile through a link: %v", err)
	}
}

func TestGuardedRefusesHardLinksAndOversizedFiles(t *testing.T) {
	t.Parallel()
	tr, dir := openTree(t)
	g := tr.Guarded()
	os.WriteFile(filepath.Join(dir, "secret"), []byte("root only\n"), 0o600)
	if err := os.Link(filepath.Join(dir, "secret"), filepath.Join(dir, "linked")); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.ReadFile("linked"); err != nil {
		t.Errorf("unguarded tree: %v", err)
	}
	if _, err := g.ReadFile("linked"); !errors.Is(err, ErrHardLinked) || !strings.Contains(err.Error(), "hard links") {
		t.Errorf("guarded read of a hard link: %v", err)
	}
	if _, err := g.WriteFile("linked", []byte("x"), FileSpec{Mode: 0o644, UID: 1000, GID: 1000}); !errors.Is(err, ErrHardLinked) {
		t.Errorf("guarded write of a hard link: %v", err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "secret")); fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("the other name changed: %v", fi.Mode())
	}

	big := filepath.Join(dir, "big")
	os.WriteFile(big, []byte("x"), 0o644)
	if err := os.Truncate(big, 3<<30); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := g.ReadFile("big"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("guarded read of 3 GiB: %v", err)
	}
	if _, err := g.WriteFile("big", []byte("x"), FileSpec{Mode: 0o644, UID: KeepOwner, GID: KeepOwner}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("guarded write over 3 GiB: %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("refusing took %s", time.Since(start))
	}
	if fi, _ := os.Stat(big); fi.Size() != 3<<30 {
		t.Errorf("big file changed: %d", fi.Size())
	}
}

func TestGuardedWriteRefusesAnotherOwner(t *testing.T) {
	t.Parallel()
	tr, dir := openTree(t)
	p := filepath.Join(dir, "config")
	os.WriteFile(p, []byte("same"), 0o600) // root's
	_, err := tr.Guarded().WriteFile("config", []byte("same"), FileSpec{Mode: 0o644, UID: 1000, GID: 1000})
	if !errors.Is(err, ErrOwner) {
		t.Fatalf("err = %v, want ErrOwner", err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("root's file was changed: %v", fi.Mode())
	}
	// The same file owned by the user: fixed in place through the descriptor.
	os.Chown(p, 1000, 0)
	ino := inode(t, p)
	if changed, err := tr.Guarded().WriteFile("config", []byte("same"), FileSpec{Mode: 0o644, UID: 1000, GID: 1000}); err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	if inode(t, p) != ino {
		t.Error("a metadata fix replaced the file")
	}
}

// TestReplaceRefusesASwappedName: the rename happens only while the name
// still leads to the inode that was opened.
func TestReplaceRefusesASwappedName(t *testing.T) {
	t.Parallel()
	tr, dir := openTree(t)
	p := filepath.Join(dir, "config")
	os.WriteFile(p, []byte("old"), 0o600)
	f, fi, err := tr.Guarded().openChecked("config")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	os.WriteFile(filepath.Join(dir, "other"), []byte("other"), 0o600)
	if err := os.Rename(filepath.Join(dir, "other"), p); err != nil {
		t.Fatal(err)
	}
	if err := tr.replace("config", []byte("new"), spec, fi); !errors.Is(err, ErrChanged) {
		t.Fatalf("err = %v, want ErrChanged", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "other" {
		t.Errorf("swapped file replaced: %q", b)
	}
	if err := tr.replace("absent", []byte("new"), spec, fi); !errors.Is(err, ErrChanged) {
		t.Errorf("opened file gone: err = %v, want ErrChanged", err)
	}
	os.WriteFile(filepath.Join(dir, "appeared"), []byte("user's"), 0o600)
	if err := tr.replace("appeared", []byte("new"), spec, nil); !errors.Is(err, ErrChanged) {
		t.Errorf("a file appeared: err = %v, want ErrChanged", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), tempMarker) {
			t.Errorf("temp file left: %s", e.Name())
		}
	}
}

func TestQuoteBoundsAndEscapes(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 4000) + "\x1b]0;owned\x07"
	q := Quote(long)
	if len(q) > MaxQuoted+40 || strings.ContainsAny(q, "\x1b\x07") || !strings.Contains(q, "bytes)") {
		t.Errorf("Quote(long) = %q", q)
	}
	if q := Quote("a\x1b[2Jb"); q != `"a\x1b[2Jb"` {
		t.Errorf("Quote = %s", q)
	}
}

// TestEnsureDirRecordsBeforeTheNameAppears: with a Created hook, the
// directory is recorded while it still has a temp name, so no root-owned
// unrecorded directory ever stands under the final name; a killed run's
// empty temp directory is removed by the next creation.
func TestEnsureDirRecordsBeforeTheNameAppears(t *testing.T) {
	t.Parallel()
	tr, dir := openTree(t)
	g := tr.Guarded()
	stale := filepath.Join(dir, "..aws"+tempMarker+"dead") // the temp name of .aws
	os.Mkdir(stale, 0o700)
	var recorded fs.FileInfo
	h := DirHooks{Created: func(name string, fi fs.FileInfo) error {
		if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s exists before it is recorded", name)
		}
		recorded = fi
		return nil
	}}
	changed, err := g.EnsureDirWith(".aws", FileSpec{Mode: 0o700, UID: 1000, GID: 1000}, h)
	if err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	fi, err := os.Lstat(filepath.Join(dir, ".aws"))
	if err != nil || recorded == nil || !os.SameFile(fi, recorded) {
		t.Fatalf("recorded %v, created %v (%v)", recorded, fi, err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1000 || fi.Mode().Perm() != 0o700 {
		t.Errorf("owner %d mode %v", st.Uid, fi.Mode())
	}
	if _, err := os.Lstat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temp directory left: %v", err)
	}
	// Root-owned and not adoptable: refused, unchanged.
	os.Chown(filepath.Join(dir, ".aws"), 0, 0)
	if _, err := g.EnsureDirWith(".aws", FileSpec{Mode: 0o700, UID: 1000, GID: 1000}, h); !errors.Is(err, ErrOwner) {
		t.Errorf("root-owned: err = %v, want ErrOwner", err)
	}
	h.Adopt = func(string, fs.FileInfo) bool { return true }
	if _, err := g.EnsureDirWith(".aws", FileSpec{Mode: 0o700, UID: 1000, GID: 1000}, h); err != nil {
		t.Errorf("adoptable and empty: %v", err)
	}
	os.Chown(filepath.Join(dir, ".aws"), 0, 0)
	os.WriteFile(filepath.Join(dir, ".aws/credentials"), []byte("x"), 0o600)
	if _, err := g.EnsureDirWith(".aws", FileSpec{Mode: 0o700, UID: 1000, GID: 1000}, h); !errors.Is(err, ErrOwner) {
		t.Errorf("adoptable but not empty: err = %v, want ErrOwner", err)
	}
}
