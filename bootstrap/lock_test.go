package bootstrap

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

// The run lock is root's alone: a directory 0700 and a file 0600 owned by
// this user; an older, looser one of our own is tightened, one owned by
// someone else is refused.
func TestLockIsPrivate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sys, err := fsroot.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	// A loose directory and file from before: repaired, not refused.
	if err := os.MkdirAll(filepath.Join(dir, "run/ccboot"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "run"), 0o751); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "run/ccboot/lock"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := AcquireLock(context.Background(), sys, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	// /run itself keeps its mode.
	for name, want := range map[string]os.FileMode{"run": 0o751, "run/ccboot": 0o700, "run/ccboot/lock": 0o600} {
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want || int(fi.Sys().(*syscall.Stat_t).Uid) != os.Geteuid() {
			t.Errorf("%s: mode %v uid %d, want %v owned by %d", name, fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Uid, want, os.Geteuid())
		}
	}
}

func TestLockRefusesForeignOrLinked(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the lock directory another owner")
	}
	cases := map[string]func(t *testing.T, dir string){
		"directory owned by nobody": func(t *testing.T, dir string) {
			mkdir(t, filepath.Join(dir, "run/ccboot"))
			if err := os.Chown(filepath.Join(dir, "run/ccboot"), 65534, 65534); err != nil {
				t.Fatal(err)
			}
		},
		"directory is a symlink": func(t *testing.T, dir string) {
			mkdir(t, filepath.Join(dir, "elsewhere"))
			mkdir(t, filepath.Join(dir, "run"))
			if err := os.Symlink("../elsewhere", filepath.Join(dir, "run/ccboot")); err != nil {
				t.Fatal(err)
			}
		},
		"file owned by nobody": func(t *testing.T, dir string) {
			mkdir(t, filepath.Join(dir, "run/ccboot"))
			p := filepath.Join(dir, "run/ccboot/lock")
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(p, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		},
		"file hard-linked elsewhere": func(t *testing.T, dir string) {
			mkdir(t, filepath.Join(dir, "run/ccboot"))
			if err := os.WriteFile(filepath.Join(dir, "shadow"), []byte("secret"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Link(filepath.Join(dir, "shadow"), filepath.Join(dir, "run/ccboot/lock")); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, plant := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			plant(t, dir)
			sys, err := fsroot.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer sys.Close()
			l, err := AcquireLock(context.Background(), sys, time.Second, nil)
			if err == nil {
				l.Release()
				t.Fatal("took a lock someone else controls")
			}
			if !strings.Contains(err.Error(), "run/ccboot") || !strings.Contains(err.Error(), "remove it") {
				t.Errorf("error %q does not name the path and the fix", err)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "shadow")); b != nil && string(b) != "secret" {
				t.Errorf("the linked file changed: %q", b)
			}
		})
	}
}

func mkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

// The lock file keeps the last holder's PID. It is named only while that
// process is alive and is ccboot: a live other program or a dead PID is
// "another process", not a PID to go and kill.
func TestLockHolderOnlyLiveCcboot(t *testing.T) {
	t.Parallel()
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Skip("no sleep:", err)
	}
	defer func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() }()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skip("no true:", err)
	}
	for _, tc := range []struct {
		name     string
		recorded int
		want     int
	}{
		{"this program", os.Getpid(), os.Getpid()},
		{"a live process that is not ccboot", sleeper.Process.Pid, 0},
		{"a process that has exited", dead.Process.Pid, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sys, err := fsroot.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer sys.Close()
			f, err := openLock(sys)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString(strconv.Itoa(tc.recorded) + "\n"); err != nil {
				t.Fatal(err)
			}
			_, err = AcquireLock(context.Background(), sys, 200*time.Millisecond, nil)
			var busy *LockBusyError
			if !errors.As(err, &busy) || busy.Holder != tc.want {
				t.Fatalf("err = %v, want LockBusyError with holder %d", err, tc.want)
			}
			if tc.want == 0 && strings.Contains(err.Error(), strconv.Itoa(tc.recorded)) {
				t.Errorf("message names pid %d: %v", tc.recorded, err)
			}
			if held, pid, err := LockHeld(sys); !held || pid != tc.want || err != nil {
				t.Errorf("LockHeld = %v, %d, %v; want true, %d", held, pid, err, tc.want)
			}
		})
	}
}
