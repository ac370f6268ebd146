package bootstrap

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"syscall"

	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

// StatePath is where the last run's report is kept (under the root).
const StatePath = "/var/lib/ccboot/state.json"

// stateSpec is root's alone: step errors can quote the user's files (which
// may hold secrets), so the state is no more readable than they are. An
// older 0644 state file gets 0600 on the next save.
var stateSpec = fsroot.FileSpec{Mode: 0o600, UID: 0, GID: 0}

// LoadState reads the last run's report; (nil, nil) when there is none.
func LoadState(sys *fsroot.Tree) (*Report, error) {
	data, err := sys.ReadFile(StatePath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if errors.Is(err, fs.ErrPermission) {
		return nil, fmt.Errorf("state %s is readable by root only (its errors can quote the user's files); run as root for details: sudo ccboot status", sys.Path(StatePath))
	}
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", sys.Path(StatePath), err)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("state %s is not valid JSON (%v); delete it and run `ccboot repair`", sys.Path(StatePath), err)
	}
	return &r, nil
}

// SaveState writes the report atomically. Diffs are left out: they can hold
// file contents and are only useful at the moment plan prints them.
func SaveState(sys *fsroot.Tree, r Report) error {
	steps := make([]StepReport, len(r.Steps))
	for i, s := range r.Steps {
		s.Diff = ""
		// Bounded, whatever an error quotes: the state is read by status
		// and the WaitCondition reason, and must not grow with input.
		s.Error = capText(s.Error)
		s.Changes = capTexts(s.Changes)
		s.Notes = capTexts(s.Notes)
		steps[i] = s
	}
	r.Steps = steps
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if _, err := sys.EnsureDir("var/lib/ccboot", fsroot.FileSpec{Mode: 0o755, UID: 0, GID: 0}); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	_, err = sys.WriteFile(StatePath, append(data, '\n'), stateSpec)
	return err
}

// maxStateText bounds each message saved in the state file.
const maxStateText = 2048

func capText(s string) string { return cutText(s, maxStateText, ", cut") }

func capTexts(list []string) []string {
	if len(list) == 0 {
		return list
	}
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = capText(s)
	}
	return out
}

// CreatedPath records the entries in a user's home that ccboot itself
// created, by inode. ccboot refuses to take over a root-owned entry there
// (it may hold root's credentials from `sudo aws configure`) unless this
// record shows ccboot made it: a run killed after the new directory got its
// name and before its chown (fsroot records it before it gets its name).
const CreatedPath = "/var/lib/ccboot/created.json"

var createdSpec = fsroot.FileSpec{Mode: 0o600, UID: 0, GID: 0}

// CreatedEntry is one entry ccboot created: its path in the root and inode.
type CreatedEntry struct {
	Path string `json:"path"`
	Dev  uint64 `json:"dev"`
	Ino  uint64 `json:"ino"`
}

func loadCreated(sys *fsroot.Tree) ([]CreatedEntry, error) {
	data, err := sys.ReadFile(CreatedPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", sys.Path(CreatedPath), err)
	}
	var out []CreatedEntry
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("%s is not valid JSON (%v); delete it and rerun", sys.Path(CreatedPath), err)
	}
	return out, nil
}

func createdEntry(path string, fi fs.FileInfo) (CreatedEntry, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return CreatedEntry{}, false
	}
	return CreatedEntry{Path: path, Dev: uint64(st.Dev), Ino: st.Ino}, true
}

// RecordCreated durably records (fsync, rename) that ccboot created the
// entry at path (a path in the root) described by fi, replacing an older
// record for that path. Only the aws-config step creates entries in a home,
// and runs hold the run lock, so there is one writer at a time.
func RecordCreated(sys *fsroot.Tree, path string, fi fs.FileInfo) error {
	e, ok := createdEntry(path, fi)
	if !ok {
		return nil
	}
	old, err := loadCreated(sys)
	if err != nil {
		return err
	}
	list := []CreatedEntry{e}
	for _, o := range old {
		if o.Path != path {
			list = append(list, o)
		}
	}
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	if _, err := sys.EnsureDir("var/lib/ccboot", fsroot.FileSpec{Mode: 0o755, UID: 0, GID: 0}); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if _, err := sys.WriteFile(CreatedPath, append(data, '\n'), createdSpec); err != nil {
		return fmt.Errorf("record %s as created by ccboot: %w", path, err)
	}
	return nil
}

// CreatedByCCBoot reports whether the record says ccboot created the entry
// at path that fi describes (same inode; a later entry of the same name is
// not ccboot's).
func CreatedByCCBoot(sys *fsroot.Tree, path string, fi fs.FileInfo) bool {
	e, ok := createdEntry(path, fi)
	if !ok {
		return false
	}
	list, err := loadCreated(sys)
	if err != nil {
		return false
	}
	for _, o := range list {
		if o == e {
			return true
		}
	}
	return false
}
