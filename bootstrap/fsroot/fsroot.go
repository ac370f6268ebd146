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
//
// An existing file is opened once, without following links, and everything
// after that (the checks, the comparison, chown and chmod) goes through that
// descriptor; a rename replaces it only after a fresh lstat shows the name
// still leads to the same inode. So a name swapped for a hard link to a
// root-only file between two steps is never read, chowned or chmodded.
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
	"unicode/utf8"
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

// ErrHardLinked is wrapped by refusals of a file in a guarded tree that has
// more than one name: the other name may be a root-only file.
var ErrHardLinked = errors.New("has other hard links")

// ErrTooLarge is wrapped by refusals of a file in a guarded tree that is
// larger than MaxGuardedSize.
var ErrTooLarge = errors.New("is too large")

// ErrOwner is wrapped by refusals of an entry in a guarded tree whose owner
// is not the one the caller expects.
var ErrOwner = errors.New("has an unexpected owner")

// ErrChanged is wrapped when a file was replaced by another between the
// moment ccboot opened it and the rename over it.
var ErrChanged = errors.New("changed while ccboot was writing it")

// MaxGuardedSize bounds a file ccboot reads or edits in a guarded tree (a
// user's home): a sparse 3 GiB ~/.bashrc must not make root read and
// rewrite 3 GiB. Checked by fstat before reading, and again while reading.
const MaxGuardedSize = 1 << 20

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
	// guarded: another user controls the directory (a home). Files must
	// have one link and at most MaxGuardedSize bytes, and WriteFile never
	// takes over a file of another owner.
	guarded bool
}

// Guarded returns t with the rules for a directory another user controls:
// every existing file read or written must be a regular file with exactly
// one link and at most MaxGuardedSize bytes, and WriteFile and EnsureDir
// refuse an existing entry whose owner is not the spec's. The copy shares
// t's directory handle.
func (t *Tree) Guarded() *Tree {
	g := *t
	g.guarded = true
	return &g
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
	return &Tree{root: r, dir: t.Path(name), guarded: t.guarded}, nil
}

// Lstat describes name without following a final symbolic link.
func (t *Tree) Lstat(name string) (fs.FileInfo, error) { return t.root.Lstat(clean(name)) }

// ReadFile reads a managed regular file. Missing files give an error that
// matches fs.ErrNotExist; symbolic links and non-regular files are refused
// (reading a FIFO would block forever). In a guarded tree, files with
// other hard links or over MaxGuardedSize bytes are refused too.
func (t *Tree) ReadFile(name string) ([]byte, error) {
	data, _, err := t.ReadFileCheck(name, nil)
	return data, err
}

// ReadFileCheck reads name like ReadFile through one descriptor and returns
// the file's fstat, so the owner and mode a caller acts on belong to the
// bytes it read. check, when set, vets that fstat before a byte is read.
func (t *Tree) ReadFileCheck(name string, check func(fs.FileInfo) error) ([]byte, fs.FileInfo, error) {
	name = clean(name)
	f, fi, err := t.openChecked(name)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if check != nil {
		if err := check(fi); err != nil {
			return nil, nil, err
		}
	}
	CrashPoint("read/opened", name)
	data, err := t.readAll(name, f)
	if err != nil {
		return nil, nil, err
	}
	return data, fi, nil
}

