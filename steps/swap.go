package steps

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
	"github.com/ccboot/ccboot/bootstrap/runner"
)

// host is what a step may learn about the running kernel. Only a live run
// looks at it: under --root the host's kernel is not the image's. Tests
// set live with a temp root and point proc at a fixture, which is how the
// swapoff/swapon and systemctl start sequences are tested; real swapon is
// EPERM in containers and is proven in a QEMU VM by the e2e harness.
type host struct {
	live bool
	proc string // the running system's /proc
}

func hostOf(env *bootstrap.Env) host { return host{live: env.Live(), proc: "/proc"} }

// root is the root external tools are pointed at: "/" when live.
func (h host) root(env *bootstrap.Env) string {
	if h.live {
		return "/"
	}
	return env.Root
}

// swapMagic is the signature mkswap writes at the end of the first page.
const swapMagic = "SWAPSPACE2"

// Swap keeps a swap file: a root-owned 0600 regular file of exactly the
// configured size with a valid swap header, one /etc/fstab line for it,
// and (live only) active.
type Swap struct{}

// Name implements bootstrap.Step.
func (Swap) Name() string { return "swap" }

// Needs implements bootstrap.Step.
func (Swap) Needs() []string { return nil }

// Scope implements bootstrap.Step: a swap file in an image costs snapshot size and slow first reads on EBS.
func (Swap) Scope() bootstrap.Scope { return bootstrap.ScopeInstance }

// Check implements bootstrap.Step. It runs no process: the header is read
// through env.Sys and activity from /proc/swaps.
func (s Swap) Check(ctx context.Context, env *bootstrap.Env) (bootstrap.Drift, error) {
	return s.check(ctx, env, hostOf(env))
}

// Apply implements bootstrap.Step.
func (s Swap) Apply(ctx context.Context, env *bootstrap.Env) error {
	return s.apply(ctx, env, hostOf(env))
}

// swapState is what inspect found.
type swapState struct {
	name      string // SwapPath relative to the tree
	display   string // SwapPath as a person reads it (under --root: the full path)
	exists    bool
	size      int64
	perm      fs.FileMode
	uid, gid  int
	valid     bool // swap header present and matching the size
	sparse    bool // has holes: swapon refuses it
	active    bool // live only
	fstab     []byte
	fstabFI   fs.FileInfo // nil when /etc/fstab is missing
	newFstab  []byte
	fstabEdit bool
}

func (st swapState) rebuild(want int64) bool {
	return !st.exists || st.size != want || !st.valid || st.sparse
}

func (Swap) inspect(env *bootstrap.Env, h host) (swapState, error) {
	st := swapState{name: env.Config.SwapPath, display: env.Sys.Path(env.Config.SwapPath)}
	fi, err := env.Sys.Lstat(st.name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return st, fmt.Errorf("swap: %w", err)
	case !fi.Mode().IsRegular():
		return st, fmt.Errorf("swap: %s is a %s, not a swap file; move it away or set [swap] path", st.display, fsroot.Kind(fi.Mode()))
	default:
		st.exists, st.size, st.perm = true, fi.Size(), fi.Mode().Perm()
		st.uid, st.gid = fsroot.Owner(fi)
		if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
			st.sparse = sys.Blocks*512 < st.size
		}
		if st.valid, err = hasSwapHeader(env.Sys, st.name, st.size); err != nil {
			return st, fmt.Errorf("swap: read header of %s: %w", st.display, err)
		}
	}
	if h.live {
		if st.active, err = swapActive(path.Join(h.proc, "swaps"), st.display); err != nil {
			return st, fmt.Errorf("swap: %w", err)
		}
	}
	if st.exists && !st.valid && !st.active {
		// Rebuilding replaces the file: only ever a swap file. A file
		// ccboot made always has the signature (it is renamed into place
		// only after mkswap), so anything without one is someone else's.
		swap, err := isSwapFile(env.Sys, st.name)
		if err != nil {
			return st, fmt.Errorf("swap: read header of %s: %w", st.display, err)
		}
		if !swap {
			return st, fmt.Errorf("swap: %s exists and is not a swap file (no mkswap signature, not in use as swap); ccboot replaces only swap files: set [swap] path to a file that does not exist, or remove %s yourself if it is an old swap file", st.display, st.display)
		}
	}
	st.fstab, err = env.Sys.ReadFile("etc/fstab")
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return st, fmt.Errorf("swap: %w", err)
	default:
		if st.fstabFI, err = env.Sys.Lstat("etc/fstab"); err != nil {
			return st, fmt.Errorf("swap: %w", err)
		}
	}
	st.newFstab, st.fstabEdit = editFstab(st.fstab, env.Config.SwapPath)
	return st, nil
}

