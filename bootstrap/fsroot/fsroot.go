// Package fsroot writes files inside one directory tree and nowhere else.
//
// ccboot runs as root and writes into places other users control (a home
// directory). Every operation goes through an os.Root, so a symbolic link can
// never lead a write out of the tree, and managed paths that are themselves
// symbolic links are refused outright with an error a person can act on.
//
// Writes are atomic (temp file in the same directory, fsync, chown/chmod on
// the descriptor, rename, fsync of the directory) and are skipped entirely
// when the content, mode and owner already match, so the inode of an
// unchanged file never changes.
package fsroot

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// KeepOwner in a FileSpec leaves the owner as it is (new files: the caller's).
const KeepOwner = -1

// tempMarker is part of every temporary file name, so leftovers from a crash
// can be recognised and removed on the next write.
const tempMarker = ".ccboot-tmp-"

// ErrSymlink is wrapped by errors about managed paths that are symbolic links.
var ErrSymlink = errors.New("is a symbolic link")

// ErrNotRegular is wrapped by errors about managed paths that exist but are
// not regular files (FIFOs, devices, directories).
var ErrNotRegular = errors.New("is not a regular file")

// FileSpec is the mode and owner a managed file or directory must have.
type FileSpec struct {
	Mode fs.FileMode
	UID  int // KeepOwner to leave as is
	GID  int // KeepOwner to leave as is
}

// Tree is a directory that all operations are confined to.
type Tree struct {
	root *os.Root
	dir  string // for messages only
}

// Open opens dir as a Tree.
func Open(dir string) (*Tree, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &Tree{root: r, dir: filepath.Clean(dir)}, nil
}

// Close releases the directory handle.
func (t *Tree) Close() error { return t.root.Close() }

// Dir is the path the tree was opened at (for messages).
func (t *Tree) Dir() string { return t.dir }

// Path is name as a person would read it: the tree's directory joined with name.
func (t *Tree) Path(name string) string { return filepath.Join(t.dir, clean(name)) }

// Sub opens a directory inside the tree as a Tree of its own. Symbolic links
// on the way are followed only while they stay inside t.
func (t *Tree) Sub(name string) (*Tree, error) {
	r, err := t.root.OpenRoot(clean(name))
	if err != nil {
		return nil, err
	}
	return &Tree{root: r, dir: t.Path(name)}, nil
}

// Lstat describes name without following a final symbolic link.
func (t *Tree) Lstat(name string) (fs.FileInfo, error) { return t.root.Lstat(clean(name)) }