// openChecked opens an existing regular file once, without following a
// final link and without blocking on a FIFO, and vets its fstat. Everything
// a caller does to the file afterwards goes through the returned descriptor.
func (t *Tree) openChecked(name string) (*os.File, fs.FileInfo, error) {
	// The lstat first gives a person a clear error for a link, FIFO or
	// device, and keeps ccboot from opening a device at all.
	if _, err := t.checkRegular(name); err != nil {
		return nil, nil, err
	}
	f, err := t.root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, nil, t.linkError(name)
	}
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		err = t.vetFile(name, fi)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// vetFile is the check on the fstat of an opened file: it is what counts,
// since the name may lead elsewhere by now.
func (t *Tree) vetFile(name string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s %w (it is a %s); move it away and rerun", t.Path(name), ErrNotRegular, Kind(fi.Mode()))
	}
	if !t.guarded {
		return nil
	}
	if n := links(fi); n > 1 {
		p := t.Path(name)
		return fmt.Errorf("refusing %s: it %w (%d names); ccboot will not read or change a file whose other name may be a root-only file; replace it with a copy (cp %s %s.new && mv %s.new %s) and rerun",
			p, ErrHardLinked, n, p, p, p, p)
	}
	if fi.Size() > MaxGuardedSize {
		return t.tooLarge(name, fi.Size())
	}
	return nil
}

func (t *Tree) tooLarge(name string, size int64) error {
	return fmt.Errorf("refusing %s: it %w (%d bytes; ccboot reads and edits at most %d in a user's home); shorten it or move it away and rerun",
		t.Path(name), ErrTooLarge, size, MaxGuardedSize)
}