func (s Swap) check(_ context.Context, env *bootstrap.Env, h host) (bootstrap.Drift, error) {
	var d bootstrap.Drift
	want := env.Config.SwapBytes
	if want == 0 {
		// Off means "not ccboot's business", not "remove": an operator who
		// turns management off may still rely on the swap file.
		d.Note("swap management off ([swap] size = off); an existing %s is left as it is", env.Config.SwapPath)
		return d, nil
	}
	st, err := s.inspect(env, h)
	if err != nil {
		return d, err
	}
	switch {
	case !st.exists:
		d.Differ("create %s swap file %s", humanBytes(want), st.display)
	case st.size != want:
		d.Differ("rebuild %s: it is %s, want %s", st.display, humanBytes(st.size), humanBytes(want))
	case !st.valid:
		d.Differ("rebuild %s: no valid swap signature (mkswap)", st.display)
	case st.sparse:
		d.Differ("rebuild %s: it has holes, which swapon refuses", st.display)
	default:
		if st.perm != 0o600 {
			d.Differ("chmod %s 0600 (is %04o)", st.display, st.perm)
		}
		if st.uid != 0 || st.gid != 0 {
			d.Differ("chown %s root:root (is %d:%d)", st.display, st.uid, st.gid)
		}
	}
	if st.fstabEdit {
		d.Differ("update %s: exactly one swap line for %s", env.Sys.Path("etc/fstab"), env.Config.SwapPath)
		d.Diff += bootstrap.UnifiedDiff(env.Sys.Path("etc/fstab"), st.fstab, st.newFstab)
	}
	if h.live && !st.active {
		d.Differ("swapon %s", st.display)
	}
	return d, nil
}

func (s Swap) apply(ctx context.Context, env *bootstrap.Env, h host) error {
	want := env.Config.SwapBytes
	if want == 0 {
		return nil
	}
	st, err := s.inspect(env, h)
	if err != nil {
		return err
	}
	if st.rebuild(want) {
		// An active swap file is busy (writes fail with ETXTBSY) and a
		// replaced one would stay in use as "(deleted)": turn it off first.
		// In root mode nothing is active and the file is simply replaced.
		if h.live && st.active {
			env.Progress("swapoff " + st.display)
			if _, err := env.Run.Run(ctx, runner.Cmd{Name: "swapoff", Args: []string{st.display}}); err != nil {
				return fmt.Errorf("swap: swapoff %s before resizing it: %w; free memory so its pages fit in RAM, then rerun", st.display, err)
			}
			st.active = false
		}
		env.Progress(fmt.Sprintf("creating %s %s", humanBytes(want), env.Config.SwapPath))
		if err := buildSwapFile(ctx, env, st.name, want); err != nil {
			return err
		}
	} else if err := fixSwapMeta(env, st); err != nil {
		return err
	}
	// fstab changes only once the file is in place, so a failed build
	// leaves no line pointing at a file that does not exist.
	if st.fstabEdit {
		spec := fsroot.FileSpec{Mode: 0o644, UID: 0, GID: 0}
		if st.fstabFI != nil {
			spec = fsroot.FileSpec{Mode: st.fstabFI.Mode().Perm(), UID: fsroot.KeepOwner, GID: fsroot.KeepOwner}
		}
		if _, err := env.Sys.WriteFile("etc/fstab", st.newFstab, spec); err != nil {
			return fmt.Errorf("swap: %w", err)
		}
	}
	if h.live && !st.active {
		if _, err := env.Run.Run(ctx, runner.Cmd{Name: "swapon", Args: []string{st.display}}); err != nil {
			if manager := container(env); manager != "" {
				return fmt.Errorf("swap: swapon %s refused: this system runs in a container (%s), where swap belongs to the host; set [swap] size = off", st.display, manager)
			}
			return fmt.Errorf("swap: swapon %s: %w; check dmesg (a file with holes or on an unsupported filesystem cannot be swap)", st.display, err)
		}
	}
	return nil
}

// fixSwapMeta makes an otherwise good swap file root-owned and 0600,
// through a descriptor opened without following links.
func fixSwapMeta(env *bootstrap.Env, st swapState) error {
	if st.perm == 0o600 && st.uid == 0 && st.gid == 0 {
		return nil
	}
	if _, err := env.Sys.SetMeta(st.name, fsroot.FileSpec{Mode: 0o600, UID: 0, GID: 0}); err != nil {
		return fmt.Errorf("swap: %w", err)
	}
	return nil
}

