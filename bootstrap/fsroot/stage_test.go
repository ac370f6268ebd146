package fsroot

import (
	"os"
	"path/filepath"
	"strings"
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
