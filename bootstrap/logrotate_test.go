package bootstrap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

// TestLogIsRotatedWhenOverTheBound: the log cannot grow without bound
// (issue 14 finding 3): over LogMaxSize it becomes ccboot.log.1 when a run
// opens it, replacing the previous .1.
func TestLogIsRotatedWhenOverTheBound(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	sys, err := fsroot.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	logPath := filepath.Join(root, LogPath)
	os.MkdirAll(filepath.Dir(logPath), 0o755)
	os.WriteFile(logPath+".1", []byte("oldest\n"), 0o640)
	big := strings.Repeat("x", LogMaxSize) + "\n"
	os.WriteFile(logPath, []byte(big), 0o640)

	s := &Session{}
	f := s.openLogFile(sys)
	if f == nil {
		t.Fatal("log not opened")
	}
	f.WriteString("new run\n")
	f.Close()
	if b, _ := os.ReadFile(logPath); string(b) != "new run\n" {
		t.Errorf("log after rotation: %d bytes", len(b))
	}
	if fi, _ := os.Stat(logPath + ".1"); fi == nil || fi.Size() != int64(len(big)) {
		t.Errorf("ccboot.log.1 is not the rotated log")
	}

	// Under the bound: appended to.
	f = s.openLogFile(sys)
	f.WriteString("second\n")
	f.Close()
	if b, _ := os.ReadFile(logPath); string(b) != "new run\nsecond\n" {
		t.Errorf("log under the bound: %q", b)
	}
}

// TestSaveStateBoundsMessages: a step error cannot make the state file grow
// with the input that caused it.
func TestSaveStateBoundsMessages(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	sys, err := fsroot.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	huge := strings.Repeat("A", 20<<20)
	r := Report{Steps: []StepReport{{Name: "aws-config", Result: ResultFailed, Error: huge, Notes: []string{huge}, Changes: []string{huge}}}}
	if err := SaveState(sys, r); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(root, StatePath))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 16<<10 {
		t.Errorf("state.json is %d bytes", fi.Size())
	}
	if r.Steps[0].Error != huge {
		t.Error("SaveState changed the caller's report")
	}
}
