//go:build reliability

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fuzzTargets are the parsers and editors that read what people and other
// tools write: the config file, /etc/fstab, ~/.bashrc's managed block,
// ~/.aws/config, and the renderers whose quoting keeps values data.
var fuzzTargets = []struct{ pkg, name string }{
	{"./bootstrap", "FuzzLoadConfig"},
	{"./steps", "FuzzEditFstab"},
	{"./steps", "FuzzEditManagedBlock"},
	{"./steps", "FuzzMergeAWSConfig"},
	{"./steps", "FuzzRenderProfileEnvQuoting"},
	{"./steps", "FuzzRenderAliasQuoting"},
}

// TestReliabilityFuzz runs each fuzz target for a bounded time
// (CCBOOT_FUZZTIME, default 15s) and counts targets that found a failing
// input. New failing inputs land in the package's testdata/fuzz, to be
// checked in as seeds once fixed. Not parallel: fuzzing uses every core,
// and it runs before the parallel families start.
func TestReliabilityFuzz(t *testing.T) {
	fuzztime := os.Getenv("CCBOOT_FUZZTIME")
	if fuzztime == "" {
		fuzztime = "15s"
	}
	if _, err := time.ParseDuration(fuzztime); err != nil {
		t.Fatalf("CCBOOT_FUZZTIME=%q: %v", fuzztime, err)
	}
	moduleRoot, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	crashes := 0
	for _, ft := range fuzzTargets {
		cmd := exec.Command("go", "test", "-run", "^$", "-fuzz", "^"+ft.name+"$", "-fuzztime", fuzztime, ft.pkg)
		cmd.Dir = moduleRoot
		start := time.Now()
		out, err := cmd.CombinedOutput()
		switch {
		case err != nil:
			crashes++
			t.Errorf("%s %s: %v\n%s", ft.pkg, ft.name, err, tail(string(out), 30))
		case !strings.Contains(string(out), "fuzz: elapsed"):
			crashes++
			t.Errorf("%s %s did not fuzz:\n%s", ft.pkg, ft.name, out)
		default:
			t.Logf("%s: %s, %s", ft.name, time.Since(start).Round(time.Second), lastFuzzLine(string(out)))
		}
	}
	fmt.Printf("fuzz: %d targets, %d crashes\n", len(fuzzTargets), crashes)
}

func lastFuzzLine(out string) string {
	last := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "fuzz: elapsed") {
			last = l
		}
	}
	return last
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
