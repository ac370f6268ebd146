package bootstrap

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// hasRawControl reports a byte a terminal could act on: C0 but newline and
// tab, DEL, and C1 (raw, or UTF-8 encoded).
func hasRawControl(s string) bool {
	for _, r := range s {
		if (r < 0x20 && r != '\n' && r != '\t') || (r >= 0x7f && r <= 0x9f) {
			return true
		}
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 && s[i] <= 0x9f && (i == 0 || s[i-1] != 0xc2) {
			return true // a lone C1 byte (not UTF-8)
		}
	}
	return false
}

func TestPrintable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"plain text, ünïcode, tab\tand\nnewline", "plain text, ünïcode, tab\tand\nnewline"},
		{"\x1b]0;pwned\x07title", `\u001b]0;pwned\u0007title`},
		{"\x1b[2J\x1b[Hclear", `\u001b[2J\u001b[Hclear`},
		{"cr\rover", `cr\u000dover`},
		{"del\x7f", `del\u007f`},
		{"c1 csi \u009b31m", `c1 csi \u009b31m`},
		{"lone byte \x9b31m", `lone byte \x9b31m`},
		{"nul\x00", `nul\u0000`},
	} {
		got := Printable(tc.in)
		if got != tc.want {
			t.Errorf("Printable(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if hasRawControl(got) {
			t.Errorf("Printable(%q) = %q still has a raw control character", tc.in, got)
		}
		if Printable(got) != got {
			t.Errorf("Printable is not idempotent on %q", got)
		}
	}
}

// JSON through the writer stays the same JSON: control characters become
// \u00XX, which JSON reads back as the same character.
func TestPrintableWriterKeepsJSON(t *testing.T) {
	t.Parallel()
	v := map[string]string{"error": "bad \x1b]0;x\x07 \u0085 \x7f line"}
	var buf bytes.Buffer
	if err := WriteJSON(PrintableWriter(&buf), v); err != nil {
		t.Fatal(err)
	}
	if hasRawControl(buf.String()) {
		t.Fatalf("raw control character in %q", buf.String())
	}
	var back map[string]string
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || back["error"] != v["error"] {
		t.Fatalf("JSON changed: %q (%v)", buf.String(), err)
	}
}

// Every human-readable rendering of a report escapes what a step quotes:
// an OSC title change and a screen clear from ~/.bashrc in a plan diff,
// and from an INI error in the step's error and notes.
func TestReportOutputHasNoRawEscapes(t *testing.T) {
	t.Parallel()
	const osc, clear = "\x1b]0;owned by root\x07", "\x1b[2J\x1b[H"
	bashrc := "# ~/.bashrc\nexport PS1='" + osc + "'\n" + clear + "\n"
	r := &Report{Version: "v1" + clear, Mode: ModePlan, InstanceID: "i-0123456789abcdef0" + osc, LogFile: "/var/log/ccboot.log" + osc, Steps: []StepReport{
		{Name: "aliases", Result: ResultDrift, Changes: []string{"add alias block" + osc}, Notes: []string{"first", "note " + clear},
			Diff: UnifiedDiff("/home/ec2-user/.bashrc"+osc, []byte(bashrc), []byte(bashrc+"alias claude-ro='x'\n"))},
		{Name: "aws-config", Result: ResultFailed, Error: "aws-config: ini: line 3: unclosed section " + osc + clear, Notes: []string{"n " + osc}},
	}}
	var plan, status bytes.Buffer
	PrintReport(&plan, r, true)
	PrintStatus(&status, r)
	for name, out := range map[string]string{"plan": plan.String(), "status": status.String(), "step line": StepLine(r.Steps[1]), "diff": r.Steps[0].Diff} {
		if strings.ContainsAny(out, "\x1b\x07") || hasRawControl(out) {
			t.Errorf("%s output has a raw control character:\n%q", name, out)
		}
	}
	// Escaped, not dropped: a person can still see what is in the file.
	if !strings.Contains(plan.String(), `\u001b]0;owned by root\u0007`) || !strings.Contains(plan.String(), `\u001b[2J`) {
		t.Errorf("plan output does not show the escaped sequences:\n%s", plan.String())
	}
}
