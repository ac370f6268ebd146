package fsroot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"syscall"
)

// Staged is a new file being written beside its final name: a large
// download streams into it, and only Commit makes it visible. Until then
// the name keeps whatever it had, so a failed or killed download never
// leaves a partial file under the final name.
type Staged struct {
	t    *Tree
	f    *os.File
	tmp  string
	name string
	n    int64
	// point names the crash points of this write: "stage" for a download,
	// "replace" for WriteFile (tests pick points by these names).
	point string
}

// Stage creates an empty temp file (O_EXCL, O_NOFOLLOW, mode 0600) in name's
// directory, which must exist. Temp files a killed run left beside name are
// removed first.
func (t *Tree) Stage(name string) (*Staged, error) {
	name = clean(name)
	if err := t.refuseLinkedParents(name); err != nil {
		return nil, err
	}
	return t.stage(name, "stage")
}

// stage is Stage for a name whose parents were already checked.
func (t *Tree) stage(name, point string) (*Staged, error) {
	dir, base := path.Split(name)
	t.removeStaleTemps(dir, base)
	tmp := dir + "." + base + tempMarker + randomSuffix()
	f, err := t.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create temp file for %s: %w", t.Path(name), err)
	}
	return &Staged{t: t, f: f, tmp: tmp, name: name, point: point}, nil
}

// Write appends p to the temp file.
func (s *Staged) Write(p []byte) (int, error) {
	n, err := s.f.Write(p)
	s.n += int64(n)
	if err != nil {
		return n, fmt.Errorf("write %s: %w", s.t.Path(s.name), err)
	}
	return n, nil
}

// Size is how many bytes were written so far.
func (s *Staged) Size() int64 { return s.n }

// Commit flushes the temp file to disk, gives it mode (root keeps owning
// it), and renames it over the final name.
func (s *Staged) Commit(mode fs.FileMode) error { return s.commit(mode, nil) }

// commit is Commit with a last check (nil: none) run just before the
// rename. Without the fsync before the rename a crash could leave a
// zero-length file under the final name.
func (s *Staged) commit(mode fs.FileMode, beforeRename func() error) (err error) {
	defer func() {
		if err != nil {
			s.Abort()
		}
	}()
	CrashPoint(s.point+"/written", s.name)
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", s.t.Path(s.name), err)
	}
	if err := s.f.Chmod(mode.Perm()); err != nil {
		return fmt.Errorf("chmod %s: %w", s.t.Path(s.name), err)
	}
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", s.t.Path(s.name), err)
	}
	CrashPoint(s.point+"/synced", s.name)
	if beforeRename != nil {
		if err := beforeRename(); err != nil {
			return err
		}
	}
	if err := s.t.root.Rename(s.tmp, s.name); err != nil {
		return fmt.Errorf("rename into %s: %w", s.t.Path(s.name), err)
	}
	CrashPoint(s.point+"/renamed", s.name)
	return s.t.syncDir(path.Dir(s.name))
}

// Abort closes and removes the temp file; the final name is untouched.
// Calling it after Commit or twice is harmless.
func (s *Staged) Abort() {
	_ = s.f.Close()
	_ = s.t.root.Remove(s.tmp)
}

// SwitchLink makes name a symbolic link to target, atomically: a new link
// under a temp name is renamed over name, so at every moment name is
// either the old link or the new one. It refuses to replace anything but a
// symbolic link, and does nothing (reporting false) when name already
// points to target.
func (t *Tree) SwitchLink(name, target string) (bool, error) {
	name = clean(name)
	if err := t.refuseLinkedParents(name); err != nil {
		return false, err
	}
	fi, err := t.root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return false, err
	case fi.Mode()&fs.ModeSymlink == 0:
		return false, fmt.Errorf("%s exists and is a %s, not a symbolic link; move it away and rerun", t.Path(name), kindOrFile(fi.Mode()))
	default:
		if cur, err := t.root.Readlink(name); err == nil && cur == target {
			return false, nil
		}
	}
	dir, base := path.Split(name)
	t.removeStaleLinks(dir, base)
	tmp := dir + "." + base + tempMarker + randomSuffix()
	if err := t.root.Symlink(target, tmp); err != nil {
		return false, fmt.Errorf("create link for %s: %w", t.Path(name), err)
	}
	CrashPoint("link/created", name)
	if err := t.root.Rename(tmp, name); err != nil {
		_ = t.root.Remove(tmp)
		return false, fmt.Errorf("rename link into %s: %w", t.Path(name), err)
	}
	CrashPoint("link/renamed", name)
	return true, t.syncDir(dir)
}

