package steps

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccboot/ccboot/bootstrap"
)

const enforcedAliasBlock = "# >>> ccboot aliases >>> (managed by ccboot; edit /etc/ccboot/ccboot.conf instead)\n" +
	"alias claude-ro='AWS_PROFILE=claudecode-readonly claude'\n" +
	"alias claude-el='/usr/local/bin/ccboot credentials elevated >/dev/null && AWS_PROFILE=claudecode-elevated claude'\n" +
	"# <<< ccboot aliases <<<\n"

// In enforced mode claude-el asks the broker first; claude-ro is unchanged.
func TestAliasesEnforcedBlockText(t *testing.T) {
	t.Parallel()
	c := bootstrap.DefaultConfig()
	c.TierMode = bootstrap.TierEnforced
	got, err := renderAliasBlock(c)
	if err != nil || got != enforcedAliasBlock {
		t.Errorf("block (%v):\n%s\nwant:\n%s", err, got, enforcedAliasBlock)
	}
}

// Real bash, with the installed binary's path pointed at a stand-in that
// answers like `ccboot credentials elevated`: refused, claude-el prints the
// broker's one line and exits 1 without starting Claude Code; approved, it
// runs Claude Code as Elevated with the arguments (--resume) passed on.
func TestAliasesEnforcedClaudeElAsksTheBrokerFirst(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	env, _ := newTestEnv(t)
	env.Config.TierMode = bootstrap.TierEnforced
	if err := (Aliases{}).Apply(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	stub := filepath.Join(dir, "ccboot")
	const refusal = "Elevated access is not approved: an admin runs `sudo ccboot elevate --for 30m`"
	script := "#!/bin/sh\n[ \"$1 $2\" = 'credentials elevated' ] || exit 2\nif [ -n \"$APPROVED\" ]; then echo '{\"Version\":1}'; exit 0; fi\necho '" + refusal + "' >&2\nexit 1\n"
	if err := os.WriteFile(stub, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	bashrc, err := os.ReadFile(bashrcFile(env))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(bashrc), enforcedAliasBlock) {
		t.Fatalf(".bashrc lacks the enforced block:\n%s", bashrc)
	}
	rc := filepath.Join(dir, "bashrc")
	if err := os.WriteFile(rc, []byte(strings.ReplaceAll(string(bashrc), bootstrap.InstalledBinary, stub)), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(approved string) (string, string, int) {
		sh := "shopt -s expand_aliases\n. \"$1\"\nclaude() { printf '[%s]' \"$AWS_PROFILE\" \"$@\"; }\nclaude-el --resume\n"
		cmd := exec.Command("bash", "--norc", "--noprofile", "-c", sh, "bash", rc)
		cmd.Env = append(os.Environ(), "APPROVED="+approved)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		_ = cmd.Run()
		return out.String(), errb.String(), cmd.ProcessState.ExitCode()
	}
	if out, errOut, code := run(""); code != 1 || out != "" || errOut != refusal+"\n" {
		t.Errorf("refused: exit %d, stdout %q, stderr %q; want exit 1, only the broker's line", code, out, errOut)
	}
	if out, errOut, code := run("1"); code != 0 || out != "[claudecode-elevated][--resume]" || errOut != "" {
		t.Errorf("approved: exit %d, stdout %q, stderr %q; want Claude Code as Elevated with --resume", code, out, errOut)
	}

	// Back to advisory: today's block again.
	env.Config.TierMode = bootstrap.TierAdvisory
	convergeStep(t, env, Aliases{})
	if got, _ := os.ReadFile(bashrcFile(env)); !strings.Contains(string(got), defaultAliasBlock(t)) {
		t.Errorf("advisory after enforced:\n%s", got)
	}
}
