package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ccboot/ccboot/bootstrap/doctor"
	"github.com/ccboot/ccboot/bootstrap/doctor/doctortest"
	"github.com/ccboot/ccboot/bootstrap/inventory"
	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
	"github.com/ccboot/ccboot/packaging/awsstandin"
)

var updateDoctorGolden = flag.Bool("update-doctor-golden", false, "rewrite cmd/ccboot/testdata/doctor*.golden")

// doctorShell is the environment doctor runs in: the SDK's endpoints on the
// fake (per service: see bootstrap/doctor's setup), the global one on a
// closed loopback port, and an operator's shell full of AWS settings that
// must not stand in for the chain in the user's file.
func doctorShell(t *testing.T, fakeURL string) []string {
	return []string{
		"AWS_ENDPOINT_URL_STS=" + fakeURL, "AWS_ENDPOINT_URL_BEDROCK=" + fakeURL, "AWS_ENDPOINT_URL_BEDROCK_RUNTIME=" + fakeURL, "AWS_ENDPOINT_URL=http://127.0.0.1:9",
		"AWS_ACCESS_KEY_ID=AKIAOPERATORSHELL", "AWS_SECRET_ACCESS_KEY=operator", "AWS_PROFILE=claudecode-elevated",
		"AWS_CONFIG_FILE=" + filepath.Join(t.TempDir(), "missing"), "AWS_EC2_METADATA_DISABLED=true", "AWS_REGION=us-east-1",
	}
}

