package inventory

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"time"

	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

// DoctorPath keeps doctor's last result between runs, so the inventory a
// run writes still carries it. Root's alone like the state file.
const DoctorPath = "/var/lib/ccboot/doctor.json"

// Doctor results.
const (
	DoctorOK     = "ok"
	DoctorFailed = "failed"
	DoctorNotRun = "not-run"
)

// Doctor is doctor's last result: no details, no fixes, only the names of
// the checks that failed (its details can quote the user's ~/.aws/config).
type Doctor struct {
	Result       string    `json:"result"`
	Time         time.Time `json:"time"`
	FailedChecks []string  `json:"failed_checks"`
}

var doctorSpec = fsroot.FileSpec{Mode: 0o600, UID: 0, GID: 0}

// SaveDoctor records doctor's result atomically.
func SaveDoctor(sys *fsroot.Tree, d Doctor) error {
	if d.FailedChecks == nil {
		d.FailedChecks = []string{}
	}
	data, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	if _, err := sys.EnsureDir(path.Dir(DoctorPath), fsroot.FileSpec{Mode: 0o755, UID: 0, GID: 0}); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	_, err = sys.WriteFile(DoctorPath, append(data, '\n'), doctorSpec)
	return err
}

// LoadDoctor reads doctor's last result; nil when doctor has not run as
// root here. An unreadable record counts as none: it only feeds the
// inventory, and the next doctor rewrites it.
func LoadDoctor(sys *fsroot.Tree) (*Doctor, error) {
	data, err := sys.ReadFile(DoctorPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("doctor's record: %w", err)
	}
	var d Doctor
	if json.Unmarshal(data, &d) != nil {
		return nil, nil
	}
	return &d, nil
}
