package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

// DefaultApprovalsDir holds one JSON file per approval (inside the root).
const DefaultApprovalsDir = "/var/lib/ccboot/approvals"

// maxApprovalSize bounds one approval file; a real one is about 250 bytes.
const maxApprovalSize = 4096

// unitPattern is the only shape of unit `ccboot elevate` starts; an
// approval naming anything else is not one of ccboot's.
var unitPattern = regexp.MustCompile(`^ccboot-elevated-([0-9]{1,9})\.scope$`)

// Approval is one time-boxed grant of Elevated to one session: the
// processes of Unit's cgroup running as UID.
type Approval struct {
	Unit     string    `json:"unit"`
	UID      int       `json:"uid"`
	Approver string    `json:"approver"`
	Reason   string    `json:"reason"`
	Created  time.Time `json:"created"`
	Until    time.Time `json:"until"`
}

// Active reports whether the window is open at now.
func (a Approval) Active(now time.Time) bool { return !now.Before(a.Created) && now.Before(a.Until) }

// Approvals is the approvals directory. Only root writes it (0700 root);
// a file in it that root did not write is ignored and logged.
type Approvals struct {
	sys *fsroot.Tree
	dir string
	log *zap.Logger
}

// OpenApprovals returns the store at dir inside sys. log may be nil.
func OpenApprovals(sys *fsroot.Tree, dir string, log *zap.Logger) *Approvals {
	if log == nil {
		log = zap.NewNop()
	}
	return &Approvals{sys: sys, dir: dir, log: log}
}

// Dir is the directory as a person reads it.
func (s *Approvals) Dir() string { return s.sys.Path(s.dir) }

func (s *Approvals) file(unit string) string { return s.dir + "/" + unit + ".json" }

var rootOnly = fsroot.FileSpec{Mode: 0o700, UID: 0, GID: 0}

// Add records a (root-only, atomically written) and removes expired ones.
func (s *Approvals) Add(a Approval) error {
	if !unitPattern.MatchString(a.Unit) {
		return fmt.Errorf("approval: unit %q is not ccboot-elevated-N.scope", a.Unit)
	}
	if _, err := s.sys.EnsureDir(s.dir, rootOnly); err != nil {
		return fmt.Errorf("approval: %w", err)
	}
	data, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return err
	}
	if _, err := s.sys.WriteFile(s.file(a.Unit), append(data, '\n'), fsroot.FileSpec{Mode: 0o600, UID: 0, GID: 0}); err != nil {
		return fmt.Errorf("approval: %w", err)
	}
	s.removeExpired(a.Created)
	return nil
}

// Remove deletes unit's approval; a missing one is not an error.
func (s *Approvals) Remove(unit string) error {
	if err := s.sys.Remove(s.file(unit)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("approval: remove %s: %w", s.sys.Path(s.file(unit)), err)
	}
	return nil
}

// RemoveAll deletes every approval file and returns how many there were.
func (s *Approvals) RemoveAll() (int, error) {
	names, err := s.names()
	if err != nil || len(names) == 0 {
		return 0, err
	}
	for _, unit := range names {
		if err := s.Remove(unit); err != nil {
			return 0, err
		}
	}
	return len(names), nil
}

// counterFile holds the last N handed out; N is never reused, because an
// approval for a reused name would admit a session of that name that is
// still running after its own window ended.
const counterFile = "next"

// Create records a new approval under the next unused unit name: fill
// gets the name and returns the approval to write. Concurrent elevates
// are serialized by a lock on the directory's counter.
func (s *Approvals) Create(fill func(unit string) Approval) (Approval, error) {
	if _, err := s.sys.EnsureDir(s.dir, rootOnly); err != nil {
		return Approval{}, fmt.Errorf("approval: %w", err)
	}
	lock, err := s.sys.OpenFile(s.dir+"/"+counterFile+".lock", os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return Approval{}, fmt.Errorf("approval: lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return Approval{}, fmt.Errorf("approval: lock: %w", err)
	}
	next := 1
	if data, _, err := s.sys.ReadFileCheck(s.dir+"/"+counterFile, func(fi fs.FileInfo) error { return rootWritten(fi, false) }); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && n >= 1 {
			next = n + 1
		}
	}
	// Never below a name some file still uses (a counter lost or reset).
	names, err := s.names()
	if err != nil {
		return Approval{}, err
	}
	for _, unit := range names {
		if n, _ := strconv.Atoi(unitPattern.FindStringSubmatch(unit)[1]); n >= next {
			next = n + 1
		}
	}
	if _, err := s.sys.WriteFile(s.dir+"/"+counterFile, []byte(strconv.Itoa(next)+"\n"), fsroot.FileSpec{Mode: 0o600, UID: 0, GID: 0}); err != nil {
		return Approval{}, fmt.Errorf("approval: %w", err)
	}
	a := fill(fmt.Sprintf("ccboot-elevated-%d.scope", next))
	return a, s.Add(a)
}