// bootstrappedRoot is a root that `ccboot run` converged against AWS's
// metadata mock, as on an instance of the demo stack in eu-west-1.
func bootstrappedRoot(t *testing.T) (root string, flags []string) {
	t.Helper()
	root = newRoot(t)
	imds := aemmtest.Start(t, aemmtest.Default())
	flags = []string{"--root", root, "--imds-endpoint", imds}
	if r := ccboot(t, append([]string{"run"}, flags...)...); r.code != 0 {
		t.Fatalf("run exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	return root, flags
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	golden := filepath.Join("testdata", name)
	if *updateDoctorGolden {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v; run go test ./cmd/ccboot -run Doctor -update-doctor-golden", err)
	}
	if got != string(want) {
		t.Errorf("output:\n%s\nwant (%s):\n%s", got, golden, want)
	}
}

// TestBlackboxDoctor: on a root ccboot bootstrapped, doctor passes every
// check in text (golden) and JSON, exit 0, and writes nothing but its
// result for the SSM inventory (doctor.json and the inventory file); with the
// ReadOnly trust broken it names that link and its fix, skips what depends
// on it, exit 1 (golden); a bad config exits 3 like the other commands.
func TestBlackboxDoctor(t *testing.T) {
	t.Parallel()
	root, flags := bootstrappedRoot(t)
	fake := doctortest.New(t, "111122223333", "eu-west-1")
	shell := doctorShell(t, fake.URL)
	before := tree(t, root)

	r := ccbootEnv(t, shell, append([]string{"doctor"}, flags...)...)
	if r.code != 0 || r.stderr != "" {
		t.Errorf("doctor exit %d, stderr %q; want 0\n%s", r.code, r.stderr, r.stdout)
	}
	checkGolden(t, "doctor.golden", r.stdout)

	r = ccbootEnv(t, shell, append([]string{"doctor", "--format", "json"}, flags...)...)
	var results []doctor.Result
	if err := json.Unmarshal([]byte(r.stdout), &results); err != nil || r.code != 0 {
		t.Fatalf("doctor --format json exit %d: %v\n%s", r.code, err, r.stdout)
	}
	var names []string
	for _, res := range results {
		names = append(names, res.Name)
		if !res.OK || res.Detail == "" || res.Fix != "" {
			t.Errorf("json: %+v, want ok with a detail and no fix", res)
		}
	}
	if got := strings.Join(names, ","); got != "imds-credentials,aws-config-file,readonly-profile,elevated-profile,bedrock-model,model-access,readonly-invoke,elevated-invoke,instance-role-no-bedrock" {
		t.Errorf("json checks %s", got)
	}
	for _, c := range fake.Calls() {
		if strings.HasSuffix(c, " ") {
			t.Errorf("a request was signed by a key outside the chain (the operator's?): %q", c)
		}
	}

	fake.Set(func(f *doctortest.Fake) { delete(f.Trust, "claudecode-readonly-demo") })
	r = ccbootEnv(t, shell, append([]string{"doctor"}, flags...)...)
	if r.code != 1 {
		t.Errorf("doctor with the ReadOnly trust broken: exit %d, want 1", r.code)
	}
	checkGolden(t, "doctor-trust.golden", r.stdout)

	r = ccbootEnv(t, shell, append([]string{"doctor", "--set", "aws.region=mars-1"}, flags...)...)
	if r.code != 3 || r.stdout != "" || !strings.Contains(r.stderr, "aws.region") {
		t.Errorf("doctor with a bad config: exit %d, stdout %q, stderr %q; want 3 and the config error", r.code, r.stdout, r.stderr)
	}
	if r := ccbootEnv(t, shell, append([]string{"doctor", "--format", "yaml"}, flags...)...); r.code != 3 {
		t.Errorf("--format yaml: exit %d, want 3", r.code)
	}
	// doctor's own record and the inventory it refreshes, and the
	// folders whose entries those renames change, are all it may touch.
	after := tree(t, root)
	for _, p := range []string{"var/lib/ccboot", inventory.DoctorPath, filepath.Dir(inventoryFile), inventoryFile} {
		delete(before, filepath.Join(root, p))
		delete(after, filepath.Join(root, p))
	}
	sameTree(t, "doctor", before, after)
}

// A ~/.aws/config that is a link (here to a file root owns, naming another
// role) is refused by aws-config-file, and root's SDK never reads it: the
// tiers assume ccboot's roles only.
func TestBlackboxDoctorRefusesLinkedAWSConfig(t *testing.T) {
	t.Parallel()
	root, flags := bootstrappedRoot(t)
	fake := doctortest.New(t, "111122223333", "eu-west-1")
	other := filepath.Join(root, "root-config")
	cfg := filepath.Join(root, "home/ec2-user/.aws/config")
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.ReplaceAll(string(data), "role/claudecode-readonly-demo", "role/attacker-chosen"))
	if err := os.WriteFile(other, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(other, cfg); err != nil {
		t.Fatal(err)
	}
	r := ccbootEnv(t, doctorShell(t, fake.URL), append([]string{"doctor"}, flags...)...)
	line := doctorLine(r.stdout, doctor.AWSConfigFile)
	if r.code != 1 || !strings.HasPrefix(line, "FAIL") || !strings.Contains(line, "link") {
		t.Errorf("doctor with a linked ~/.aws/config: exit %d, aws-config-file %q\n%s%s", r.code, line, r.stdout, r.stderr)
	}
	if l := doctorLine(r.stdout, doctor.ReadOnlyProfile); !strings.HasPrefix(l, "ok") {
		t.Errorf("readonly-profile %q: ccboot's chain does not depend on the user's file", l)
	}
	asked := fake.AssumeRoleARNs()
	for _, arn := range asked {
		if strings.Contains(arn, "attacker-chosen") {
			t.Errorf("the linked file was used: AssumeRole %s", arn)
		}
	}
	if !slices.Contains(asked, "arn:aws:iam::111122223333:role/claudecode-readonly-demo") {
		t.Errorf("ccboot's ReadOnly role was never assumed: %v", asked)
	}
}

// doctorLine is the text after a check's name in doctor's text output.
func doctorLine(stdout, check string) string {
	for _, l := range strings.Split(stdout, "\n") {
		if name, rest, ok := strings.Cut(l, " "); ok && name == check {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

// insertInSection returns cfg with lines added after the last line of
// section, as a user appending to the profile would.
func insertInSection(t *testing.T, cfg, section, lines string) string {
	t.Helper()
	start := strings.Index(cfg, "["+section+"]\n")
	if start < 0 {
		t.Fatalf("no [%s] in:\n%s", section, cfg)
	}
	next := len(cfg)
	if i := strings.Index(cfg[start+1:], "\n["); i >= 0 {
		next = start + 1 + i + 1
	}
	body := strings.TrimRight(cfg[:next], "\n") + "\n" + lines
	if next == len(cfg) {
		return body
	}
	return body + "\n" + cfg[next:]
}

// TestBlackboxDoctorIssue19Payload is the code execution of issue 19 as it
// was seen: the user appends an indented credential_process (and an empty
// credential_source) after a value of [profile claudecode-readonly]; on the
// old code `ccboot doctor` ran the script as root. Now the script never
// runs, aws-config-file fails naming the line, and the tiers still resolve
// through ccboot's own chain.
func TestBlackboxDoctorIssue19Payload(t *testing.T) {
	t.Parallel()
	root, flags := bootstrappedRoot(t)
	fake := doctortest.New(t, "111122223333", "eu-west-1")
	home := filepath.Join(root, "home/ec2-user")
	marker := filepath.Join(home, "pwned")
	script := filepath.Join(home, "x.sh")
	// Prints valid credentials too, so a run would not fail doctor at once.
	if err := os.WriteFile(script, []byte("#!/bin/sh\nid > "+marker+"\necho '{\"Version\":1,\"AccessKeyId\":\""+doctortest.AEMMAccessKey+"\",\"SecretAccessKey\":\"x\"}'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(home, ".aws/config")
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	payload := "output = json\n  credential_process = " + script + "\n  credential_source =\n"
	cfg := insertInSection(t, string(data), "profile claudecode-readonly", payload)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	n := 1 + strings.Count(cfg[:strings.Index(cfg, "  credential_process")], "\n")
	r := ccbootEnv(t, doctorShell(t, fake.URL), append([]string{"doctor"}, flags...)...)
	if out, err := os.ReadFile(marker); err == nil {
		t.Fatalf("doctor ran the user's credential_process: %s", out)
	}
	line := doctorLine(r.stdout, doctor.AWSConfigFile)
	if r.code != 1 || !strings.HasPrefix(line, "FAIL") || !strings.Contains(line, fmt.Sprintf("line %d:", n)) {
		t.Errorf("exit %d, aws-config-file %q; want FAIL naming line %d\n%s%s", r.code, line, n, r.stdout, r.stderr)
	}
	for _, check := range []string{doctor.ReadOnlyProfile, doctor.ElevatedProfile} {
		if l := doctorLine(r.stdout, check); !strings.HasPrefix(l, "ok") {
			t.Errorf("%s %q: want ok through ccboot's chain", check, l)
		}
	}
}

// standinFor serves the stand-in for the demo stack the AEMM instance
// belongs to (claudecode-ec2-demo in 111122223333, eu-west-1), deciding
// with the template after each mutation (each must change it).
func standinFor(t *testing.T, mutations ...[2]string) (*awsstandin.Server, string) {
	t.Helper()
	return standinWithAccess(t, awsstandin.ModelAccess{}, mutations...) // the zero value: full model access
}

// TestBlackboxDoctorStandin runs doctor on a root ccboot bootstrapped,
// against the stand-in that decides every request with the CloudFormation
// template's own policies: all ok; then one link broken at a time, each
// failing on its own line with exit 1.
func TestBlackboxDoctorStandin(t *testing.T) {
	t.Parallel()
	_, flags := bootstrappedRoot(t)
	doctorRun := func(url string, extra ...string) (result, map[string]doctor.Result) {
		t.Helper()
		r := ccbootEnv(t, doctorShell(t, url), append(append([]string{"doctor", "--format", "json"}, flags...), extra...)...)
		var results []doctor.Result
		if err := json.Unmarshal([]byte(r.stdout), &results); err != nil {
			t.Fatalf("doctor exit %d: %v\n%s%s", r.code, err, r.stdout, r.stderr)
		}
		m := map[string]doctor.Result{}
		for _, res := range results {
			m[res.Name] = res
		}
		return r, m
	}
	expect := func(what string, r result, m map[string]doctor.Result, code int, want map[string]string) {
		t.Helper()
		if r.code != code {
			t.Errorf("%s: exit %d, want %d\n%s", what, r.code, code, r.stdout)
		}
		for name, res := range m {
			w, failing := want[name]
			if res.OK == failing || failing && !strings.Contains(res.Detail+" fix: "+res.Fix, w) {
				t.Errorf("%s: %s = %+v; want ok=%v (%q)", what, name, res, !failing, w)
			}
		}
	}

	s, url := standinFor(t)
	r, m := doctorRun(url)
	expect("intact", r, m, 0, nil)
	// Who signed what: ReadOnly's session described the model, the
	// instance role asked Bedrock and was denied by the template.
	var saw []string
	for _, q := range s.Requests() {
		saw = append(saw, q.Action+" "+q.Role+" "+q.Session+" "+q.Decision)
	}
	all := strings.Join(saw, "\n")
	for _, w := range []string{
		"bedrock:InvokeModel arn:aws:iam::111122223333:role/claudecode-readonly-demo claudecode-readonly-session Allowed",
		"bedrock:InvokeModel arn:aws:iam::111122223333:role/claudecode-elevated-demo claudecode-elevated-session Allowed",
		"sts:AssumeRole arn:aws:iam::111122223333:role/claudecode-ec2-demo i-0123456789abcdef0 Allowed",
		"sts:AssumeRole arn:aws:iam::111122223333:role/claudecode-readonly-demo claudecode-readonly-session Allowed",
		"bedrock:GetInferenceProfile arn:aws:iam::111122223333:role/claudecode-readonly-demo claudecode-readonly-session Allowed",
		"bedrock:ListInferenceProfiles arn:aws:iam::111122223333:role/claudecode-ec2-demo i-0123456789abcdef0 ImplicitlyDenied",
	} {
		if !strings.Contains(all, w) {
			t.Errorf("the stand-in saw no %q:\n%s", w, all)
		}
	}

	// Model geography: a us. profile ARN is taken as given by ccboot, and
	// Bedrock in eu-west-1 does not serve it; the plain us. ID is refused
	// by ccboot's own Region table before any request.
	r, m = doctorRun(url, "--model", "arn:aws:bedrock:eu-west-1:111122223333:inference-profile/us.anthropic.claude-sonnet-4-6")
	expect("us. profile ARN in eu-west-1", r, m, 1, map[string]string{doctor.BedrockModel: "ResourceNotFoundException",
		doctor.ModelAccess: "skipped: bedrock-model failed", doctor.ReadOnlyInvoke: "skipped: bedrock-model failed", doctor.ElevatedInvoke: "skipped: bedrock-model failed"})
	r, m = doctorRun(url, "--model", "us.anthropic.claude-sonnet-4-6")
	expect("us. profile in eu-west-1", r, m, 1, map[string]string{doctor.BedrockModel: "Region eu-west-1 cannot use the us. inference profile",
		doctor.ModelAccess: "skipped: bedrock-model failed", doctor.ReadOnlyInvoke: "skipped: bedrock-model failed", doctor.ElevatedInvoke: "skipped: bedrock-model failed"})

	// ReadOnly's trust policy names another role: ReadOnly fails, what
	// needs it is skipped.
	_, url = standinFor(t, [2]string{
		"aws:PrincipalArn: !Sub arn:${AWS::Partition}:iam::${AWS::AccountId}:role/claudecode-ec2-${AWS::StackName}",
		"aws:PrincipalArn: !Sub arn:${AWS::Partition}:iam::${AWS::AccountId}:role/someone-else"})
	r, m = doctorRun(url)
	expect("ReadOnly trust broken", r, m, 1, map[string]string{
		doctor.ReadOnlyProfile: "AccessDenied", doctor.ElevatedProfile: "skipped: readonly-profile failed",
		doctor.BedrockModel: "skipped: readonly-profile failed", doctor.ModelAccess: "skipped: bedrock-model failed", doctor.ReadOnlyInvoke: "skipped: bedrock-model failed",
		doctor.ElevatedInvoke: "skipped: elevated-profile, bedrock-model failed"})

	// The ReadOnly role without the Bedrock read actions: neither the
	// stack's BedrockPolicy nor ReadOnlyAccess (which grants them too).
	_, url = standinFor(t, [2]string{
		"        - !Sub arn:${AWS::Partition}:iam::aws:policy/ReadOnlyAccess\n        - !Ref BedrockPolicy\n",
		"        - !Ref BedrockPolicy\n"}, [2]string{
		"              - bedrock:GetInferenceProfile\n", ""})
	r, m = doctorRun(url)
	expect("ReadOnly without bedrock:GetInferenceProfile", r, m, 1, map[string]string{
		doctor.BedrockModel: "may not call bedrock:GetInferenceProfile", doctor.ModelAccess: "skipped: bedrock-model failed", doctor.ReadOnlyInvoke: "skipped: bedrock-model failed",
		doctor.ElevatedInvoke: "skipped: bedrock-model failed"})

	// BedrockPolicy without InvokeModel: the model is still described
	// (ReadOnlyAccess), but ReadOnly may not invoke it, which is what
	// Claude Code does; Elevated still may (PowerUserAccess allows bedrock:*).
	_, url = standinFor(t, [2]string{"              - bedrock:InvokeModel\n", ""})
	r, m = doctorRun(url)
	expect("no bedrock:InvokeModel", r, m, 1, map[string]string{
		doctor.ReadOnlyInvoke: "the ReadOnly role may not invoke eu.anthropic.claude-sonnet-4-6: Bedrock Runtime InvokeModel: AccessDeniedException"})
}
