package bootstrap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/ccboot/ccboot/bootstrap/fsroot"
	"github.com/ccboot/ccboot/bootstrap/metadata"
	"github.com/ccboot/ccboot/bootstrap/runner"
)

// BakeRecordPath says that an image was baked, by which ccboot and with
// what; `ccboot bake --check` reads it. It describes the image, not an
// instance, so it is the one thing bake leaves in /etc/ccboot besides the
// config.
const BakeRecordPath = "/etc/ccboot/baked.json"

// BakeRecord is what BakeRecordPath holds.
type BakeRecord struct {
	CcbootVersion string    `json:"ccboot_version"`
	BakedAt       time.Time `json:"baked_at"`
	ConfigHash    string    `json:"config_hash"`
	// Steps are the image steps with what they reported (installed
	// versions, where claude is).
	Steps []BakedStep `json:"steps"`
}

// BakedStep is one image step as bake left it.
type BakedStep struct {
	Name   string   `json:"name"`
	Result Result   `json:"result"`
	Notes  []string `json:"notes,omitempty"`
}

// instanceData is what an instance leaves on its disk that must not be in
// an image: ccboot's own state, log and lock, and cloud-init's record of
// the builder instance (otherwise the first boot of the image is not a
// first boot for cloud-init, and UserData does not run).
var instanceData = []string{
	StatePath,
	CreatedPath,
	LogPath,
	LogPath + ".1",
	LockDir,
	"/var/lib/cloud/instance",
	"/var/lib/cloud/instances",
	"/var/lib/cloud/data",
	"/var/lib/cloud/sem",
	"/var/log/cloud-init.log",
	"/var/log/cloud-init-output.log",
}

// errNoIMDSWhileBaking is every metadata answer during a bake: image steps
// must not depend on the builder instance.
var errNoIMDSWhileBaking = errors.New("no instance metadata while baking an image: this belongs to an instance step")

// ImageSteps is the subset of steps that belong in an image, in order.
func ImageSteps(all []Step) []Step {
	var out []Step
	for _, s := range all {
		if s.Scope() == ScopeImage {
			out = append(out, s)
		}
	}
	return out
}

// BakeResult is what Bake did.
type BakeResult struct {
	Report  Report
	Install InstallResult
	Record  *BakeRecord // nil when an image step failed
	Removed []string    // instance data removed from the image
}

// Bake converges the image steps, then installs ccboot itself (binary and
// enabled unit, not started), writes the bake record, and removes what
// belongs to an instance. It never asks IMDS. When an image step fails,
// nothing is installed and no record is written.
func (s *Session) Bake(ctx context.Context, self string, finished func(StepReport)) (BakeResult, error) {
	env := s.Env
	var res BakeResult
	lock, err := AcquireLock(ctx, env.Sys, env.Config.LockTimeout, nil)
	if err != nil {
		return res, err
	}
	defer lock.Release()
	report := Report{
		Version:    s.opts.Version,
		ConfigHash: ConfigHash(env.Config),
		PID:        os.Getpid(),
		Started:    time.Now().UTC(),
	}
	eng := &Engine{Env: env, Steps: ImageSteps(s.opts.Steps), Skip: s.opts.Skip, Only: s.opts.Only, Finished: finished}
	env.Log.Info("bake start", zap.String("root", env.Root), zap.String("version", s.opts.Version))
	report = eng.Execute(ctx, ModeRepair, report)
	report.Mode = ModeBake
	report.Finished = time.Now().UTC()
	res.Report = report
	if report.Failed() {
		return res, nil
	}
	if res.Install, err = s.installFiles(ctx, self); err != nil {
		return res, err
	}
	rec := &BakeRecord{CcbootVersion: s.opts.Version, BakedAt: report.Finished, ConfigHash: report.ConfigHash}
	for _, st := range report.Steps {
		notes := slices.Clone(st.Notes)
		if !env.Live() {
			// Paths as the image will see them, not under the builder's --root.
			for i, n := range notes {
				notes[i] = strings.ReplaceAll(n, strings.TrimSuffix(env.Root, "/")+"/", "/")
			}
		}
		rec.Steps = append(rec.Steps, BakedStep{Name: st.Name, Result: st.Result, Notes: notes})
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return res, err
	}
	if _, err := env.Sys.EnsureDir("etc/ccboot", fsroot.FileSpec{Mode: 0o755, UID: 0, GID: 0}); err != nil {
		return res, fmt.Errorf("bake: %w", err)
	}
	if _, err := env.Sys.WriteFile(BakeRecordPath, append(data, '\n'), fsroot.FileSpec{Mode: 0o644, UID: 0, GID: 0}); err != nil {
		return res, fmt.Errorf("bake: write %s: %w", env.Sys.Path(BakeRecordPath), err)
	}
	res.Record = rec
	// The lock goes too: release it first, so the file removed is not one
	// a waiting ccboot has just opened.
	lock.Release()
	if res.Removed, err = s.removeInstanceData(ctx); err != nil {
		return res, err
	}
	return res, nil
}