// ReadFile reads a managed regular file. Missing files give an error that
// matches fs.ErrNotExist; symbolic links and non-regular files are refused
// (reading a FIFO would block forever).
func (t *Tree) ReadFile(name string) ([]byte, error) {
	name = clean(name)
	if _, err := t.checkRegular(name); err != nil {
		return nil, err
	}
	f, err := t.root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// maxLinkHops bounds ReadInfo's link following (loops are refused).
const maxLinkHops = 8

// ReadInfo reads a file ccboot only consults and never writes, such as
// /etc/os-release, /etc/passwd or dpkg's status file. Distributions ship
// some of these as symbolic links (/etc/os-release -> ../usr/lib/os-release),
// so links are followed, absolute ones resolved against the tree, and never
// out of it. Non-regular files are refused, since reading a FIFO would block.
// Managed files go through ReadFile, which refuses links.
func (t *Tree) ReadInfo(name string) ([]byte, error) {
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
	f, err := t.root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// Exists reports whether name exists (without following a final link).
func (t *Tree) Exists(name string) (bool, error) {
	_, err := t.root.Lstat(clean(name))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// checkRegular refuses symbolic links anywhere on the way to name and
// anything at name that is not a regular file. A missing file is reported
// as fs.ErrNotExist.
func (t *Tree) checkRegular(name string) (fs.FileInfo, error) {
	if err := t.refuseLinkedParents(name); err != nil {
		return nil, err
	}
	fi, err := t.root.Lstat(name)
	if err != nil {
		return nil, err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return nil, t.linkError(name)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s %w (it is a %s); move it away and rerun", t.Path(name), ErrNotRegular, Kind(fi.Mode()))
	}
	return fi, nil
}

// refuseLinkedParents refuses a symbolic link in any directory component of
// name. os.Root already keeps them inside the tree; refusing them makes a
// planted link an error a person sees instead of a silent redirect.
func (t *Tree) refuseLinkedParents(name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	parts := strings.Split(dir, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		fi, err := t.root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return t.linkError(p)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory; move it away and rerun", t.Path(p))
		}
	}
	return nil
}

func (t *Tree) linkError(name string) error {
	target, _ := t.root.Readlink(name)
	return fmt.Errorf("refusing %s: it %w to %q; ccboot never writes through links (remove the link and rerun)", t.Path(name), ErrSymlink, target)
}

// EnsureDir makes name a directory with spec's mode and owner, creating
// missing parents with the same spec. It refuses symbolic links and reports
// whether anything changed.
func (t *Tree) EnsureDir(name string, spec FileSpec) (bool, error) {
	name = clean(name)
	if err := t.refuseLinkedParents(name); err != nil {
		return false, err
	}
	fi, err := t.root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if parent := path.Dir(name); parent != "." {
			if _, err := t.EnsureDir(parent, spec); err != nil {
				return false, err
			}
		}
		if err := t.root.Mkdir(name, spec.Mode.Perm()); err != nil && !errors.Is(err, fs.ErrExist) {
			return false, err
		}
		CrashPoint("mkdir", name)
		if _, err := t.fixMeta(name, spec, true); err != nil {
			return false, err
		}
		return true, nil
	case err != nil:
		return false, err
	case fi.Mode()&fs.ModeSymlink != 0:
		return false, t.linkError(name)
	case !fi.IsDir():
		return false, fmt.Errorf("%s is not a directory (it is a %s); move it away and rerun", t.Path(name), Kind(fi.Mode()))
	}
	return t.fixMeta(name, spec, true)
}

// SetMeta gives an existing regular file spec's mode and owner without
// touching its content, and reports whether anything changed.
func (t *Tree) SetMeta(name string, spec FileSpec) (bool, error) {
	name = clean(name)
	if _, err := t.checkRegular(name); err != nil {
		return false, err
	}
	return t.fixMeta(name, spec, false)
}

// fixMeta sets mode and owner on an existing file or directory through a
// descriptor opened without following links, so a swapped-in link cannot
// redirect the chown.
func (t *Tree) fixMeta(name string, spec FileSpec, isDir bool) (bool, error) {
	flags := os.O_RDONLY | syscall.O_NOFOLLOW | syscall.O_NONBLOCK
	if isDir {
		flags |= syscall.O_DIRECTORY
	}
	f, err := t.root.OpenFile(name, flags, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	changed := false
	if uid, gid, ok := owner(fi); ok && needsChown(uid, gid, spec) {
		if err := f.Chown(spec.UID, spec.GID); err != nil {
			return false, fmt.Errorf("chown %s: %w", t.Path(name), err)
		}
		changed = true
	}
	if fi.Mode().Perm() != spec.Mode.Perm() {
		if err := f.Chmod(spec.Mode.Perm()); err != nil {
			return false, fmt.Errorf("chmod %s: %w", t.Path(name), err)
		}
		changed = true
	}
	return changed, nil
}

// WriteFile makes name hold data with spec's mode and owner. It does nothing
// (and reports false) when all three already match; otherwise it replaces the
// file atomically. Parent directories must exist.
func (t *Tree) WriteFile(name string, data []byte, spec FileSpec) (bool, error) {
	name = clean(name)
	fi, err := t.checkRegular(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return false, err
	default:
		same, err := t.sameContent(name, fi, data)
		if err != nil {
			return false, err
		}
		if same {
			return t.fixMeta(name, spec, false)
		}
	}
	if err := t.replace(name, data, spec); err != nil {
		return false, err
	}
	return true, nil
}

func (t *Tree) sameContent(name string, fi fs.FileInfo, data []byte) (bool, error) {
	if fi.Size() != int64(len(data)) {
		return false, nil
	}
	old, err := t.ReadFile(name)
	if err != nil {
		return false, err
	}
	return bytes.Equal(old, data), nil
}

// replace writes data to a temp file beside name and renames it over name.
func (t *Tree) replace(name string, data []byte, spec FileSpec) (err error) {
	dir, base := path.Split(name)
	t.removeStaleTemps(dir, base)
	tmp := dir + "." + base + tempMarker + randomSuffix()
	f, err := t.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("create temp file for %s: %w", t.Path(name), err)
	}
	defer func() {
		if err != nil {
			f.Close()
			t.root.Remove(tmp)
		}
	}()
	if spec.UID != KeepOwner || spec.GID != KeepOwner {
		if err = f.Chown(spec.UID, spec.GID); err != nil {
			return fmt.Errorf("chown %s: %w", t.Path(name), err)
		}
	}
	if err = f.Chmod(spec.Mode.Perm()); err != nil {
		return fmt.Errorf("chmod %s: %w", t.Path(name), err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", t.Path(name), err)
	}
	CrashPoint("replace/written", name)
	// Without fsync before rename a crash can leave a zero-length file.
	if err = f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", t.Path(name), err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", t.Path(name), err)
	}
	CrashPoint("replace/synced", name)
	if err = t.root.Rename(tmp, name); err != nil {
		return fmt.Errorf("rename into %s: %w", t.Path(name), err)
	}
	CrashPoint("replace/renamed", name)
	return t.syncDir(dir)
}

