package bootstrap

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

// Result is how a step ended.
type Result string

const (
	ResultOK      Result = "ok"      // already as desired
	ResultChanged Result = "changed" // Apply ran and the re-check passed
	ResultFailed  Result = "failed"  // Check or Apply failed, or still differs after Apply
	ResultSkipped Result = "skipped" // turned off by config or flags; never counts as ok
	ResultBlocked Result = "blocked" // not run because a step it needs did not succeed
	ResultDrift   Result = "drift"   // plan/check only: differs, nothing was changed
	ResultPending Result = "pending" // not finished yet (a run in progress or killed)
)

// Succeeded reports whether the step is in its desired state.
func (r Result) Succeeded() bool { return r == ResultOK || r == ResultChanged }

// Mode is what a run is allowed to do.
type Mode string

const (
	ModeRun    Mode = "run"    // converge; steps recorded as done on this instance are not re-checked
	ModeRepair Mode = "repair" // converge every step, ignoring recorded success
	ModePlan   Mode = "plan"   // Check only, with diffs
	ModeCheck  Mode = "check"  // Check only (status --check)
	ModeBake   Mode = "bake"   // image steps only, into an image (ccboot bake)
)

func (m Mode) converges() bool { return m == ModeRun || m == ModeRepair }

// StepReport is one step's outcome.
type StepReport struct {
	Name       string    `json:"name"`
	Result     Result    `json:"result"`
	Changes    []string  `json:"changes,omitempty"`
	Notes      []string  `json:"notes,omitempty"`
	Error      string    `json:"error,omitempty"`
	Started    time.Time `json:"started,omitzero"`
	DurationMS int64     `json:"duration_ms"`
	Diff       string    `json:"diff,omitempty"`
}

// Report is one run's outcome; the state file holds the last run's.
type Report struct {
	Version    string    `json:"ccboot_version"`
	Mode       Mode      `json:"mode"`
	InstanceID string    `json:"instance_id,omitempty"`
	ConfigHash string    `json:"config_hash"`
	PID        int       `json:"pid"`
	Started    time.Time `json:"started"`
	Finished   time.Time `json:"finished,omitzero"`
	Complete   bool      `json:"complete"`
	LogFile    string    `json:"log_file,omitempty"`
	// WaitConditionSignalled is the status sent to [ccboot]
	// wait_condition_url for this instance; it is sent once per instance.
	WaitConditionSignalled string       `json:"wait_condition_signalled,omitempty"`
	Steps                  []StepReport `json:"steps"`
}

// Count returns how many steps ended with r.
func (r *Report) Count(res Result) int {
	n := 0
	for _, s := range r.Steps {
		if s.Result == res {
			n++
		}
	}
	return n
}

// Failed reports whether any step failed or was blocked.
func (r *Report) Failed() bool { return r.Count(ResultFailed)+r.Count(ResultBlocked) > 0 }

// Step finds a step's report by name.
func (r *Report) Step(name string) (StepReport, bool) {
	for _, s := range r.Steps {
		if s.Name == name {
			return s, true
		}
	}
	return StepReport{}, false
}

// Engine runs steps in dependency order, independent ones side by side.
type Engine struct {
	Env   *Env
	Steps []Step
	// Skip names steps turned off; Only, when non-empty, names the only
	// steps to run. Both are validated against Steps by Validate.
	Skip, Only []string
	// Previous is the recorded last run, used by ModeRun to leave steps
	// that already converged on this instance alone.
	Previous *Report
	// Save is called with the report so far each time a step finishes, so
	// a killed run leaves an accurate state file behind.
	Save func(Report) error
	// Finished is called as each step ends (console output).
	Finished func(StepReport)

	identity Report // instance, config hash and version of the current run
}

// Validate checks that Skip, Only and every step's Needs name real steps.
func (e *Engine) Validate() error {
	names := map[string]bool{}
	for _, s := range e.Steps {
		names[s.Name()] = true
	}
	known := strings.Join(e.names(), ", ")
	for _, list := range [][]string{e.Skip, e.Only} {
		for _, n := range list {
			if !names[n] {
				return &ConfigError{fmt.Sprintf("unknown step %s in [steps] skip, --skip or --only; steps are: %s", quoteValue(n), known)}
			}
		}
	}
	seen := map[string]bool{}
	for _, s := range e.Steps {
		for _, need := range s.Needs() {
			if !seen[need] {
				return fmt.Errorf("step %s needs %s, which is not listed before it", s.Name(), need)
			}
		}
		seen[s.Name()] = true
	}
	return nil
}

func (e *Engine) names() []string {
	var out []string
	for _, s := range e.Steps {
		out = append(out, s.Name())
	}
	return out
}

func (e *Engine) turnedOff(name string) bool {
	if slices.Contains(e.Skip, name) {
		return true
	}
	return len(e.Only) > 0 && !slices.Contains(e.Only, name)
}