// buildSwapFile makes a complete swap file at a temp name beside name and
// renames it into place, so name is never a half-written file. On any
// failure the temp file is removed.
func buildSwapFile(ctx context.Context, env *bootstrap.Env, name string, size int64) (err error) {
	dir, base := path.Split(name)
	if dir != "" {
		if ok, err := env.Sys.Exists(dir); err != nil {
			return fmt.Errorf("swap: %w", err)
		} else if !ok {
			if _, err := env.Sys.EnsureDir(dir, fsroot.FileSpec{Mode: 0o755, UID: 0, GID: 0}); err != nil {
				return fmt.Errorf("swap: %w", err)
			}
		}
	}
	// A fixed temp name: a run killed mid-build leaves at most one
	// (possibly large) leftover, which the next run removes here.
	tmp := dir + "." + base + ".ccboot-new"
	if err := env.Sys.Remove(tmp); err != nil {
		return fmt.Errorf("swap: remove leftover %s: %w", env.Sys.Path(tmp), err)
	}
	display, tmpDisplay := env.Sys.Path(name), env.Sys.Path(tmp)
	f, err := env.Sys.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("swap: create %s: %w", tmpDisplay, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			env.Sys.Remove(tmp)
		}
	}()
	if err = f.Chown(0, 0); err != nil {
		return fmt.Errorf("swap: chown %s: %w", tmpDisplay, err)
	}
	if err = f.Chmod(0o600); err != nil {
		return fmt.Errorf("swap: chmod %s: %w", tmpDisplay, err)
	}
	var sfs unix.Statfs_t
	if err = unix.Fstatfs(int(f.Fd()), &sfs); err != nil {
		return fmt.Errorf("swap: statfs %s: %w", tmpDisplay, err)
	}
	free := int64(sfs.Bavail) * sfs.Bsize
	noSpace := func() error {
		return fmt.Errorf("swap: allocate %s for %s: no space left on device; free %s on the filesystem of %s (%s were available) or set [swap] size = off",
			humanBytes(size), display, humanBytes(size), path.Dir(display), humanBytes(free))
	}
	// Refuse before allocating: filling the filesystem, even only until the
	// temp file is removed, makes the steps running beside this one fail
	// with ENOSPC too (usermod, the state file).
	if free < size {
		return noSpace()
	}
	if err = allocate(ctx, f, int64(sfs.Type), size); err != nil { // Type is int32 on some 32-bit ports
		if errors.Is(err, syscall.ENOSPC) {
			return noSpace()
		}
		return fmt.Errorf("swap: allocate %s for %s: %w", humanBytes(size), display, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("swap: fsync %s: %w", tmpDisplay, err)
	}
	// The host's mkswap, also under --root: it only writes a header into a
	// plain file and needs no privileges; the image may not have one.
	if _, err = env.Run.Run(ctx, runner.Cmd{Name: "mkswap", Args: []string{tmpDisplay}}); err != nil {
		return fmt.Errorf("swap: mkswap %s: %w", tmpDisplay, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("swap: fsync %s: %w", tmpDisplay, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("swap: close %s: %w", tmpDisplay, err)
	}
	if err = env.Sys.Rename(tmp, name); err != nil {
		return fmt.Errorf("swap: rename %s to %s: %w", tmpDisplay, display, err)
	}
	if err = env.Sys.SyncDir(dir); err != nil {
		return fmt.Errorf("swap: %w", err)
	}
	return nil
}

// allocate gives f size bytes of real blocks. The kernel accepts swap on
// fallocate(2)d files on ext4 and xfs (the syscall on the open descriptor
// does what fallocate(1) does, without a process or a path lookup); on
// btrfs, tmpfs and anything else preallocated extents are refused or
// unproven, so the blocks are written with zeros.
func allocate(ctx context.Context, f *os.File, fsType int64, size int64) error {
	switch fsType {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC:
		return unix.Fallocate(int(f.Fd()), 0, 0, size)
	}
	zeros := make([]byte, 1<<20)
	for left := size; left > 0; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(left, int64(len(zeros)))
		if _, err := f.Write(zeros[:n]); err != nil {
			return err
		}
		left -= n
	}
	return nil
}

// hasSwapHeader reports whether name carries a swap header that swapon
// would accept for a file of size bytes: the signature at the end of the
// first page, version 1, and last_page matching the size (a file resized
// after mkswap keeps a stale last_page). Page size is this kernel's; under
// --root that is the host's, which is also what mkswap used.
func hasSwapHeader(sys *fsroot.Tree, name string, size int64) (bool, error) {
	page := os.Getpagesize()
	if size < int64(page) {
		return false, nil
	}
	f, err := sys.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	return swapHeaderOK(f, page, size)
}

// swapPageSizes are the page sizes Linux runs with (x86 4K; arm64 4K, 16K
// or 64K; 8K on some others): mkswap puts the signature at the end of the
// first page of the kernel it ran on, which need not be this one.
var swapPageSizes = []int{4 << 10, 8 << 10, 16 << 10, 64 << 10}

// isSwapFile reports whether name carries a swap signature (version 1's or
// the ancient one) for any page size, whatever its size field says: a swap
// file of the wrong size or page size is still one that may be rebuilt.
func isSwapFile(sys *fsroot.Tree, name string) (bool, error) {
	f, err := sys.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	hdr := make([]byte, swapPageSizes[len(swapPageSizes)-1])
	n, err := io.ReadFull(f, hdr)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return false, err
	}
	for _, page := range swapPageSizes {
		if page > n {
			break
		}
		if sig := string(hdr[page-len(swapMagic) : page]); sig == swapMagic || sig == "SWAP-SPACE" {
			return true, nil
		}
	}
	return false, nil
}

