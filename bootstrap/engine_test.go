package bootstrap

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ccboot/ccboot/bootstrap/fsroot"
	"github.com/ccboot/ccboot/bootstrap/metadata"
	"github.com/ccboot/ccboot/bootstrap/runner"
)

// fakeStep converges a flag in memory; it records how often it was checked
// and applied, and can be told to fail or to never converge.
type fakeStep struct {
	name       string
	needs      []string
	inSync     atomic.Bool
	applyErr   error
	checkErr   error
	stuck      bool // Apply "succeeds" but changes nothing
	checks     atomic.Int32
	applies    atomic.Int32
	applyDelay time.Duration
	running    *atomic.Int32 // shared: how many steps are inside Apply now
	maxRunning *atomic.Int32
	scope      Scope
}

func (s *fakeStep) Name() string    { return s.name }
func (s *fakeStep) Needs() []string { return s.needs }
func (s *fakeStep) Scope() Scope {
	if s.scope == "" {
		return ScopeInstance
	}
	return s.scope
}
func (s *fakeStep) Check(context.Context, *Env) (Drift, error) {
	s.checks.Add(1)
	if s.checkErr != nil {
		return Drift{}, s.checkErr
	}
	var d Drift
	if !s.inSync.Load() {
		d.Differ("set %s", s.name)
	}
	return d, nil
}
func (s *fakeStep) Apply(context.Context, *Env) error {
	s.applies.Add(1)
	if s.running != nil {
		n := s.running.Add(1)
		for {
			m := s.maxRunning.Load()
			if n <= m || s.maxRunning.CompareAndSwap(m, n) {
				break
			}
		}
		defer s.running.Add(-1)
	}
	time.Sleep(s.applyDelay)
	if s.applyErr != nil {
		return s.applyErr
	}
	if !s.stuck {
		s.inSync.Store(true)
	}
	return nil
}

func testEngine(t *testing.T, steps ...Step) *Engine {
	t.Helper()
	sys, err := fsroot.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sys.Close() })
	env := &Env{Root: sys.Dir(), Sys: sys, Run: &runner.Fake{}, Meta: metadata.Static{}, Log: zap.NewNop(), Config: DefaultConfig(), Progress: func(string) {}}
	return &Engine{Env: env, Steps: steps}
}

func results(r Report) map[string]Result {
	m := map[string]Result{}
	for _, s := range r.Steps {
		m[s.Name] = s.Result
	}
	return m
}

func TestEngineConvergesThenNoOp(t *testing.T) {
	t.Parallel()
	a, b := &fakeStep{name: "a"}, &fakeStep{name: "b", needs: []string{"a"}}
	b.inSync.Store(true)
	e := testEngine(t, a, b)
	r := e.Execute(context.Background(), ModeRepair, Report{})
	if got := results(r); got["a"] != ResultChanged || got["b"] != ResultOK {
		t.Fatalf("first run = %v, want a changed, b ok", got)
	}
	if a.checks.Load() != 2 || a.applies.Load() != 1 {
		t.Fatalf("a: %d checks, %d applies; want check, apply, re-check", a.checks.Load(), a.applies.Load())
	}
	r = e.Execute(context.Background(), ModeRepair, Report{})
	if got := results(r); got["a"] != ResultOK || got["b"] != ResultOK || r.Count(ResultChanged) != 0 {
		t.Fatalf("second run = %v, want all ok", got)
	}
	if a.applies.Load() != 1 {
		t.Fatalf("second run applied again")
	}
}

func TestEngineFailureBlocksDependentsOnly(t *testing.T) {
	t.Parallel()
	pkgs := &fakeStep{name: "packages", applyErr: errors.New("apt exploded")}
	claude := &fakeStep{name: "claude-code", needs: []string{"packages"}}
	swap := &fakeStep{name: "swap"}
	r := testEngine(t, pkgs, claude, swap).Execute(context.Background(), ModeRun, Report{})
	got := results(r)
	if got["packages"] != ResultFailed || got["claude-code"] != ResultBlocked || got["swap"] != ResultChanged {
		t.Fatalf("results = %v, want packages failed, claude-code blocked, swap changed", got)
	}
	if claude.checks.Load() != 0 {
		t.Fatal("blocked step was checked")
	}
	if st, _ := r.Step("packages"); st.Error != "apt exploded" {
		t.Fatalf("error = %q", st.Error)
	}
	if !r.Failed() {
		t.Fatal("report with a failed step not Failed()")
	}
}

func TestEngineVerifiesAfterApply(t *testing.T) {
	t.Parallel()
	s := &fakeStep{name: "stuck", stuck: true}
	r := testEngine(t, s).Execute(context.Background(), ModeRepair, Report{})
	st, _ := r.Step("stuck")
	if st.Result != ResultFailed || st.Error == "" {
		t.Fatalf("step whose Apply changes nothing = %+v, want failed with an error", st)
	}
}

func TestEngineSkipAndOnly(t *testing.T) {
	t.Parallel()
	a, b, c := &fakeStep{name: "a"}, &fakeStep{name: "b", needs: []string{"a"}}, &fakeStep{name: "c"}
	e := testEngine(t, a, b, c)
	e.Skip = []string{"a"}
	r := e.Execute(context.Background(), ModeRun, Report{})
	got := results(r)
	if got["a"] != ResultSkipped || got["b"] != ResultChanged || got["c"] != ResultChanged {
		t.Fatalf("skip a: %v; want a skipped (not ok), dependents still run", got)
	}
	e = testEngine(t, &fakeStep{name: "a"}, &fakeStep{name: "c"})
	e.Only = []string{"c"}
	if got := results(e.Execute(context.Background(), ModeRun, Report{})); got["a"] != ResultSkipped || got["c"] != ResultChanged {
		t.Fatalf("only c: %v", got)
	}
	e.Only = []string{"nope"}
	if err := e.Validate(); err == nil {
		t.Fatal("unknown step in --only accepted")
	}
}

