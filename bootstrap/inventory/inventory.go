// Package inventory writes ccboot's state as an SSM custom inventory item,
// Custom:ccboot, where the SSM agent collects it, so a fleet can be queried
// with SSM Inventory (README, "Fleet: inventory").
//
// The file's shape is AWS's, "Working with custom inventory"
// (https://docs.aws.amazon.com/systems-manager/latest/userguide/inventory-custom.html):
// "The JSON schema for custom inventory requires SchemaVersion, TypeName, and
// Content sections, but you can define the information in those sections."
// and "TypeName is limited to 100 characters." The API reference's
// InventoryItem
// (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_InventoryItem.html)
// gives the rest: SchemaVersion pattern ^([0-9]{1,6})(\.[0-9]{1,6})$, TypeName
// pattern ^(AWS|Custom):.*$, Content "Array of string to string maps" with at
// most 50 entries a map, keys 1 to 64 characters and values at most 4096.
// The agent (amazon-ssm-agent, agent/plugins/inventory/gatherers/custom)
// reads every *.json in /var/lib/amazon/ssm/<instance-id>/inventory/custom,
// checks exactly those limits, accepts Content as one object or a list of
// objects with string values only, and sets CaptureTime itself (UTC,
// RFC 3339, the pattern below), so the file carries none.
//
// Nothing here quotes a user's file: the values are ccboot's and Claude
// Code's versions (checked against a pattern), the tier mode, results and
// times ccboot computed, and step and check names (ccboot's own; anything
// else is dropped). Step errors, which can quote a user's file, never reach
// the inventory.
package inventory

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

const (
	// TypeName is the custom inventory type ccboot reports.
	TypeName = "Custom:ccboot"
	// SchemaVersion is this file's version; a field added or renamed
	// later bumps it.
	SchemaVersion = "1.0"
	// FileName is the file in the agent's custom inventory folder. The
	// agent reads only names ending in .json: fsroot's temp files
	// (.ccboot.json.ccboot-tmp-…) are never collected half-written.
	FileName = "ccboot.json"
	// agentDataDir is the agent's data store on Linux
	// (appconfig.DefaultDataStorePath).
	agentDataDir = "var/lib/amazon/ssm"
	// TimeLayout is how times are written: the agent's CaptureTime format
	// (UTC, seconds, "Z"), so a fleet query compares them as strings.
	TimeLayout = "2006-01-02T15:04:05Z"
)

// The limits the agent enforces before it uploads an item (customGatherer.go)
// and the API documents for InventoryItem.
const (
	maxTypeName  = 100
	maxEntries   = 50
	maxKeyLen    = 64
	maxValueLen  = 4096
	maxItemBytes = 64 << 10 // ccboot's own bound on the file, far below any of the above
)

var (
	schemaVersionPattern = regexp.MustCompile(`^([0-9]{1,6})(\.[0-9]{1,6})$`)
	typeNamePattern      = regexp.MustCompile(`^(AWS|Custom):.*$`)
	// captureTimePattern is InventoryItem's CaptureTime pattern.
	captureTimePattern = regexp.MustCompile(`^(20)[0-9][0-9]-(0[1-9]|1[012])-([12][0-9]|3[01]|0[1-9])(T)(2[0-3]|[0-1][0-9])(:[0-5][0-9])(:[0-5][0-9])(Z)$`)
	instanceIDPattern  = regexp.MustCompile(`^m?i-[0-9a-f]{8,17}$`)
	versionPattern     = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$`)
	namePattern        = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,47}$`)
)

// ErrNoInstanceID is returned when the instance ID is unknown (IMDS did not
// answer): the agent's folder is named after it, so there is nowhere the
// agent would look.
var ErrNoInstanceID = errors.New("instance ID unknown (IMDS did not answer), so the SSM agent's folder is unknown")

