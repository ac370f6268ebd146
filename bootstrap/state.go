package bootstrap

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

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
