package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
)

// Terminal escapes planted in the user's files (an OSC window-title change
// and a screen clear) must reach root's terminal escaped, never raw: in the
// plan diff of ~/.bashrc, in a step error quoting a malformed
// ~/.aws/config line, in status, and in a config error from ccboot.conf.
func TestBlackboxNoRawTerminalEscapes(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	imds := aemmtest.Start(t, aemmtest.Default())
	const osc, clear = "\x1b]0;root@prod\x07", "\x1b[2J\x1b[H"
	home := filepath.Join(root, "home/ec2-user")
	bashrc := "# ~/.bashrc\nexport EDITOR=vi\nPS1='" + osc + "\\u$ '\necho '" + clear + "'\n"
	if err := os.WriteFile(filepath.Join(home, ".bashrc"), []byte(bashrc), 0o644); err != nil {
		t.Fatal(err)
	}
	mustMkdirOwned(t, filepath.Join(home, ".aws"), 0o700)
	cfg := filepath.Join(home, ".aws/config")
	if err := os.WriteFile(cfg, []byte("[default]\nregion = eu-west-1\nbad line "+osc+clear+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(cfg, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	flags := []string{"--root", root, "--imds-endpoint", imds}
	outputs := map[string]result{}
	outputs["plan"] = ccboot(t, append([]string{"plan"}, flags...)...)
	outputs["run"] = ccboot(t, append([]string{"run"}, flags...)...)
	outputs["status"] = ccboot(t, append([]string{"status"}, flags...)...)
	outputs["status --format json"] = ccboot(t, append([]string{"status", "--format", "json"}, flags...)...)
	conf := filepath.Join(root, "etc/ccboot/ccboot.conf")
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("[ccboot]\nuser"+osc+" = x\n[swap\n"+clear+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	outputs["bad config"] = ccboot(t, append([]string{"plan"}, flags...)...)

	// The planted text is there to be seen (escaped), so the test is not
	// passing on output that never quoted it.
	if !strings.Contains(outputs["plan"].stdout, `\u001b]0;root@prod\u0007`) {
		t.Errorf("plan does not show the escaped OSC sequence from ~/.bashrc:\n%s", outputs["plan"].stdout)
	}
	if outputs["bad config"].code != exitUsage {
		t.Errorf("bad config: exit %d, want %d\n%s", outputs["bad config"].code, exitUsage, outputs["bad config"].stderr)
	}
	for name, r := range outputs {
		for _, out := range []string{r.stdout, r.stderr} {
			if strings.ContainsAny(out, "\x1b\x07\u009b") || !utf8.ValidString(out) {
				t.Errorf("%s printed a raw control character:\n%q", name, out)
			}
		}
	}
}

func mustMkdirOwned(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 1000, 1000); err != nil {
		t.Fatal(err)
	}
}