// Dir is the agent's custom inventory folder for instanceID, in the root.
func Dir(instanceID string) (string, error) {
	if instanceID == "" {
		return "", ErrNoInstanceID
	}
	// The ID becomes a path component: never "..", "/" or anything but an
	// EC2 (i-) or hybrid (mi-) instance ID.
	if !instanceIDPattern.MatchString(instanceID) {
		return "", fmt.Errorf("instance ID %s is not an EC2 instance ID (i-…); the inventory is not written", fsroot.Quote(instanceID))
	}
	return path.Join(agentDataDir, instanceID, "inventory", "custom"), nil
}

// Path is the inventory file for instanceID, in the root.
func Path(instanceID string) (string, error) {
	dir, err := Dir(instanceID)
	if err != nil {
		return "", err
	}
	return path.Join(dir, FileName), nil
}

// Item is one custom inventory file.
type Item struct {
	SchemaVersion string            `json:"SchemaVersion"`
	TypeName      string            `json:"TypeName"`
	Content       map[string]string `json:"Content"`
}

// Facts are what the inventory reports, from ccboot's own sources.
type Facts struct {
	CcbootVersion     string
	ClaudeCodeVersion string // "" when Claude Code is not installed by ccboot
	TierMode          string
	Run               Run
	Doctor            *Doctor // nil: doctor never ran (as root) on this instance
}

// Run is the last run or repair as the state file records it.
type Run struct {
	Mode        string // run or repair; "" when there is no recorded run
	Result      string // RunOK, RunFailed, RunIncomplete or RunNone
	Time        time.Time
	FailedSteps []string // failed or blocked steps, by name
}

// Run results.
const (
	RunOK         = "ok"
	RunFailed     = "failed"
	RunIncomplete = "incomplete" // under way, or killed before it finished
	RunNone       = "none"
)

// Build turns facts into the item. Values not of ccboot's own making are
// replaced, never copied: a version that is not a version is "unknown",
// a name that is not a ccboot name is dropped.
func Build(f Facts) Item {
	c := map[string]string{
		"CcbootVersion":      version(f.CcbootVersion),
		"ClaudeCodeVersion":  "",
		"TierMode":           oneOf(f.TierMode, "advisory", "enforced"),
		"LastRunMode":        oneOf(f.Run.Mode, "run", "repair"),
		"LastRunResult":      oneOf(f.Run.Result, RunOK, RunFailed, RunIncomplete, RunNone),
		"LastRunTime":        stamp(f.Run.Time),
		"FailedSteps":        names(f.Run.FailedSteps),
		"DoctorResult":       DoctorNotRun,
		"DoctorTime":         "",
		"DoctorFailedChecks": "",
	}
	if f.ClaudeCodeVersion != "" {
		c["ClaudeCodeVersion"] = version(f.ClaudeCodeVersion)
	}
	if d := f.Doctor; d != nil {
		c["DoctorResult"] = oneOf(d.Result, DoctorOK, DoctorFailed)
		c["DoctorTime"] = stamp(d.Time)
		c["DoctorFailedChecks"] = names(d.FailedChecks)
	}
	return Item{SchemaVersion: SchemaVersion, TypeName: TypeName, Content: c}
}

func version(v string) string {
	if versionPattern.MatchString(v) {
		return v
	}
	return "unknown"
}

func oneOf(v string, allowed ...string) string {
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	return ""
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(TimeLayout)
}

// names joins ccboot's step or check names with commas, dropping anything
// that is not one (sorted as given: the engine's order).
func names(list []string) string {
	var out []string
	for _, n := range list {
		if namePattern.MatchString(n) {
			out = append(out, n)
		}
	}
	return strings.Join(out, ",")
}

// Marshal renders the item and checks it as the agent would.
func (it Item) Marshal() ([]byte, error) {
	data, err := json.MarshalIndent(it, "", "  ")
	if err != nil {
		return nil, err
	}
	data = append(data, '\n')
	if err := Validate(data); err != nil {
		return nil, err
	}
	return data, nil
}

