package bootstrap

import (
	"context"
	"sync"
	"testing"
)

// A repair that finds every step as the state file already records it does
// not rewrite the state after each step (each save is two fsyncs); a step
// that changes something, or differs from the record, is still saved at once.
func TestEngineNoOpRepairSkipsPerStepSaves(t *testing.T) {
	t.Parallel()
	a, b, c := &fakeStep{name: "a"}, &fakeStep{name: "b", needs: []string{"a"}}, &fakeStep{name: "c"}
	a.inSync.Store(true)
	b.inSync.Store(true)
	e := testEngine(t, a, b, c)
	e.Previous = &Report{Complete: true, Steps: []StepReport{
		{Name: "a", Result: ResultChanged}, {Name: "b", Result: ResultOK}, {Name: "c", Result: ResultOK},
	}}
	var saves []Report
	var mu sync.Mutex
	e.Save = func(r Report) error { mu.Lock(); saves = append(saves, r); mu.Unlock(); return nil }
	e.Execute(context.Background(), ModeRepair, Report{})
	if len(saves) != 1 {
		t.Fatalf("%d saves, want 1 (only c changed)", len(saves))
	}
	if got := results(saves[0]); got["c"] != ResultChanged {
		t.Fatalf("saved state = %v, want c changed", got)
	}

	// Everything in sync and recorded: nothing saved per step.
	saves = nil
	e.Execute(context.Background(), ModeRepair, Report{})
	if len(saves) != 0 {
		t.Fatalf("%d per-step saves in a no-op repair, want 0", len(saves))
	}

	// A recorded failure that is now fine is saved at once.
	e.Previous.Steps[2].Result = ResultFailed
	e.Execute(context.Background(), ModeRepair, Report{})
	if len(saves) != 1 {
		t.Fatalf("%d saves after a recorded failure turned ok, want 1", len(saves))
	}
}