// removeInstanceData deletes instanceData under the root. On a running
// builder cloud-init's own `cloud-init clean --logs` is used when present,
// since it knows its paths better than this list.
func (s *Session) removeInstanceData(ctx context.Context) ([]string, error) {
	env := s.Env
	if env.Live() {
		if _, err := env.Run.Run(ctx, runner.Cmd{Name: "cloud-init", Args: []string{"clean", "--logs"}}); err != nil {
			env.Log.Info("cloud-init clean unavailable; removing its instance data directly", zap.Error(err))
		}
	}
	var removed []string
	for _, p := range instanceData {
		ok, err := env.Sys.Exists(p)
		if err != nil {
			return removed, fmt.Errorf("bake: %w", err)
		}
		if !ok {
			continue
		}
		if err := env.Sys.RemoveAll(p); err != nil {
			return removed, fmt.Errorf("bake: remove %s (instance data must not be in an image): %w", env.Sys.Path(p), err)
		}
		removed = append(removed, p)
	}
	return removed, nil
}

// LoadBakeRecord reads the bake record; (nil, nil) when the image was not
// baked.
func LoadBakeRecord(sys *fsroot.Tree) (*BakeRecord, error) {
	data, err := sys.ReadFile(BakeRecordPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", sys.Path(BakeRecordPath), err)
	}
	var rec BakeRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("%s is not valid JSON (%v); run `ccboot bake` again", sys.Path(BakeRecordPath), err)
	}
	return &rec, nil
}

// BakeCheck is what `ccboot bake --check` found.
type BakeCheck struct {
	Record    *BakeRecord // nil: never baked
	Report    Report      // the image steps checked now
	Installed bool        // the ccboot binary and its enabled unit are in place
	Problems  []string
	// InstanceData present: fine on a booted instance, not in an image.
	InstanceData []string
}

// Baked reports whether the image is baked and still in sync.
func (c *BakeCheck) Baked() bool { return c.Record != nil && len(c.Problems) == 0 }

// CheckBake checks the image steps (read-only) and what bake installs.
func (s *Session) CheckBake(ctx context.Context) (*BakeCheck, error) {
	env := s.Env
	var c BakeCheck
	rec, err := LoadBakeRecord(env.Sys)
	if err != nil {
		return nil, err
	}
	c.Record = rec
	if rec == nil {
		c.Problems = append(c.Problems, fmt.Sprintf("not baked: no %s (run `ccboot bake`)", env.Sys.Path(BakeRecordPath)))
	}
	eng := &Engine{Env: env, Steps: ImageSteps(s.opts.Steps), Skip: s.opts.Skip, Only: s.opts.Only}
	c.Report = eng.Execute(ctx, ModeCheck, Report{Version: s.opts.Version, ConfigHash: ConfigHash(env.Config)})
	for _, st := range c.Report.Steps {
		switch st.Result {
		case ResultDrift:
			c.Problems = append(c.Problems, fmt.Sprintf("%s differs: %s", st.Name, joinChanges(st.Changes)))
		case ResultFailed:
			c.Problems = append(c.Problems, fmt.Sprintf("%s: %s", st.Name, st.Error))
		}
	}
	installed, why, err := s.checkInstalled(ctx)
	if err != nil {
		return nil, err
	}
	c.Installed = installed
	if !installed {
		c.Problems = append(c.Problems, why)
	}
	// Instance data is what a booted instance has; in an image about to be
	// snapshotted it is a mistake. bake --check cannot tell which it looks
	// at, so it says so without failing.
	for _, p := range instanceData {
		if ok, _ := env.Sys.Exists(p); ok && p != LockDir {
			c.InstanceData = append(c.InstanceData, env.Sys.Path(p))
		}
	}
	return &c, nil
}

func joinChanges(ch []string) string {
	if len(ch) > 3 {
		ch = append(slices.Clone(ch[:3]), fmt.Sprintf("and %d more", len(ch)-3))
	}
	return strings.Join(ch, "; ")
}

// noIMDS answers every metadata question with errNoIMDSWhileBaking.
func noIMDS() metadata.Source { return metadata.Static{Err: errNoIMDSWhileBaking} }