// swapHeaderOK checks the header in r (see linux/swap.h, union swap_header).
func swapHeaderOK(r io.ReaderAt, page int, size int64) (bool, error) {
	hdr := make([]byte, page)
	if _, err := r.ReadAt(hdr, 0); err != nil {
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		return false, err
	}
	if string(hdr[page-len(swapMagic):]) != swapMagic {
		return false, nil
	}
	// info: 1024 bytes of boot bits, then u32 version, u32 last_page.
	version := binary.NativeEndian.Uint32(hdr[1024:])
	lastPage := binary.NativeEndian.Uint32(hdr[1028:])
	return version == 1 && int64(lastPage) == size/int64(page)-1, nil
}

// swapActive reports whether file is listed in /proc/swaps.
func swapActive(procSwaps, file string) (bool, error) {
	data, err := os.ReadFile(procSwaps)
	if err != nil {
		return false, err
	}
	lines := strings.Split(string(data), "\n")
	for _, l := range lines[1:] { // first line is the header
		f := strings.Fields(l)
		if len(f) > 0 && fstabUnescape(f[0]) == file {
			return true, nil
		}
	}
	return false, nil
}

// editFstab returns content with exactly one swap line for path: the first
// existing one (field 1 is path, field 3 is "swap", however spaced) stays
// byte for byte if it is acceptable, else it is replaced in place by the
// default line; later ones are dropped; with none, the default line is
// appended. Every other line, comment and blank line is kept as it is.
// Applying it twice gives what applying it once does.
func editFstab(content []byte, path string) ([]byte, bool) {
	want := fstabEscape(path) + " none swap defaults 0 0"
	out := make([]byte, 0, len(content)+len(want)+2)
	found := false
	for rest := content; len(rest) > 0; {
		line, after, hasNL := bytes.Cut(rest, []byte("\n"))
		rest = after
		fields := fstabFields(line)
		if !isSwapLineFor(fields, path) {
			out = append(out, line...)
			if hasNL {
				out = append(out, '\n')
			}
			continue
		}
		if found {
			continue // a duplicate: swapon -a would try the file twice
		}
		found = true
		if swapLineOK(fields) {
			out = append(out, line...)
			if hasNL {
				out = append(out, '\n')
			}
			continue
		}
		out = append(out, want...)
		out = append(out, '\n')
	}
	if !found {
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
		out = append(out, want...)
		out = append(out, '\n')
	}
	return out, !bytes.Equal(out, content)
}

// fstabFields splits an fstab line on blanks (libmount also takes \r).
func fstabFields(line []byte) []string {
	return strings.FieldsFunc(string(line), func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' })
}

func isSwapLineFor(f []string, path string) bool {
	return len(f) >= 3 && !strings.HasPrefix(f[0], "#") && f[2] == "swap" && fstabUnescape(f[0]) == path
}

// swapLineOK accepts a swap line an operator may have tuned (pri=, discard)
// as long as it still activates at boot: mount point none or swap, options
// present and without noauto, dump and pass absent or 0.
func swapLineOK(f []string) bool {
	if len(f) < 4 || len(f) > 6 || (f[1] != "none" && f[1] != "swap") {
		return false
	}
	for _, o := range strings.Split(f[3], ",") {
		if o == "noauto" {
			return false
		}
	}
	for _, n := range f[4:] {
		if n != "0" {
			return false
		}
	}
	return true
}

// fstabEscape writes the bytes fstab and /proc/swaps cannot hold literally
// as \ooo octal (fstab(5)); a backslash is escaped too, so unescaping
// gives the path back exactly.
func fstabEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\r', '\\':
			fmt.Fprintf(&b, "\\%03o", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func fstabUnescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) && s[i+1] <= '3' {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// humanBytes renders a size the way people write swap sizes.
func humanBytes(n int64) string {
	switch {
	case n != 0 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n != 0 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}

// container names the container manager this system runs under ("" for a
// VM or bare metal), from the file systemd writes at boot.
func container(env *bootstrap.Env) string {
	b, err := env.Sys.ReadInfo("run/systemd/container")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