// Validate checks a custom inventory file the way the SSM agent does before
// it uploads it, with the API's documented limits: a file that fails here
// would be dropped by the agent (it logs and skips it).
func Validate(data []byte) error {
	if len(data) > maxItemBytes {
		return fmt.Errorf("custom inventory file is %d bytes, over ccboot's bound of %d", len(data), maxItemBytes)
	}
	var raw struct {
		SchemaVersion string `json:"SchemaVersion"`
		TypeName      string `json:"TypeName"`
		Content       any    `json:"Content"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("custom inventory file is not JSON: %w", err)
	}
	switch {
	case raw.TypeName == "" || len(raw.TypeName) > maxTypeName:
		return fmt.Errorf("TypeName %q: 1 to %d characters", raw.TypeName, maxTypeName)
	case !strings.HasPrefix(raw.TypeName, "Custom:") || !typeNamePattern.MatchString(raw.TypeName):
		return fmt.Errorf("TypeName %q must start with \"Custom:\"", raw.TypeName)
	case !schemaVersionPattern.MatchString(raw.SchemaVersion):
		return fmt.Errorf("SchemaVersion %q is not like 1.0", raw.SchemaVersion)
	case raw.Content == nil:
		return errors.New("custom inventory file has no Content")
	}
	var entries []any
	switch c := raw.Content.(type) {
	case map[string]any:
		entries = []any{c}
	case []any:
		entries = c
	default:
		return errors.New("the Content section is neither an object nor a list of objects")
	}
	for _, e := range entries {
		attrs, ok := e.(map[string]any)
		if !ok {
			return errors.New("a Content entry is not an object")
		}
		if len(attrs) > maxEntries {
			return fmt.Errorf("a Content entry has %d attributes, over %d", len(attrs), maxEntries)
		}
		for k, v := range attrs {
			s, ok := v.(string)
			switch {
			case k == "" || len(k) > maxKeyLen:
				return fmt.Errorf("attribute name %q: 1 to %d characters", k, maxKeyLen)
			case !ok:
				return fmt.Errorf("attribute %s is not a string (the agent takes strings only)", k)
			case len(s) > maxValueLen:
				return fmt.Errorf("attribute %s is %d characters, over %d", k, len(s), maxValueLen)
			}
		}
	}
	return nil
}

// ValidTime reports whether s is written as the agent writes CaptureTime.
func ValidTime(s string) bool { return captureTimePattern.MatchString(s) }

// dirSpec and fileSpec: the agent keeps its data store root's alone
// (appconfig: "Limit READ, WRITE and EXECUTE access to administrators/root"),
// so the folders ccboot creates before the agent has run are no more open
// than the agent would make them, and the file likewise. Nothing in it is
// secret; it is simply not the user's business to read the agent's store.
var (
	dirSpec  = fsroot.FileSpec{Mode: 0o700, UID: 0, GID: 0}
	fileSpec = fsroot.FileSpec{Mode: 0o600, UID: 0, GID: 0}
)

// Write puts the item into the agent's folder for instanceID and returns
// the file's path in the root, and whether it changed. Missing folders are
// created root's alone (the agent creates the same ones when it starts;
// ccboot may run first at boot, or before the agent is installed). Existing
// folders are left as they are, but each one on the way must be a real
// directory of root's that no one else can write: a link, or a folder a
// user could swap an entry in, would let the user steer root's write.
func Write(sys *fsroot.Tree, instanceID string, it Item) (string, bool, error) {
	dir, err := Dir(instanceID)
	if err != nil {
		return "", false, err
	}
	file := path.Join(dir, FileName)
	data, err := it.Marshal()
	if err != nil {
		return "", false, fmt.Errorf("inventory: %w", err)
	}
	if err := vetDirs(sys, dir); err != nil {
		return "", false, err
	}
	if _, err := sys.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		if _, err := sys.EnsureDir(dir, dirSpec); err != nil {
			return "", false, fmt.Errorf("inventory folder: %w", err)
		}
	}
	changed, err := sys.WriteFile(file, data, fileSpec)
	if err != nil {
		return "", false, fmt.Errorf("inventory: %w", err)
	}
	return "/" + file, changed, nil
}

// vetDirs checks each existing folder from var/lib down to dir.
func vetDirs(sys *fsroot.Tree, dir string) error {
	parts := strings.Split(dir, "/")
	for i := 2; i <= len(parts); i++ { // from var/lib: var is the system's
		p := strings.Join(parts[:i], "/")
		fi, err := sys.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // the rest is created, root's
		}
		if err != nil {
			return fmt.Errorf("inventory folder %s: %w", sys.Path(p), err)
		}
		switch uid, _ := fsroot.Owner(fi); {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := sys.Readlink(p)
			return fmt.Errorf("refusing inventory folder %s: it %w to %s; ccboot never writes through links (remove the link and rerun)", sys.Path(p), fsroot.ErrSymlink, fsroot.Quote(target))
		case !fi.IsDir():
			return fmt.Errorf("inventory folder %s is a %s, not a directory; move it away and rerun", sys.Path(p), fsroot.Kind(fi.Mode()))
		case uid != 0:
			return fmt.Errorf("refusing inventory folder %s: it %w (uid %d, not root); the SSM agent's folders are root's: chown root:root it and rerun", sys.Path(p), fsroot.ErrOwner, uid)
		case fi.Mode().Perm()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0:
			return fmt.Errorf("refusing inventory folder %s: mode %04o lets others replace its entries; chmod go-w it and rerun", sys.Path(p), fi.Mode().Perm())
		}
	}
	return nil
}

// Read returns the inventory file written for instanceID (status shows
// where it is). A link or a file that is not the agent's shape is an error.
func Read(sys *fsroot.Tree, instanceID string) (string, Item, error) {
	var it Item
	file, err := Path(instanceID)
	if err != nil {
		return "", it, err
	}
	if err := vetDirs(sys, path.Dir(file)); err != nil {
		return "/" + file, it, err
	}
	data, err := sys.ReadFile(file)
	if err != nil {
		return "/" + file, it, err
	}
	if err := Validate(data); err != nil {
		return "/" + file, it, fmt.Errorf("%s: %w", sys.Path(file), err)
	}
	if err := json.Unmarshal(data, &it); err != nil {
		return "/" + file, it, fmt.Errorf("%s: %w", sys.Path(file), err)
	}
	return "/" + file, it, nil
}

// lockPath serialises the writers (a run, doctor): each reads the state
// and doctor's record and writes the item while holding it, so the last
// writer always reports the newest of both. It is held for milliseconds;
// the file is root's alone (0600) so no user can hold it.
const lockPath = "var/lib/ccboot/inventory.lock"

// Refresh writes the inventory for instanceID from the newest facts: it
// calls facts (which reads the state file) and LoadDoctor under the lock.
func Refresh(sys *fsroot.Tree, instanceID string, facts func() (Facts, error)) (string, bool, error) {
	if _, err := Dir(instanceID); err != nil {
		return "", false, err
	}
	unlock, err := lock(sys)
	if err != nil {
		return "", false, err
	}
	defer unlock()
	f, err := facts()
	if err != nil {
		return "", false, err
	}
	if f.Doctor, err = LoadDoctor(sys); err != nil {
		return "", false, err
	}
	return Write(sys, instanceID, Build(f))
}

func lock(sys *fsroot.Tree) (func(), error) {
	if _, err := sys.EnsureDir(path.Dir(lockPath), fsroot.FileSpec{Mode: 0o755, UID: 0, GID: 0}); err != nil {
		return nil, fmt.Errorf("inventory lock: %w", err)
	}
	f, err := sys.OpenFile(lockPath, unix.O_RDWR|unix.O_CREAT, 0o600)
	if err != nil {
		return nil, fmt.Errorf("inventory lock %s: %w", sys.Path(lockPath), err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("inventory lock %s: %w", sys.Path(lockPath), err)
	}
	return func() { f.Close() }, nil
}