// readAll reads f; in a guarded tree never more than MaxGuardedSize bytes,
// even if the file grows after its fstat.
func (t *Tree) readAll(name string, f *os.File) ([]byte, error) {
	if !t.guarded {
		return io.ReadAll(f)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxGuardedSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxGuardedSize {
		return nil, t.tooLarge(name, int64(len(data)))
	}
	return data, nil
}

func links(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
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
	f, err := t.OpenFollow(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// EmptyDir reports whether name is a directory with no entries (without
// following a final link).
func (t *Tree) EmptyDir(name string) (bool, error) {
	f, err := t.root.OpenFile(clean(name), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_DIRECTORY, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
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
	return fmt.Errorf("refusing %s: it %w to %s; ccboot never writes through links (remove the link and rerun)", t.Path(name), ErrSymlink, Quote(target))
}

// MaxQuoted bounds text from a file or link that a message quotes.
const MaxQuoted = 200

// Quote quotes s for a message: control characters escaped (%q), at most
// MaxQuoted bytes of it, so a planted value can neither flood the state
// file and log nor drive root's terminal.
func Quote(s string) string {
	if len(s) <= MaxQuoted {
		return fmt.Sprintf("%q", s)
	}
	cut := MaxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q... (%d bytes)", s[:cut], len(s))
}

// EnsureDir makes name a directory with spec's mode and owner, creating
// missing parents with the same spec (existing ones are left as they are).
// It refuses symbolic links and reports
// whether anything changed.
func (t *Tree) EnsureDir(name string, spec FileSpec) (bool, error) {
	return t.EnsureDirWith(name, spec, DirHooks{})
}

// DirHooks let a caller record the directories ccboot creates and decide
// which existing ones of another owner it may take over.
type DirHooks struct {
	// Created is called with the fstat of a directory ccboot just made,
	// before it gets its name and its owner changes; an error stops there.
	// With Created set, the directory is made under a temp name and
	// renamed into place (see createRecorded).
	Created func(name string, fi fs.FileInfo) error
	// Adopt says whether an existing directory whose owner is not spec's
	// may be chowned to spec's owner (guarded trees only; nil: never). It
	// is asked only about empty directories: taking over a non-empty one
	// would hand over what is in it.
	Adopt func(name string, fi fs.FileInfo) bool
}

// EnsureDirWith is EnsureDir with hooks.
func (t *Tree) EnsureDirWith(name string, spec FileSpec, h DirHooks) (bool, error) {
	name = clean(name)
	if err := t.refuseLinkedParents(name); err != nil {
		return false, err
	}
	fi, err := t.root.Lstat(name)
	created := false
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if parent := path.Dir(name); parent != "." {
			if err := t.ensureParent(parent, spec, h); err != nil {
				return false, err
			}
		}
		if h.Created != nil {
			return t.createRecorded(name, spec, h)
		}
		err := t.root.Mkdir(name, spec.Mode.Perm())
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return false, err
		}
		created = err == nil
		CrashPoint("mkdir", name)
	case err != nil:
		return false, err
	case fi.Mode()&fs.ModeSymlink != 0:
		return false, t.linkError(name)
	case !fi.IsDir():
		return false, fmt.Errorf("%s is not a directory (it is a %s); move it away and rerun", t.Path(name), Kind(fi.Mode()))
	}
	f, fi, err := t.openDir(name)
	if err != nil {
		return false, err
	}
	defer f.Close()
	adopt := h.Adopt
	if adopt != nil {
		adopt = func(name string, fi fs.FileInfo) bool {
			_, err := f.Readdirnames(1)
			return errors.Is(err, io.EOF) && h.Adopt(name, fi)
		}
	}
	if !created {
		if err := t.vetOwner(name, fi, spec, adopt); err != nil {
			return false, err
		}
	}
	changed, err := t.fixMeta(f, fi, name, spec)
	return created || changed, err
}

// ensureParent creates a missing parent of a directory being created, with
// the child's spec. A parent that exists keeps its mode and owner: making
// var/lib/ccboot (0700) must not make /var/lib 0700, nor a swap file's new
// directory under /var/tmp take the sticky bit off /var/tmp.
func (t *Tree) ensureParent(name string, spec FileSpec, h DirHooks) error {
	fi, err := t.root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		_, err := t.EnsureDirWith(name, spec, h)
		return err
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		return t.linkError(name)
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory (it is a %s); move it away and rerun", t.Path(name), Kind(fi.Mode()))
	}
	return nil
}

func (t *Tree) openDir(name string) (*os.File, fs.FileInfo, error) {
	f, err := t.root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_DIRECTORY, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, nil, t.linkError(name)
	}
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// createRecorded makes a directory that must never stand under its name
// owned by root unrecorded: it is made under a temp name, recorded by
// inode (h.Created), renamed into place and only then chowned. A run
// killed before the rename leaves an empty temp directory the next
// creation removes; one killed after it leaves a recorded directory that
// h.Adopt can recognise.
func (t *Tree) createRecorded(name string, spec FileSpec, h DirHooks) (bool, error) {
	dir, base := path.Split(name)
	t.removeStaleTemps(dir, base)
	tmp := dir + "." + base + tempMarker + randomSuffix()
	if err := t.root.Mkdir(tmp, spec.Mode.Perm()); err != nil {
		return false, fmt.Errorf("create %s: %w", t.Path(name), err)
	}
	f, fi, err := t.openDir(tmp)
	if err != nil {
		t.root.Remove(tmp)
		return false, err
	}
	defer f.Close()
	if err := h.Created(name, fi); err != nil {
		t.root.Remove(tmp)
		return false, err
	}
	// No rename over anything: a name that appeared meanwhile is not ours.
	if _, err := t.root.Lstat(name); !errors.Is(err, fs.ErrNotExist) {
		t.root.Remove(tmp)
		return false, fmt.Errorf("%s %w (it appeared while ccboot created it); rerun", t.Path(name), ErrChanged)
	}
	if err := t.root.Rename(tmp, name); err != nil {
		t.root.Remove(tmp)
		return false, fmt.Errorf("create %s: %w", t.Path(name), err)
	}
	CrashPoint("mkdir", name)
	if _, err := t.fixMeta(f, fi, name, spec); err != nil {
		return false, err
	}
	return true, t.syncDir(dir)
}

// vetOwner refuses, in a guarded tree, an existing entry that is not owned
// by spec's owner unless adopt allows taking it over.
func (t *Tree) vetOwner(name string, fi fs.FileInfo, spec FileSpec, adopt func(string, fs.FileInfo) bool) error {
	if !t.guarded || spec.UID == KeepOwner {
		return nil
	}
	uid, _, ok := owner(fi)
	if !ok || uid == spec.UID || (adopt != nil && adopt(name, fi)) {
		return nil
	}
	return fmt.Errorf("refusing %s: it %w (uid %d, not uid %d); ccboot does not take over what it did not create: check it, then chown it or move it away and rerun",
		t.Path(name), ErrOwner, uid, spec.UID)
}

// SetMeta gives an existing regular file spec's mode and owner without
// touching its content, and reports whether anything changed.
func (t *Tree) SetMeta(name string, spec FileSpec) (bool, error) {
	name = clean(name)
	f, fi, err := t.openChecked(name)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if err := t.vetOwner(name, fi, spec, nil); err != nil {
		return false, err
	}
	return t.fixMeta(f, fi, name, spec)
}

// fixMeta sets mode and owner through the descriptor f, whose fstat is fi:
// whatever the name leads to by now, only the inode ccboot checked changes.
func (t *Tree) fixMeta(f *os.File, fi fs.FileInfo, name string, spec FileSpec) (bool, error) {
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
// file atomically. Parent directories must exist. An existing file is
// opened once: the comparison and the mode/owner fix go through that
// descriptor, and the rename happens only while the name still leads to
// that inode.
func (t *Tree) WriteFile(name string, data []byte, spec FileSpec) (bool, error) {
	name = clean(name)
	f, fi, err := t.openChecked(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := t.replace(name, data, spec, nil); err != nil {
			return false, err
		}
		return true, nil
	case err != nil:
		return false, err
	}
	defer f.Close()
	if err := t.vetOwner(name, fi, spec, nil); err != nil {
		return false, err
	}
	same := false
	if fi.Size() == int64(len(data)) {
		old, err := t.readAll(name, f)
		if err != nil {
			return false, err
		}
		same = bytes.Equal(old, data)
	}
	CrashPoint("write/checked", name)
	if same {
		return t.fixMeta(f, fi, name, spec)
	}
	if err := t.replace(name, data, spec, fi); err != nil {
		return false, err
	}
	return true, nil
}

// replace writes data to a temp file beside name and renames it over name,
// but only while name is still the file old describes (absent when nil).
func (t *Tree) replace(name string, data []byte, spec FileSpec, old fs.FileInfo) (err error) {
	s, err := t.stage(name, "replace")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			s.Abort()
		}
	}()
	if spec.UID != KeepOwner || spec.GID != KeepOwner {
		if err = s.f.Chown(spec.UID, spec.GID); err != nil {
			return fmt.Errorf("chown %s: %w", t.Path(name), err)
		}
	}
	if _, err = s.Write(data); err != nil {
		return err
	}
	return s.commit(spec.Mode, func() error { return t.stillSame(name, old) })
}

// stillSame checks, just before the rename, that name is still the inode
// ccboot opened (or still absent). A rename only unlinks whatever the name
// leads to, so this is about not overwriting a file that appeared or was
// swapped in meanwhile without having looked at it.
func (t *Tree) stillSame(name string, old fs.FileInfo) error {
	now, err := t.root.Lstat(name)
	switch {
	case old == nil && errors.Is(err, fs.ErrNotExist):
		return nil
	case old == nil && err == nil:
		return fmt.Errorf("%s %w (it appeared meanwhile); rerun", t.Path(name), ErrChanged)
	case err != nil:
		return fmt.Errorf("%s %w (%v); rerun", t.Path(name), ErrChanged, err)
	case !os.SameFile(old, now) || links(now) != links(old):
		return fmt.Errorf("%s %w (another file took its name); rerun", t.Path(name), ErrChanged)
	}
	return nil
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
		// Directories only when empty (Remove refuses others): a temp
		// directory from createRecorded never had anything put in it.
		if strings.HasPrefix(e.Name(), prefix) && (e.Type().IsRegular() || e.IsDir()) {
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
