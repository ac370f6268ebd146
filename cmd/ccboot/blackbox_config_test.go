package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
)

var updateConfigGolden = flag.Bool("update-config-golden", false, "rewrite cmd/ccboot/testdata/config-errors.golden")

// brokenConf holds two mistakes: a bad value and a misspelled key.
const brokenConf = "[swap]\nsize = 12X\n[aws]\nregoin = us-east-1\n"

func writeConf(t *testing.T, root, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, "etc/ccboot"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/ccboot/ccboot.conf"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tree lists every path under root with its size and mtime, to prove a
// command wrote nothing.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		m[p] = fmt.Sprint(fi.Mode(), fi.ModTime(), fi.Size())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sameTree(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for p, v := range after {
		if before[p] != v {
			t.Errorf("%s changed %s", what, p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("%s removed %s", what, p)
		}
	}
}

// TestBlackboxConfigErrorsGolden: three mistakes at once (a bad value, an
// unknown key with a near-miss, a bad --set) are all reported, one line
// each, by run and plan alike; exit 3 and nothing written.
func TestBlackboxConfigErrorsGolden(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	writeConf(t, root, brokenConf)
	before := tree(t, root)
	golden := filepath.Join("testdata", "config-errors.golden")
	for _, cmd := range []string{"run", "plan", "repair"} {
		r := ccboot(t, cmd, "--root", root, "--imds-endpoint", "http://127.0.0.1:9", "--set", "aws.region=mars-1")
		if r.code != 3 || r.stdout != "" {
			t.Fatalf("%s: exit %d, stdout %q; want 3 and nothing run", cmd, r.code, r.stdout)
		}
		got := strings.ReplaceAll(r.stderr, root, "ROOT")
		if *updateConfigGolden && cmd == "run" {
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) {
			t.Errorf("%s stderr:\n%s\nwant (%s):\n%s", cmd, got, golden, want)
		}
	}
	sameTree(t, "a refused config", before, tree(t, root))
}