func (t *Tree) syncDir(dir string) error {
	if dir == "" {
		dir = "."
	}
	d, err := t.root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("fsync directory %s: %w", t.Path(dir), err)
	}
	return nil
}

// removeStaleTemps deletes temp files a killed run left beside base.
func (t *Tree) removeStaleTemps(dir, base string) {
	d := dir
	if d == "" {
		d = "."
	}
	entries, err := fs.ReadDir(t.root.FS(), strings.TrimSuffix(d, "/"))
	if err != nil {
		return
	}
	prefix := "." + base + tempMarker
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) && e.Type().IsRegular() {
			t.root.Remove(dir + e.Name())
		}
	}
}

// Remove deletes name if it exists; it never follows a final link.
func (t *Tree) Remove(name string) error {
	err := t.root.Remove(clean(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// RemoveAll deletes name and everything below it, never following links.
func (t *Tree) RemoveAll(name string) error { return t.root.RemoveAll(clean(name)) }

// OpenFile opens name inside the tree without following a final link.
func (t *Tree) OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error) {
	return t.root.OpenFile(clean(name), flag|syscall.O_NOFOLLOW, perm)
}

// Rename renames within the tree.
func (t *Tree) Rename(oldname, newname string) error {
	return t.root.Rename(clean(oldname), clean(newname))
}

// SyncDir flushes a directory's entries (after a rename) to disk.
func (t *Tree) SyncDir(dir string) error { return t.syncDir(clean(dir)) }

func needsChown(uid, gid int, spec FileSpec) bool {
	return (spec.UID != KeepOwner && spec.UID != uid) || (spec.GID != KeepOwner && spec.GID != gid)
}

func owner(fi fs.FileInfo) (uid, gid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}

// Owner returns the numeric owner of a file described by fi.
func Owner(fi fs.FileInfo) (uid, gid int) {
	uid, gid, _ = owner(fi)
	return uid, gid
}

// clean turns an absolute or relative slash path into one relative to the tree.
func clean(name string) string {
	name = path.Clean("/" + filepath.ToSlash(name))
	if name == "/" {
		return "."
	}
	return strings.TrimPrefix(name, "/")
}

// Readlink returns the target of a symbolic link inside the tree.
func (t *Tree) Readlink(name string) (string, error) { return t.root.Readlink(clean(name)) }

// Kind names the type of a non-regular file for messages.
func Kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	default:
		return "special file"
	}
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