// Execute runs every step once in mode and returns the report. A step starts
// when all steps it needs have finished; a step whose needs did not succeed
// is blocked, while independent steps still run.
func (e *Engine) Execute(ctx context.Context, mode Mode, report Report) Report {
	report.Mode = mode
	e.identity = report
	report.Steps = make([]StepReport, len(e.Steps))
	for i, s := range e.Steps {
		report.Steps[i] = StepReport{Name: s.Name(), Result: ResultPending}
	}
	var mu sync.Mutex // guards report
	done := map[string]chan struct{}{}
	for _, s := range e.Steps {
		done[s.Name()] = make(chan struct{})
	}
	resultOf := func(name string) Result {
		mu.Lock()
		defer mu.Unlock()
		s, _ := report.Step(name)
		return s.Result
	}
	var wg sync.WaitGroup
	for i, s := range e.Steps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[s.Name()])
			for _, need := range s.Needs() {
				<-done[need]
			}
			fsroot.CrashPoint("step/begin", s.Name())
			sr := e.runStep(ctx, mode, i, s, resultOf)
			mu.Lock()
			report.Steps[i] = sr
			snapshot := report
			snapshot.Steps = slices.Clone(report.Steps)
			if e.Save != nil && !e.recorded(sr) {
				if err := e.Save(snapshot); err != nil {
					e.Env.Log.Warn("could not save state", zap.Error(err))
				}
			}
			fsroot.CrashPoint("step/saved", s.Name())
			if e.Finished != nil {
				e.Finished(sr)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	report.Complete = true
	return report
}

func (e *Engine) runStep(ctx context.Context, mode Mode, i int, s Step, resultOf func(string) Result) (sr StepReport) {
	sr = StepReport{Name: s.Name(), Started: time.Now()}
	defer func() { sr.DurationMS = time.Since(sr.Started).Milliseconds() }()
	log := e.Env.Log.With(zap.String("step", s.Name()))
	if e.turnedOff(s.Name()) {
		sr.Result = ResultSkipped
		sr.Notes = []string{"turned off by [steps] skip or --skip/--only"}
		return sr
	}
	if mode.converges() {
		for _, need := range s.Needs() {
			if r := resultOf(need); !r.Succeeded() && r != ResultSkipped {
				sr.Result = ResultBlocked
				sr.Error = fmt.Sprintf("not run: it needs step %s, which ended %s", need, r)
				return sr
			}
		}
	}
	if mode == ModeRun && e.convergedBefore(s.Name()) {
		sr.Result = ResultOK
		sr.Notes = []string{"converged earlier on this instance; `ccboot repair` re-checks it"}
		return sr
	}

	env := *e.Env
	env.Log = log
	prefix := fmt.Sprintf("step %d/%d %s", i+1, len(e.Steps), s.Name())
	env.Progress = func(msg string) { e.Env.Progress(prefix + ": " + msg) }
	env.Progress("checking")

	drift, err := s.Check(ctx, &env)
	if err != nil {
		return failed(sr, log, "check", err)
	}
	sr.Notes, sr.Diff = drift.Notes, drift.Diff
	if drift.InSync() {
		sr.Result = ResultOK
		return sr
	}
	sr.Changes = drift.Changes
	if !mode.converges() {
		sr.Result = ResultDrift
		return sr
	}
	log.Info("applying", zap.Strings("changes", drift.Changes))
	env.Progress(strings.Join(drift.Changes, "; "))
	if err := s.Apply(ctx, &env); err != nil {
		return failed(sr, log, "apply", err)
	}
	after, err := s.Check(ctx, &env)
	if err != nil {
		return failed(sr, log, "verify", err)
	}
	sr.Notes = after.Notes
	if !after.InSync() {
		return failed(sr, log, "verify", fmt.Errorf("still differs after apply: %s", strings.Join(after.Changes, "; ")))
	}
	sr.Result = ResultChanged
	log.Info("changed", zap.Strings("changes", sr.Changes))
	return sr
}

func failed(sr StepReport, log *zap.Logger, phase string, err error) StepReport {
	sr.Result = ResultFailed
	sr.Error = err.Error()
	log.Error(phase+" failed", zap.Error(err))
	return sr
}

// recorded: the state file already says this step is ok, so saving now
// would only rewrite (and fsync) it with new timestamps. A no-op repair then
// writes the state once, at the end, instead of once per step; a run killed
// before that leaves the previous report, which still describes the system.
func (e *Engine) recorded(sr StepReport) bool {
	if sr.Result != ResultOK || e.Previous == nil || !e.Previous.Complete {
		return false
	}
	p, ok := e.Previous.Step(sr.Name)
	return ok && p.Result.Succeeded()
}

// convergedBefore: the recorded run was on this instance, with this config
// and this ccboot, and the step ended in its desired state.
func (e *Engine) convergedBefore(name string) bool {
	p := e.Previous
	if p == nil || p.InstanceID == "" {
		return false
	}
	cur := e.identity
	if p.InstanceID != cur.InstanceID || p.ConfigHash != cur.ConfigHash || p.Version != cur.Version {
		return false
	}
	s, ok := p.Step(name)
	return ok && s.Result.Succeeded()
}