// removeStaleLinks deletes temp links a killed SwitchLink left beside base
// (removeStaleTemps only removes regular files).
func (t *Tree) removeStaleLinks(dir, base string) {
	for _, n := range t.staleNames(dir, base) {
		if fi, err := t.root.Lstat(dir + n); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			_ = t.root.Remove(dir + n)
		}
	}
}

func (t *Tree) staleNames(dir, base string) []string {
	d := dir
	if d == "" {
		d = "."
	}
	names, err := t.ReadDirNames(d)
	if err != nil {
		return nil
	}
	var out []string
	prefix := "." + base + tempMarker
	for _, n := range names {
		if len(n) > len(prefix) && n[:len(prefix)] == prefix {
			out = append(out, n)
		}
	}
	return out
}

// ReadDirNames lists a directory inside the tree (without following a
// final symbolic link), sorted.
func (t *Tree) ReadDirNames(name string) ([]string, error) {
	name = clean(name)
	f, err := t.root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := f.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.Name())
	}
	slices.Sort(out) // the directory's own order is arbitrary
	return out, nil
}

// RemoveAll deletes name and everything under it, never following a
// symbolic link out of the tree (links inside are removed, not followed).
// Like Stage and SwitchLink it refuses a symbolic link among name's
// parents: os.Root would follow one that stays in the tree, and a planted
// PREFIX/lib -> /home/USER/... would make root delete the link's target.
func (t *Tree) RemoveAll(name string) error {
	name = clean(name)
	if name == "." {
		return errors.New("fsroot: refusing to remove the whole tree")
	}
	if err := t.refuseLinkedParents(name); err != nil {
		return err
	}
	return t.root.RemoveAll(name)
}

// FreeSpace is how many bytes an unprivileged write may still use on the
// filesystem of dir (statfs f_bavail), so a large download can be refused
// before it fills the disk. dir must be a directory, not a symbolic link,
// with no symbolic link among its parents.
func (t *Tree) FreeSpace(dir string) (int64, error) {
	dir = clean(dir)
	if err := t.refuseLinkedParents(dir + "/x"); err != nil {
		return 0, err
	}
	f, err := t.root.OpenFile(dir, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_DIRECTORY, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var st syscall.Statfs_t
	if err := syscall.Fstatfs(int(f.Fd()), &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", t.Path(dir), err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// OpenFollow opens a regular file for reading, following symbolic links only
// while they stay inside the tree (final link included). For files ccboot
// reads but does not manage, like the root's /bin/sh.
func (t *Tree) OpenFollow(name string) (*os.File, error) {
	name = clean(name)
	for hop := 0; ; hop++ {
		fi, err := t.root.Lstat(name)
		if err != nil {
			return nil, err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			if !fi.Mode().IsRegular() {
				return nil, fmt.Errorf("%s %w (it is a %s)", t.Path(name), ErrNotRegular, Kind(fi.Mode()))
			}
			break
		}
		if hop == maxLinkHops {
			return nil, fmt.Errorf("%s: more than %d symbolic links", t.Path(name), maxLinkHops)
		}
		target, err := t.root.Readlink(name)
		if err != nil {
			return nil, err
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(name), target)
		}
		name = clean(target)
	}
	return t.root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}

// Hash feeds a regular file (no symbolic link at name) to w, for re-hashing
// an installed executable without reading it into memory.
func (t *Tree) Hash(name string, w io.Writer) (int64, error) {
	name = clean(name)
	if _, err := t.checkRegular(name); err != nil {
		return 0, err
	}
	f, err := t.root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return io.Copy(w, f)
}

func kindOrFile(m fs.FileMode) string {
	if m.IsRegular() {
		return "regular file"
	}
	return Kind(m)
}
