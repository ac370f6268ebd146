package bootstrap

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"

	"github.com/ccboot/ccboot/bootstrap/runner"
)

func TestImageStepsKeepsOrderAndScope(t *testing.T) {
	all := []Step{
		&fakeStep{name: "pkgs", scope: ScopeImage},
		&fakeStep{name: "home", scope: ScopeInstance},
		&fakeStep{name: "tool", scope: ScopeImage, needs: []string{"pkgs"}},
	}
	got := ImageSteps(all)
	if len(got) != 2 || got[0].Name() != "pkgs" || got[1].Name() != "tool" {
		t.Fatalf("ImageSteps = %v, want pkgs, tool", got)
	}
}

// A bake whose image step fails installs nothing, writes no record and
// leaves the image as it was; instance steps are never even checked, and
// IMDS is never asked.
func TestBakeFailureInstallsNothing(t *testing.T) {
	root := t.TempDir()
	state := filepath.Join(root, StatePath)
	if err := os.MkdirAll(filepath.Dir(state), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(state, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	failing := &fakeStep{name: "pkgs", scope: ScopeImage, applyErr: errTest("mirror down")}
	instance := &fakeStep{name: "home", scope: ScopeInstance}
	run := &runner.Fake{}
	s, err := Open(Options{Root: root, Steps: []Step{failing, instance}, Version: "test", Bake: true, Runner: run})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Env.Log = zap.NewNop()
	if _, err := s.Env.Meta.Region(context.Background()); err == nil {
		t.Fatal("bake session answers metadata; it must never ask IMDS")
	}
	res, err := s.Bake(context.Background(), "/nonexistent/ccboot", nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Record != nil || !res.Report.Failed() {
		t.Fatalf("bake with a failing image step: record %+v, report %+v", res.Record, res.Report)
	}
	if instance.checks.Load() != 0 {
		t.Errorf("instance step checked %d times during a bake", instance.checks.Load())
	}
	for _, p := range []string{BakeRecordPath, InstalledBinary, UnitPath, LogPath} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("failed bake left %s", p)
		}
	}
	if _, err := os.Stat(state); err != nil {
		t.Errorf("failed bake removed instance data it should have left alone: %v", err)
	}
	if calls := run.Calls(); len(calls) != 0 {
		t.Errorf("failed bake ran %v", calls)
	}
}
