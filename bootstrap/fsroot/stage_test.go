package fsroot

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestStageCommitAndAbort(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tr, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := os.WriteFile(filepath.Join(dir, "exe"), []byte("old"), 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := tr.Stage("exe")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("half")); err != nil {
		t.Fatal(err)
	}
	st.Abort()
	if b, _ := os.ReadFile(filepath.Join(dir, "exe")); string(b) != "old" {
		t.Errorf("an aborted stage changed the file: %q", b)
	}
	if names, _ := tr.ReadDirNames("."); len(names) != 1 {
		t.Errorf("an aborted stage left %q", names)
	}
	st, err = tr.Stage("exe")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("new")); err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(0o755); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "exe"))
	if b, _ := os.ReadFile(filepath.Join(dir, "exe")); string(b) != "new" || err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("after commit: %q %v %v", b, fi, err)
	}
}

func TestSwitchLink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tr, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if changed, err := tr.SwitchLink("bin", "a"); err != nil || !changed {
		t.Fatalf("create: %v %v", changed, err)
	}
	if changed, err := tr.SwitchLink("bin", "a"); err != nil || changed {
		t.Errorf("same target: changed=%v err=%v, want a no-op", changed, err)
	}
	if changed, err := tr.SwitchLink("bin", "b"); err != nil || !changed {
		t.Fatalf("switch: %v %v", changed, err)
	}
	if got, _ := os.Readlink(filepath.Join(dir, "bin")); got != "b" {
		t.Errorf("link = %q", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.SwitchLink("file", "b"); err == nil || !strings.Contains(err.Error(), "not a symbolic link") {
		t.Errorf("over a regular file: err = %v", err)
	}
	// A link out of the tree is removed, not followed.
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "pkg"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "pkg", "escape")); err != nil {
		t.Fatal(err)
	}
	if err := tr.RemoveAll("pkg"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Errorf("RemoveAll followed a link out of the tree: %v", err)
	}
}

// TestRemoveAllRefusesLinkedParent: a symbolic link among the parents of
// what RemoveAll deletes is refused, as Stage and SwitchLink refuse it, and
// the link's target (here a directory a user owns, inside the tree) keeps
// its files.
func TestRemoveAllRefusesLinkedParent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tr, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	mine := filepath.Join(dir, "home/user/mine/@scope/pkg")
	if err := os.MkdirAll(mine, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mine, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "usr/lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../home/user/mine", filepath.Join(dir, "usr/lib/node_modules")); err != nil {
		t.Fatal(err)
	}
	err = tr.RemoveAll("usr/lib/node_modules/@scope/pkg")
	if err == nil || !strings.Contains(err.Error(), "usr/lib/node_modules") || !strings.Contains(err.Error(), "remove the link") {
		t.Errorf("RemoveAll through a linked parent: err = %v, want a refusal naming the link", err)
	}
	if _, err := os.Stat(filepath.Join(mine, "keep")); err != nil {
		t.Errorf("the link's target lost its files: %v", err)
	}
	// The link itself, as the last component, is removed, not followed.
	if err := tr.RemoveAll("usr/lib/node_modules"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mine, "keep")); err != nil {
		t.Errorf("removing the link followed it: %v", err)
	}
}

func TestFreeSpace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tr, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := os.MkdirAll(filepath.Join(dir, "a/b"), 0o755); err != nil {
		t.Fatal(err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	got, err := tr.FreeSpace("a/b")
	want := int64(st.Bavail) * int64(st.Bsize)
	// Other tests write beside this one: allow 64 MiB of drift.
	if err != nil || got <= 0 || got < want-64<<20 || got > want+64<<20 {
		t.Errorf("FreeSpace = %d, %v; statfs says %d", got, err, want)
	}
	if err := os.Symlink("a", filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"l", "l/b"} {
		if _, err := tr.FreeSpace(name); err == nil {
			t.Errorf("FreeSpace(%q) through a link: no error", name)
		}
	}
}