// TestBlackboxStatusWithBrokenConfig: status still shows the last run when
// the config is broken, adds the problems (config_errors in JSON) and
// exits 1; --check says it needs a valid config and shows the run anyway;
// --wait does not wait for a run that cannot come; and none of it writes.
func TestBlackboxStatusWithBrokenConfig(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	imds := aemmtest.Start(t, aemmtest.Default())
	flags := []string{"--root", root, "--imds-endpoint", imds}

	// No run yet and a broken config: both said, exit 1.
	writeConf(t, root, brokenConf)
	fresh, code := statusWithConfig(t, flags...)
	if code != 1 || fresh.Complete || len(fresh.ConfigErrors) != 2 {
		t.Fatalf("fresh root: exit %d, %+v", code, fresh)
	}

	// A good run, then the config breaks.
	if err := os.Remove(filepath.Join(root, "etc/ccboot/ccboot.conf")); err != nil {
		t.Fatal(err)
	}
	if r := ccboot(t, append([]string{"run"}, flags...)...); r.code != 0 {
		t.Fatalf("run: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	ok, code := statusWithConfig(t, flags...)
	if code != 0 || ok.ConfigErrors == nil || len(ok.ConfigErrors) != 0 {
		t.Fatalf("valid (missing) config: exit %d, config_errors %#v; want 0 and []", code, ok.ConfigErrors)
	}
	writeConf(t, root, brokenConf)
	before := tree(t, root)

	rep, code := statusWithConfig(t, flags...)
	if code != 1 || !rep.Complete || len(rep.Steps) != len(ok.Steps) || rep.Started != ok.Started {
		t.Fatalf("json: exit %d, complete %v, %d steps (want %d, the last run's)", code, rep.Complete, len(rep.Steps), len(ok.Steps))
	}
	if len(rep.ConfigErrors) != 2 || !strings.Contains(rep.ConfigErrors[0], `[swap] size = "12X"`) || !strings.Contains(rep.ConfigErrors[1], "did you mean [aws] region?") {
		t.Fatalf("config_errors %q", rep.ConfigErrors)
	}

	text := ccboot(t, append([]string{"status"}, flags...)...)
	if text.code != 1 || !strings.Contains(text.stdout, "profile-env") || !strings.Contains(text.stdout, "done: ") {
		t.Fatalf("text: exit %d, want 1 and the last run:\n%s%s", text.code, text.stdout, text.stderr)
	}
	var configLines []string
	for _, l := range strings.Split(text.stdout, "\n") {
		if strings.HasPrefix(l, "config error: ") {
			configLines = append(configLines, l)
		}
	}
	if len(configLines) != 2 || !strings.Contains(configLines[0], "ccboot.conf: [swap] size") || !strings.Contains(configLines[1], "[aws] regoin") {
		t.Fatalf("text: config lines %q in:\n%s", configLines, text.stdout)
	}

	check := ccboot(t, append([]string{"status", "--check"}, flags...)...)
	if check.code != 1 || strings.Count(check.stderr, "\n") != 1 || !strings.Contains(check.stderr, "--check needs a valid config") ||
		!strings.Contains(check.stdout, "profile-env") || !strings.Contains(check.stdout, "config error: ") {
		t.Fatalf("--check: exit %d\nstdout:\n%s\nstderr:\n%s", check.code, check.stdout, check.stderr)
	}

	start := time.Now()
	wait := ccboot(t, append([]string{"status", "--wait", "--timeout", "60s"}, flags...)...)
	if wait.code != 1 || time.Since(start) > 30*time.Second || !strings.Contains(wait.stdout, "config error: ") {
		t.Fatalf("--wait with a broken config: exit %d after %s\n%s%s", wait.code, time.Since(start), wait.stdout, wait.stderr)
	}
	sameTree(t, "status with a broken config", before, tree(t, root))
}

type statusWithErrors struct {
	bootstrap.Report
	ConfigErrors []string `json:"config_errors"`
}

func statusWithConfig(t *testing.T, args ...string) (statusWithErrors, int) {
	t.Helper()
	r := ccboot(t, append([]string{"status", "--format", "json"}, args...)...)
	var s statusWithErrors
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("status json: %v\n%s%s", err, r.stdout, r.stderr)
	}
	return s, r.code
}

// TestBlackboxSwapPathRefusesNonSwapFile: [swap] path = /etc/shadow (issue
// 14, finding 9) fails the swap step with one line naming the file and the
// fix, in plan and run, and the file stays as it was.
func TestBlackboxSwapPathRefusesNonSwapFile(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	imds := aemmtest.Start(t, aemmtest.Default())
	shadow := filepath.Join(root, "etc/shadow")
	want, _ := os.ReadFile(shadow)
	flags := []string{"--root", root, "--imds-endpoint", imds, "--set", "swap.path=/etc/shadow"}
	plan := ccboot(t, append([]string{"plan"}, flags...)...)
	run := ccboot(t, append([]string{"run"}, flags...)...)
	for name, r := range map[string]result{"plan": plan, "run": run} {
		if r.code != 1 || !strings.Contains(stepOutputLine(r.stdout, "swap"), shadow+" exists and is not a swap file") {
			t.Errorf("%s: exit %d, want 1 and the swap step refusing:\n%s%s", name, r.code, r.stdout, r.stderr)
		}
	}
	if got, _ := os.ReadFile(shadow); string(got) != string(want) {
		t.Fatal("etc/shadow was changed")
	}
	if fstab, _ := os.ReadFile(filepath.Join(root, "etc/fstab")); strings.Contains(string(fstab), "/etc/shadow") {
		t.Fatalf("fstab names /etc/shadow:\n%s", fstab)
	}
}

// stepOutputLine is the report line of step.
func stepOutputLine(out, step string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, step+" ") {
			return l
		}
	}
	return ""
}

// TestBlackboxPackageNameGrammar: a package name apt would read as
// "remove" is refused at load, exit 3, naming the key, the name and the rule.
func TestBlackboxPackageNameGrammar(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	before := tree(t, root)
	r := ccboot(t, "run", "--root", root, "--imds-endpoint", "http://127.0.0.1:9", "--set", "packages.install=git openssh-server-")
	if r.code != 3 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, `--set packages.install="git openssh-server-": "openssh-server-" ends in -, which apt reads as "remove openssh-server"`) {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	sameTree(t, "a refused package name", before, tree(t, root))
}