func TestEnginePlanChangesNothing(t *testing.T) {
	t.Parallel()
	a := &fakeStep{name: "a"}
	r := testEngine(t, a).Execute(context.Background(), ModePlan, Report{})
	if results(r)["a"] != ResultDrift || a.applies.Load() != 0 {
		t.Fatalf("plan: %v, %d applies", results(r), a.applies.Load())
	}
}

func TestEngineRunsIndependentStepsConcurrently(t *testing.T) {
	t.Parallel()
	var running, maxRunning atomic.Int32
	mk := func(name string, needs ...string) *fakeStep {
		return &fakeStep{name: name, needs: needs, applyDelay: 50 * time.Millisecond, running: &running, maxRunning: &maxRunning}
	}
	e := testEngine(t, mk("packages"), mk("claude", "packages"), mk("swap"), mk("profile"))
	r := e.Execute(context.Background(), ModeRun, Report{})
	if r.Count(ResultChanged) != 4 {
		t.Fatalf("results %v", results(r))
	}
	for _, st := range r.Steps {
		if st.DurationMS < 50 {
			t.Errorf("%s took %dms by the report; its Apply sleeps 50ms", st.Name, st.DurationMS)
		}
	}
	if maxRunning.Load() < 2 {
		t.Fatalf("at most %d steps applied at once; independent steps should overlap", maxRunning.Load())
	}
}

func TestEngineDependentWaitsForNeed(t *testing.T) {
	t.Parallel()
	var order []string
	var mu sync.Mutex
	rec := func(name string) { mu.Lock(); order = append(order, name); mu.Unlock() }
	first := &orderStep{fakeStep: fakeStep{name: "first", applyDelay: 30 * time.Millisecond}, rec: rec}
	second := &orderStep{fakeStep: fakeStep{name: "second", needs: []string{"first"}}, rec: rec}
	testEngine(t, first, second).Execute(context.Background(), ModeRun, Report{})
	if len(order) != 2 || order[0] != "first" {
		t.Fatalf("apply order %v, want first before second", order)
	}
}

type orderStep struct {
	fakeStep
	rec func(string)
}

func (s *orderStep) Apply(ctx context.Context, env *Env) error {
	err := s.fakeStep.Apply(ctx, env)
	s.rec(s.name)
	return err
}

func TestEngineRunTrustsRecordedSuccessOnSameInstance(t *testing.T) {
	t.Parallel()
	a := &fakeStep{name: "a"}
	e := testEngine(t, a)
	id := Report{InstanceID: "i-0123456789abcdef0", ConfigHash: "h", Version: "v"}
	prev := id
	prev.Steps = []StepReport{{Name: "a", Result: ResultChanged}}
	e.Previous = &prev
	r := e.Execute(context.Background(), ModeRun, id)
	if results(r)["a"] != ResultOK || a.checks.Load() != 0 {
		t.Fatalf("run after recorded success: %v with %d checks; want ok without checking", results(r), a.checks.Load())
	}
	// repair ignores it
	r = e.Execute(context.Background(), ModeRepair, id)
	if a.checks.Load() == 0 || results(r)["a"] != ResultChanged {
		t.Fatalf("repair did not re-check: %v", results(r))
	}
	// a new instance (an image launched again) re-checks too
	b := &fakeStep{name: "a"}
	e = testEngine(t, b)
	e.Previous = &prev
	other := id
	other.InstanceID = "i-0fedcba9876543210"
	e.Execute(context.Background(), ModeRun, other)
	if b.checks.Load() == 0 {
		t.Fatal("recorded success of another instance was trusted")
	}
}

func TestEngineSavesStateAfterEachStep(t *testing.T) {
	t.Parallel()
	a, b := &fakeStep{name: "a"}, &fakeStep{name: "b", needs: []string{"a"}}
	e := testEngine(t, a, b)
	var saves []Report
	var mu sync.Mutex
	e.Save = func(r Report) error { mu.Lock(); saves = append(saves, r); mu.Unlock(); return nil }
	e.Execute(context.Background(), ModeRun, Report{})
	if len(saves) != 2 {
		t.Fatalf("%d saves, want one per step", len(saves))
	}
	if got := results(saves[0]); got["a"] != ResultChanged || got["b"] != ResultPending {
		t.Fatalf("state after first step = %v, want a changed and b pending", got)
	}
}

func TestLockSerialisesAndNamesHolder(t *testing.T) {
	t.Parallel()
	sys, err := fsroot.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	ctx := context.Background()
	held, err := AcquireLock(ctx, sys, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The holder runs the same executable as the waiter (this test): a live
	// ccboot, so its PID is named.
	var sawHolder int
	_, err = AcquireLock(ctx, sys, 300*time.Millisecond, func(pid int) { sawHolder = pid })
	var busy *LockBusyError
	if !errors.As(err, &busy) || busy.Holder != os.Getpid() || sawHolder != busy.Holder {
		t.Fatalf("second lock: err=%v holder seen %d; want LockBusyError naming the holder %d", err, sawHolder, os.Getpid())
	}
	if isHeld, pid, err := LockHeld(sys); !isHeld || pid != os.Getpid() || err != nil {
		t.Fatalf("LockHeld = %v, %d, %v while held by %d", isHeld, pid, err, os.Getpid())
	}
	held.Release()
	again, err := AcquireLock(ctx, sys, time.Second, nil)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again.Release()
}
