package packaging_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const (
	bakeScriptPath = "packer/ccboot-bake.sh"
	componentPath  = "imagebuilder/ccboot-bake.yaml"
	packerPath     = "packer/ccboot.pkr.hcl"
)

// userdataDownload is the verified-download code of the UserData: the URL
// scheme checks (from "# loopback_http URL:" to the https_or_loopback
// function) and the download itself (from the "downloading" line to the
// "sha256 ok" line).
func userdataDownload(t *testing.T) string {
	t.Helper()
	lines := strings.Split(string(readFile(t, "userdata/userdata.sh")), "\n")
	block := func(first, last string) string {
		start := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, first) })
		end := start + slices.IndexFunc(lines[max(start, 0):], func(l string) bool { return strings.HasPrefix(l, last) })
		if start < 0 || end < start {
			t.Fatalf("userdata.sh: no lines from %q to %q", first, last)
		}
		return strings.Join(lines[start:end+1], "\n")
	}
	return block("# loopback_http URL:", "https_or_loopback() {") + "\n\n" + block(`log "downloading`, `log "sha256 ok`)
}

var downloadMarkers = regexp.MustCompile(`(?s)(# @verified-download[^\n]*\n)(.*?)\n# @end-verified-download`)

func markedDownload(t *testing.T, name, text string) string {
	t.Helper()
	m := downloadMarkers.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("%s: no # @verified-download ... # @end-verified-download block", name)
	}
	return m[2]
}

// componentDoc is the part of an Image Builder component document (schema
// 1.0) that the tests check.
type componentDoc struct {
	Name          string                      `yaml:"name"`
	Description   string                      `yaml:"description"`
	SchemaVersion string                      `yaml:"schemaVersion"`
	Parameters    []map[string]componentParam `yaml:"parameters"`
	Constants     []map[string]any            `yaml:"constants"`
	Phases        []struct {
		Name  string          `yaml:"name"`
		Steps []componentStep `yaml:"steps"`
	} `yaml:"phases"`
}

type componentParam struct {
	Type        string  `yaml:"type"`
	Default     *string `yaml:"default"`
	Description string  `yaml:"description"`
}

type componentStep struct {
	Name           string         `yaml:"name"`
	Action         string         `yaml:"action"`
	TimeoutSeconds int            `yaml:"timeoutSeconds"`
	OnFailure      string         `yaml:"onFailure"`
	MaxAttempts    int            `yaml:"maxAttempts"`
	Inputs         map[string]any `yaml:"inputs"`
}

// The action modules of AWS Task Orchestrator and Executor (AWSTOE), which
// runs Image Builder components (its "Action modules supported" list).
var toeActions = []string{
	"AppendFile", "Assert", "CopyFile", "CopyFolder", "CreateFile", "CreateFolder", "CreateSymlink",
	"DeleteFile", "DeleteFolder", "ExecuteBash", "ExecuteBinary", "ExecuteDocument", "ExecutePowerShell",
	"InstallMSI", "ListFiles", "MoveFile", "MoveFolder", "ReadFile", "Reboot", "S3Download", "S3Upload",
	"SetFileEncoding", "SetFileOwner", "SetFolderOwner", "SetFilePermissions", "SetFolderPermissions",
	"SetRegistry", "UninstallMSI", "UpdateOS", "WebDownload",
}

