package steps

import (
	"os"
	"path/filepath"
	"testing"
)

// Debian and Amazon Linux 2023 ship /etc/os-release as a symbolic link to
// ../usr/lib/os-release; the packages step must read through it.
func TestReadOSReleaseThroughDistroLink(t *testing.T) {
	t.Parallel()
	for _, target := range []string{"../usr/lib/os-release", "/usr/lib/os-release"} {
		env, _ := newTestEnv(t)
		writeTestFile(t, env.Root, "usr/lib/os-release", "ID=amzn\nVERSION_ID=\"2023\"\n", 0o644)
		if err := os.Remove(filepath.Join(env.Root, "etc/os-release")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(env.Root, "etc/os-release")); err != nil {
			t.Fatal(err)
		}
		r, err := readOSRelease(env)
		if err != nil {
			t.Fatalf("link to %s: %v", target, err)
		}
		if r.ID != "amzn" || r.VersionID != "2023" {
			t.Errorf("link to %s: read %+v, want amzn 2023", target, r)
		}
	}
}

// A link that leaves the root is not followed out of it.
func TestReadOSReleaseLinkOutOfRootRefused(t *testing.T) {
	t.Parallel()
	env, _ := newTestEnv(t)
	outside := filepath.Join(t.TempDir(), "os-release")
	writeTestFile(t, filepath.Dir(outside), "os-release", "ID=escaped\n", 0o644)
	if err := os.Remove(filepath.Join(env.Root, "etc/os-release")); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(filepath.Join(env.Root, "etc"), outside)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(rel, filepath.Join(env.Root, "etc/os-release")); err != nil {
		t.Fatal(err)
	}
	r, err := readOSRelease(env)
	if err == nil && r.ID == "escaped" {
		t.Fatalf("read os-release from outside the root through %s", rel)
	}
}