// names lists the units that have an approval file (any content).
func (s *Approvals) names() ([]string, error) {
	entries, err := s.sys.ReadDirNames(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("approval: read %s: %w", s.Dir(), err)
	}
	var out []string
	for _, e := range entries {
		if len(e) > 5 && e[len(e)-5:] == ".json" && unitPattern.MatchString(e[:len(e)-5]) {
			out = append(out, e[:len(e)-5])
		}
	}
	return out, nil
}

// Exists reports whether the approvals directory exists (enforced tiers are
// in use on this machine).
func (s *Approvals) Exists() bool {
	ok, err := s.sys.Exists(s.dir)
	return ok && err == nil
}

// Active returns the approvals whose window is open at now. It trusts only
// what root wrote: the directory must be root's and writable by no one
// else, and so must each file; anything else is ignored and logged.
func (s *Approvals) Active(now time.Time) ([]Approval, error) {
	fi, err := s.sys.Lstat(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("approval: %w", err)
	}
	if err := rootWritten(fi, true); err != nil {
		s.log.Error("ignoring every approval: the directory is not root's alone", zap.String("dir", s.Dir()), zap.Error(err))
		return nil, fmt.Errorf("approvals directory %s ignored: %v; fix: sudo chown root:root %s && sudo chmod 0700 %s", s.Dir(), err, s.Dir(), s.Dir())
	}
	names, err := s.names()
	if err != nil {
		return nil, err
	}
	var out []Approval
	for _, unit := range names {
		a, err := s.read(unit)
		if err != nil {
			s.log.Warn("ignoring approval file", zap.String("file", s.sys.Path(s.file(unit))), zap.Error(err))
			continue
		}
		if a.Active(now) {
			out = append(out, a)
		}
	}
	return out, nil
}

func (s *Approvals) read(unit string) (Approval, error) {
	data, _, err := s.sys.ReadFileCheck(s.file(unit), func(fi fs.FileInfo) error {
		if fi.Size() > maxApprovalSize {
			return fmt.Errorf("%d bytes, more than %d", fi.Size(), maxApprovalSize)
		}
		return rootWritten(fi, false)
	})
	if err != nil {
		return Approval{}, err
	}
	var a Approval
	if err := json.Unmarshal(data, &a); err != nil {
		return Approval{}, fmt.Errorf("not an approval: %w", err)
	}
	if a.Unit != unit {
		return Approval{}, fmt.Errorf("names unit %q but is the file of %q", a.Unit, unit)
	}
	if a.Until.IsZero() || a.Created.IsZero() {
		return Approval{}, errors.New("has no created/until time")
	}
	return a, nil
}

// rootWritten accepts an entry only root can have written: owned by uid 0,
// not writable by group or other (and a directory or regular file).
func rootWritten(fi fs.FileInfo, dir bool) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !ok:
		return errors.New("no owner information")
	case dir && !fi.IsDir():
		return errors.New("not a directory")
	case !dir && !fi.Mode().IsRegular():
		return errors.New("not a regular file")
	case st.Uid != 0:
		return fmt.Errorf("owned by uid %d, not root", st.Uid)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("mode %04o is writable by group or other", fi.Mode().Perm())
	}
	return nil
}

func (s *Approvals) removeExpired(now time.Time) {
	names, _ := s.names()
	for _, unit := range names {
		if a, err := s.read(unit); err == nil && !now.Before(a.Until) {
			_ = s.Remove(unit)
		}
	}
}