// checkComponent validates a component document the way AWSTOE's schema
// 1.0 reads it: known top-level keys, phases build/validate/test, unique
// step names, known actions with their required inputs, string parameters,
// and every {{ name }} defined.
func checkComponent(data []byte) []string {
	var problems []string
	var top map[string]any
	if err := yaml.Unmarshal(data, &top); err != nil {
		return []string{"not YAML: " + err.Error()}
	}
	for k := range top {
		if !slices.Contains([]string{"name", "description", "schemaVersion", "parameters", "constants", "phases"}, k) {
			problems = append(problems, "unknown top-level key "+k)
		}
	}
	var doc componentDoc
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return append(problems, "shape: "+err.Error())
	}
	if doc.SchemaVersion != "1.0" {
		problems = append(problems, "schemaVersion "+doc.SchemaVersion+", want 1.0")
	}
	if doc.Name == "" || len(doc.Phases) == 0 {
		problems = append(problems, "name and phases are required")
	}
	defined := map[string]bool{}
	for _, p := range doc.Parameters {
		if len(p) != 1 {
			problems = append(problems, "a parameter entry must have exactly one name")
		}
		for name, spec := range p {
			defined[name] = true
			if spec.Type != "string" {
				problems = append(problems, "parameter "+name+": type "+spec.Type+", schema 1.0 has only string")
			}
		}
	}
	for _, c := range doc.Constants {
		for name := range c {
			defined[name] = true
		}
	}
	for _, ph := range doc.Phases {
		if !slices.Contains([]string{"build", "validate", "test"}, ph.Name) {
			problems = append(problems, "phase "+ph.Name+": want build, validate or test")
		}
		seen := map[string]bool{}
		for _, st := range ph.Steps {
			if !regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`).MatchString(st.Name) || seen[st.Name] {
				problems = append(problems, "phase "+ph.Name+": step name "+st.Name+" is not unique or not alphanumeric")
			}
			seen[st.Name] = true
			if !slices.Contains(toeActions, st.Action) {
				problems = append(problems, "step "+st.Name+": unknown action "+st.Action)
			}
			if st.OnFailure != "" && !slices.Contains([]string{"Abort", "Continue", "Ignore"}, st.OnFailure) {
				problems = append(problems, "step "+st.Name+": onFailure "+st.OnFailure)
			}
			if st.Action == "ExecuteBash" {
				cmds, ok := st.Inputs["commands"].([]any)
				if !ok || len(cmds) == 0 {
					problems = append(problems, "step "+st.Name+": ExecuteBash needs inputs.commands, a list")
				}
				for _, c := range cmds {
					if _, ok := c.(string); !ok {
						problems = append(problems, "step "+st.Name+": a command is not a string")
					}
				}
			}
		}
	}
	for _, m := range regexp.MustCompile(`\{\{\s*([A-Za-z0-9_.]+)\s*\}\}`).FindAllStringSubmatch(string(data), -1) {
		if !defined[m[1]] && !strings.HasPrefix(m[1], "build.") && !strings.HasPrefix(m[1], "validate.") {
			problems = append(problems, "{{ "+m[1]+" }} is not a parameter or constant")
		}
	}
	return problems
}

func componentScript(t *testing.T) string {
	t.Helper()
	var doc componentDoc
	if err := yaml.Unmarshal(readFile(t, componentPath), &doc); err != nil {
		t.Fatal(err)
	}
	for _, ph := range doc.Phases {
		for _, st := range ph.Steps {
			if st.Name == "BakeCcboot" {
				return st.Inputs["commands"].([]any)[0].(string)
			}
		}
	}
	t.Fatal("component has no BakeCcboot step")
	return ""
}

// TestBuildersShareVerifiedDownload: Packer's script and the Image Builder
// component download and verify ccboot with the UserData's very lines, and
// the component runs the same script as Packer. -update rewrites both.
func TestBuildersShareVerifiedDownload(t *testing.T) {
	want := userdataDownload(t)
	script := string(readFile(t, bakeScriptPath))
	if *update {
		m := downloadMarkers.FindStringSubmatchIndex(script)
		if m == nil {
			t.Fatalf("%s has no markers to update", bakeScriptPath)
		}
		script = script[:m[4]] + want + script[m[5]:]
		if err := os.WriteFile(bakeScriptPath, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		writeComponent(t, script)
	}
	if got := markedDownload(t, bakeScriptPath, script); got != want {
		t.Errorf("%s's verified download differs from userdata.sh's; run make generate", bakeScriptPath)
	}
	body := strings.SplitN(script, "set -euo pipefail\n", 2)[1]
	if comp := componentScript(t); !strings.HasSuffix(strings.TrimRight(comp, "\n"), strings.TrimRight(body, "\n")) {
		t.Errorf("%s does not run the same script as %s; run make generate", componentPath, bakeScriptPath)
	}
}

// writeComponent puts the script's body into the component's build step,
// with the settings taken from the component's parameters.
func writeComponent(t *testing.T, script string) {
	t.Helper()
	doc := string(readFile(t, componentPath))
	const head = "            - |\n              set -euo pipefail\n"
	start := strings.Index(doc, head)
	end := strings.Index(doc, "\n  - name: validate")
	if start < 0 || end < start {
		t.Fatalf("%s: cannot find the BakeCcboot script to update", componentPath)
	}
	var b strings.Builder
	b.WriteString(head)
	for _, l := range []string{"export CCBOOT_URL='{{ CcbootUrl }}'", "export CCBOOT_SHA256='{{ CcbootSha256 }}'", "export CCBOOT_CONFIG='{{ CcbootConfig }}'"} {
		b.WriteString("              " + l + "\n")
	}
	for _, l := range strings.Split(strings.TrimRight(strings.SplitN(script, "set -euo pipefail\n", 2)[1], "\n"), "\n") {
		if l != "" {
			l = "              " + l
		}
		b.WriteString(l + "\n")
	}
	if err := os.WriteFile(componentPath, []byte(doc[:start]+b.String()+doc[end:]), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestImageBuilderComponentSchema(t *testing.T) {
	if problems := checkComponent(readFile(t, componentPath)); len(problems) > 0 {
		t.Fatalf("%s:\n%s", componentPath, strings.Join(problems, "\n"))
	}
	// The checker is not a rubber stamp: each of these breaks it.
	good := string(readFile(t, componentPath))
	for name, bad := range map[string]string{
		"unknown action":      strings.Replace(good, "action: ExecuteBash", "action: ExecuteBashh", 1),
		"unknown phase":       strings.Replace(good, "- name: validate", "- name: verify", 1),
		"undefined parameter": strings.Replace(good, "{{ CcbootUrl }}", "{{ CcbootURL }}", 1),
		"schema version":      strings.Replace(good, "schemaVersion: 1.0", "schemaVersion: 2.0", 1),
		"unknown key":         strings.Replace(good, "schemaVersion: 1.0", "schemaVersion: 1.0\nphase: []", 1),
	} {
		if checkComponent([]byte(bad)) == nil {
			t.Errorf("component check accepts a document with an %s", name)
		}
	}
}

// TestBakeScriptVerifiesBeforeRunning runs Packer's script and the
// component's script for real against a loopback server: a binary whose
// SHA-256 does not match never runs; one that matches is run as `bake`,
// then `bake --check`. The binary is a stand-in that only records its
// arguments (the real bake runs in make e2e, inside a booted guest).
func TestBakeScriptVerifiesBeforeRunning(t *testing.T) {
	dir := t.TempDir()
	record := filepath.Join(dir, "ran")
	fake := []byte("#!/bin/sh\necho \"$*\" >>" + record + "\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(fake) }))
	defer srv.Close()
	sum := sha256.Sum256(fake)
	good := hex.EncodeToString(sum[:])
	bad := strings.Repeat("0", 64)

	component := componentScript(t)
	scripts := map[string]string{"packer": string(readFile(t, bakeScriptPath)), "imagebuilder": component}
	for name, script := range scripts {
		for _, tc := range []struct {
			sum     string
			wantRun bool
		}{{bad, false}, {good, true}} {
			os.Remove(record)
			text := script
			if name == "imagebuilder" {
				text = strings.NewReplacer("{{ CcbootUrl }}", srv.URL+"/ccboot", "{{ CcbootSha256 }}", tc.sum, "{{ CcbootConfig }}", "").Replace(text)
			}
			cmd := exec.Command("bash", "-c", text)
			// PATH without cloud-init's directory is not needed: the
			// script only waits for cloud-init when it exists.
			cmd.Env = append(os.Environ(), "CCBOOT_URL="+srv.URL+"/ccboot", "CCBOOT_SHA256="+tc.sum, "CCBOOT_CONFIG=")
			out, err := cmd.CombinedOutput()
			ran, _ := os.ReadFile(record)
			if !tc.wantRun {
				if err == nil || len(ran) > 0 || !strings.Contains(string(out), "SHA-256 mismatch") {
					t.Errorf("%s with a wrong SHA-256: err %v, ran %q, output:\n%s", name, err, ran, out)
				}
				continue
			}
			if err != nil || string(ran) != "bake\nbake --check\n" {
				t.Errorf("%s with the right SHA-256: err %v, ran %q, output:\n%s", name, err, ran, out)
			}
		}
	}
}

// TestPackerTemplateValidates runs a real Packer (Debian's 1.6, which has
// the amazon-ebs builder built in) with no network: the template parses,
// every argument exists for its block, and a misspelled one is refused.
func TestPackerTemplateValidates(t *testing.T) {
	packer, err := exec.LookPath("packer")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("packer is not installed; make deps installs Debian's packer")
		}
		t.Skip("packer not installed (make deps installs Debian's packer)")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and unshare to validate with no network")
	}
	dir := t.TempDir()
	for _, f := range []string{packerPath, bakeScriptPath} {
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), readFile(t, f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	validate := func(template string) (string, error) {
		cmd := exec.Command(unshare, "--net", packer, "validate",
			"-var", "ccboot_url=https://example.invalid/ccboot", "-var", "ccboot_sha256="+strings.Repeat("a", 64), template)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "CHECKPOINT_DISABLE=1", "AWS_EC2_METADATA_DISABLED=true"}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := validate(filepath.Base(packerPath)); err != nil {
		t.Fatalf("packer validate %s: %v\n%s", packerPath, err, out)
	}
	broken := strings.Replace(string(readFile(t, packerPath)), "instance_type          =", "instance_typo          =", 1)
	if err := os.WriteFile(filepath.Join(dir, "broken.pkr.hcl"), []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := validate("broken.pkr.hcl"); err == nil || !strings.Contains(out, "instance_typo") {
		t.Errorf("packer validate accepts a misspelled argument: %v\n%s", err, out)
	}
	if !strings.Contains(string(readFile(t, packerPath)), `script          = "${path.root}/ccboot-bake.sh"`) {
		t.Errorf("%s does not run %s", packerPath, bakeScriptPath)
	}
}
