package packaging_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/packaging/cfn"
)

var update = flag.Bool("update", false, "rewrite generated files (systemd/ccboot.service, the template's UserData) from their sources")

const (
	templatePath = "cloudformation/ccboot.yaml"
	userDataPath = "userdata/userdata.sh"
	ssmDocPath   = "ssm/ccboot-repair.json"
	unitPath     = "systemd/ccboot.service"
	nfpmPath     = "nfpm.yaml"

	settingsStart = "# @cfn-settings (the CloudFormation template sets the variables here)"
	settingsEnd   = "# @end-cfn-settings"
)

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseTemplate(data []byte) (map[string]any, error) {
	return cfn.Parse(data)
}

func loadTemplate(t *testing.T) map[string]any {
	t.Helper()
	tpl, err := parseTemplate(readFile(t, templatePath))
	if err != nil {
		t.Fatalf("%s: %v", templatePath, err)
	}
	return tpl
}

func section(tpl map[string]any, name string) map[string]any {
	m, _ := tpl[name].(map[string]any)
	return m
}

// dig walks nested maps: dig(m, "Resources", "Instance", "Properties").
func dig(v any, keys ...string) any {
	return cfn.Dig(v, keys...)
}

var pseudoParameters = map[string]bool{
	"AWS::AccountId": true, "AWS::NotificationARNs": true, "AWS::NoValue": true, "AWS::Partition": true,
	"AWS::Region": true, "AWS::StackId": true, "AWS::StackName": true, "AWS::URLSuffix": true,
}

// subVar matches ${Name} in Fn::Sub; ${!Literal} is an escape and is skipped.
var subVar = regexp.MustCompile(`\$\{([^!}][^}]*)\}`)

// checkReferences returns every dangling reference and unused parameter.
func checkReferences(tpl map[string]any) []string {
	params, resources, conditions := section(tpl, "Parameters"), section(tpl, "Resources"), section(tpl, "Conditions")
	if len(resources) == 0 {
		return []string{"no Resources"}
	}
	used := map[string]bool{}
	var problems []string
	bad := func(path, format string, args ...any) {
		problems = append(problems, path+": "+fmt.Sprintf(format, args...))
	}
	name := func(path, target string, locals map[string]any) {
		if res, _, ok := strings.Cut(target, "."); ok && !strings.HasPrefix(target, "AWS::") {
			if resources[res] == nil {
				bad(path, "${%s}: no resource %s", target, res)
			}
			return
		}
		switch {
		case locals[target] != nil:
		case strings.HasPrefix(target, "AWS::"):
			if !pseudoParameters[target] {
				bad(path, "unknown pseudo parameter %s", target)
			}
		case params[target] != nil:
			used[target] = true
		case resources[target] == nil:
			bad(path, "%s is neither a parameter nor a resource", target)
		}
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
		case map[string]any:
			if len(v) == 1 {
				for fn, arg := range v {
					switch fn {
					case "Ref":
						if s, ok := arg.(string); ok {
							name(path, s, nil)
						} else {
							bad(path, "Ref of a %T", arg)
						}
					case "Fn::GetAtt":
						if l, ok := arg.([]any); !ok || len(l) != 2 || resources[fmt.Sprint(l[0])] == nil {
							bad(path, "GetAtt %v: no such resource", arg)
						}
					case "Fn::Sub":
						s, locals := "", map[string]any(nil)
						switch a := arg.(type) {
						case string:
							s = a
						case []any:
							if len(a) == 2 {
								s, _ = a[0].(string)
								locals, _ = a[1].(map[string]any)
							}
						}
						for _, m := range subVar.FindAllStringSubmatch(s, -1) {
							name(path, m[1], locals)
						}
					case "Fn::If":
						if l, ok := arg.([]any); !ok || len(l) != 3 || conditions[fmt.Sprint(l[0])] == nil {
							bad(path, "If %v: no such condition", arg)
						}
					case "Condition":
						if s, ok := arg.(string); ok && conditions[s] == nil {
							bad(path, "no condition %s", s)
						}
					}
				}
			}
			for k, e := range v {
				walk(path+"."+k, e)
			}
		}
	}
	for _, sec := range []string{"Rules", "Conditions", "Resources", "Outputs"} {
		walk(sec, tpl[sec])
	}
	for rname, r := range resources {
		if c, ok := dig(r, "Condition").(string); ok && conditions[c] == nil {
			bad("Resources."+rname, "Condition %s does not exist", c)
		}
		var deps []any
		switch d := dig(r, "DependsOn").(type) {
		case string:
			deps = []any{d}
		case []any:
			deps = d
		}
		for _, d := range deps {
			if resources[fmt.Sprint(d)] == nil {
				bad("Resources."+rname, "DependsOn %v: no such resource", d)
			}
		}
	}
	for p := range params {
		if !used[p] {
			bad("Parameters."+p, "never used")
		}
	}
	sort.Strings(problems)
	return problems
}

func TestTemplateReferences(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	if got := tpl["AWSTemplateFormatVersion"]; got != "2010-09-09" {
		t.Errorf("AWSTemplateFormatVersion = %v", got)
	}
	for _, p := range checkReferences(tpl) {
		t.Error(p)
	}
}

// The checker must catch what it claims to: feed it a broken template.
func TestReferenceCheckerCatchesMistakes(t *testing.T) {
	t.Parallel()
	broken := `
Parameters:
  Used: {Type: String}
  Unused: {Type: String}
Conditions:
  Yes: !Equals [!Ref Used, "x"]
Resources:
  A:
    Type: AWS::SNS::Topic
    DependsOn: Ghost
    Properties:
      TopicName: !Sub "${Used}-${Missing}-${A.TopicName}-${!Literal}-${AWS::Bogus}"
      Other: !GetAtt Nope.Arn
      Third: !If [NoCondition, a, b]
      Fourth: !Ref AWS::StackName
`
	tpl, err := parseTemplate([]byte(broken))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(checkReferences(tpl), "\n")
	for _, want := range []string{"Missing is neither", "GetAtt [Nope Arn]", "If [NoCondition", "Unused: never used", "DependsOn Ghost", "AWS::Bogus"} {
		if !strings.Contains(got, want) {
			t.Errorf("checker missed %q; it reported:\n%s", want, got)
		}
	}
	for _, notWant := range []string{"Literal", "Used: never used", "A.TopicName", "AWS::StackName"} {
		if strings.Contains(got, notWant) {
			t.Errorf("checker wrongly reported %q:\n%s", notWant, got)
		}
	}
	if _, err := parseTemplate([]byte("A: !NotAFunction x\n")); err == nil {
		t.Error("an unknown tag parsed without error")
	}
	if _, err := parseTemplate([]byte("A: 1\nA: 2\n")); err == nil {
		t.Error("a duplicate key parsed without error")
	}
}

// Partition-aware ARNs only: the stack must deploy in aws-cn and aws-us-gov too.
func TestNoHardCodedPartition(t *testing.T) {
	t.Parallel()
	literal := regexp.MustCompile(`(?i)arn:aws(-[a-z-]+)?:`)
	for _, name := range []string{templatePath, userDataPath, ssmDocPath, nfpmPath, "dist.sh"} {
		for i, line := range strings.Split(string(readFile(t, name)), "\n") {
			if literal.MatchString(line) {
				t.Errorf("%s:%d: hard-coded partition, use arn:${AWS::Partition}: %s", name, i+1, strings.TrimSpace(line))
			}
		}
	}
	tpl := loadTemplate(t)
	// Every Sub that builds an ARN takes the partition from the stack.
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			for k, e := range v {
				if s, ok := e.(string); ok && k == "Fn::Sub" && strings.Contains(s, "arn:") && !strings.Contains(s, "arn:${AWS::Partition}:") {
					t.Errorf("Sub builds an ARN without ${AWS::Partition}: %s", s)
				}
				walk(e)
			}
		}
	}
	walk(tpl)
}

func TestTemplateInstance(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	props := dig(tpl, "Resources", "Instance", "Properties")
	if props == nil {
		t.Fatal("no Resources.Instance.Properties")
	}
	// TierMode enforced pins the hop limit to 1 (TestTemplateTierMode).
	hopLimit := map[string]any{"Fn::If": []any{"Enforced", 1, map[string]any{"Ref": "MetadataHopLimit"}}}
	want := map[string]any{"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": hopLimit}
	if got := dig(props, "MetadataOptions"); !reflect.DeepEqual(got, want) {
		t.Errorf("MetadataOptions = %v, want %v (IMDSv2 only)", got, want)
	}
	// Containers reach IMDS by default (2); 1 is offered for hosts that run
	// untrusted containers, and the description says what it breaks.
	hop := dig(tpl, "Parameters", "MetadataHopLimit")
	if dig(hop, "Default") != 2 || !reflect.DeepEqual(dig(hop, "AllowedValues"), []any{1, 2}) ||
		!strings.Contains(fmt.Sprint(dig(hop, "Description")), "containers") {
		t.Errorf("MetadataHopLimit = %v, want Default 2, AllowedValues [1 2] and a description of what 1 breaks", hop)
	}
	bdm, _ := dig(props, "BlockDeviceMappings").([]any)
	if len(bdm) != 1 || dig(bdm[0], "Ebs", "Encrypted") != true || dig(bdm[0], "Ebs", "VolumeType") != "gp3" {
		t.Errorf("root volume must be one encrypted gp3 volume: %v", bdm)
	}
	if got := dig(tpl, "Parameters", "AmiId", "Default"); got != "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64" {
		t.Errorf("AmiId default = %v", got)
	}
	// ccboot derives role ARNs from the profile name by this convention.
	for res, want := range map[string]string{
		"InstanceProfile": "claudecode-ec2-${AWS::StackName}",
		"Ec2Role":         "claudecode-ec2-${AWS::StackName}",
		"ReadOnlyRole":    "claudecode-readonly-${AWS::StackName}",
		"ElevatedRole":    "claudecode-elevated-${AWS::StackName}",
	} {
		key := "RoleName"
		if res == "InstanceProfile" {
			key = "InstanceProfileName"
		}
		if got := dig(tpl, "Resources", res, "Properties", key, "Fn::Sub"); got != want {
			t.Errorf("%s.%s = %v, want !Sub %s", res, key, got, want)
		}
	}
	wc := dig(tpl, "Resources", "WaitCondition")
	if dig(wc, "Type") != "AWS::CloudFormation::WaitCondition" || dig(wc, "DependsOn") != "Instance" ||
		!reflect.DeepEqual(dig(wc, "Properties", "Handle"), map[string]any{"Ref": "WaitHandle"}) ||
		dig(wc, "Properties", "Count") != 1 {
		t.Errorf("WaitCondition = %v", wc)
	}
	// The stack must not give up before systemd would: the WaitCondition's
	// timeout is at least the unit's TimeoutStartSec.
	m := regexp.MustCompile(`TimeoutStartSec=([0-9]+)min`).FindSubmatch(bootstrap.UnitFile())
	unitMinutes, _ := strconv.Atoi(string(m[1]))
	if timeout, _ := strconv.Atoi(fmt.Sprint(dig(wc, "Properties", "Timeout"))); m == nil || timeout < unitMinutes*60 {
		t.Errorf("WaitCondition Timeout %v is shorter than the unit's TimeoutStartSec (%s min)", dig(wc, "Properties", "Timeout"), m[1])
	}
	as := dig(tpl, "Resources", "RepairAssociation")
	if dig(as, "Condition") != "RepairSchedule" || dig(as, "Properties", "ScheduleExpression") != "rate(1 day)" ||
		!reflect.DeepEqual(dig(as, "Properties", "Name"), map[string]any{"Ref": "RepairDocument"}) ||
		!reflect.DeepEqual(dig(as, "Properties", "Targets"), []any{map[string]any{"Key": "InstanceIds", "Values": []any{map[string]any{"Ref": "Instance"}}}}) {
		t.Errorf("RepairAssociation = %v", as)
	}
	// SSM rejects ApplyOnlyAtCronInterval together with a rate() schedule.
	if dig(as, "Properties", "ApplyOnlyAtCronInterval") != nil {
		t.Error("RepairAssociation: ApplyOnlyAtCronInterval is not supported with rate(1 day)")
	}
	if dig(as, "DependsOn") != "WaitCondition" {
		t.Error("RepairAssociation must wait for the first run (DependsOn: WaitCondition)")
	}
	if got := dig(tpl, "Conditions", "RepairSchedule"); !reflect.DeepEqual(got, map[string]any{"Fn::Equals": []any{map[string]any{"Ref": "EnableRepairSchedule"}, "true"}}) {
		t.Errorf("RepairSchedule condition = %v", got)
	}
	if got := dig(tpl, "Parameters", "EnableRepairSchedule", "Default"); got != "false" {
		t.Errorf("EnableRepairSchedule default = %v, want false", got)
	}
}

// The URL and checksum parameters land inside single quotes in UserData:
// their AllowedPatterns must keep quotes and $ out.
func TestTemplateParameterPatterns(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	for _, tc := range []struct {
		param     string
		good, bad []string
	}{
		{"CcbootUrlArm64",
			[]string{"", "https://bucket.s3.eu-west-1.amazonaws.com/ccboot/v1.2.0/ccboot_v1.2.0_linux_arm64", "s3://bucket/ccboot"},
			[]string{"http://example.com/ccboot", "https://x/a'b", "https://x/$(reboot)", "https://x/a b", "https://x/`id`", "ftp://x/y"}},
		{"CcbootUrlAmd64", []string{"", "https://example.com/c"}, []string{"https://x/'"}},
		{"CcbootSha256Arm64", []string{"", strings.Repeat("a", 64), strings.Repeat("F", 64)}, []string{strings.Repeat("a", 63), strings.Repeat("g", 64), strings.Repeat("a", 64) + "'"}},
		{"CcbootSha256Amd64", []string{strings.Repeat("0", 64)}, []string{"x"}},
		{"ModelId", []string{"", "eu.anthropic.claude-sonnet-4-6", "arn:aws:bedrock:eu-west-1:111122223333:application-inference-profile/a1b2"}, []string{"a'b", "a b", "-x"}},
	} {
		pat, ok := dig(tpl, "Parameters", tc.param, "AllowedPattern").(string)
		if !ok {
			t.Errorf("%s has no AllowedPattern", tc.param)
			continue
		}
		// CloudFormation matches the whole value.
		re, err := regexp.Compile("^(?:" + pat + ")$")
		if err != nil {
			t.Errorf("%s: %v", tc.param, err)
			continue
		}
		for _, v := range tc.good {
			if !re.MatchString(v) {
				t.Errorf("%s rejects %q", tc.param, v)
			}
		}
		for _, v := range tc.bad {
			if re.MatchString(v) {
				t.Errorf("%s accepts %q", tc.param, v)
			}
		}
	}
}

// renderUserData is the generator: the template's UserData is userdata.sh
// with ${ escaped for Fn::Sub and the template's settings after the marker.
func renderUserData(script string, settings []string) (string, error) {
	if strings.Contains(script, "${!") {
		return "", fmt.Errorf("%s uses ${!...}, which cannot be told apart from a Fn::Sub escape", userDataPath)
	}
	if strings.Count(script, settingsStart+"\n") != 1 {
		return "", fmt.Errorf("%s must hold the line %q once", userDataPath, settingsStart)
	}
	block := settingsStart + "\n" + strings.Join(append(settings, settingsEnd), "\n") + "\n"
	return strings.Replace(strings.ReplaceAll(script, "${", "${!"), settingsStart+"\n", block, 1), nil
}

// templateSettings returns the lines between the markers of the UserData.
func templateSettings(userData string) []string {
	_, rest, ok := strings.Cut(userData, settingsStart+"\n")
	if !ok {
		return nil
	}
	block, _, ok := strings.Cut(rest, settingsEnd+"\n")
	if !ok {
		return nil
	}
	return strings.Split(strings.TrimSuffix(block, "\n"), "\n")
}

// replaceUserDataBlock swaps the literal block after "Fn::Base64: !Sub |"
// in the template text for body.
func replaceUserDataBlock(tmpl []byte, body string) ([]byte, error) {
	lines := strings.SplitAfter(string(tmpl), "\n")
	start := -1
	indent := ""
	for i, l := range lines {
		// The shell UserData is the else branch of !If [BakedImage, ...]:
		// a list item.
		key := strings.TrimSpace(l)
		item := strings.HasPrefix(key, "- ")
		if strings.TrimPrefix(key, "- ") == "Fn::Base64: !Sub |" {
			if start >= 0 {
				return nil, fmt.Errorf("more than one Fn::Base64: !Sub | block")
			}
			start = i
			indent = l[:len(l)-len(strings.TrimLeft(l, " "))] + "  "
			if item {
				indent += "  "
			}
		}
	}
	if start < 0 {
		return nil, fmt.Errorf("no Fn::Base64: !Sub | block")
	}
	end := start + 1
	for end < len(lines) && (strings.TrimSpace(lines[end]) == "" || strings.HasPrefix(lines[end], indent)) {
		end++
	}
	for end > start+1 && strings.TrimSpace(lines[end-1]) == "" { // keep the blank line before the next key
		end--
	}
	var b strings.Builder
	for _, l := range strings.SplitAfter(body, "\n") {
		switch {
		case l == "":
		case strings.TrimSpace(l) == "":
			b.WriteString("\n")
		default:
			b.WriteString(indent + l)
		}
	}
	out := strings.Join(lines[:start+1], "") + b.String() + strings.Join(lines[end:], "")
	return []byte(out), nil
}

// shellUserData is the UserData of an instance from a plain AMI: the else
// branch of !If [BakedImage, cloud-config, script].
func shellUserData(t *testing.T, tpl map[string]any) any {
	t.Helper()
	ud := dig(tpl, "Resources", "Instance", "Properties", "UserData", "Fn::If")
	branches, ok := ud.([]any)
	if !ok || len(branches) != 3 || branches[0] != "BakedImage" {
		t.Fatalf("Instance UserData must be !If [BakedImage, cloud-config, script], got %#v", dig(tpl, "Resources", "Instance", "Properties", "UserData"))
	}
	return branches[2]
}

func TestTemplateUserData(t *testing.T) {
	// Not parallel: with -update it rewrites the template others read.
	tpl := loadTemplate(t)
	ud := dig(shellUserData(t, tpl), "Fn::Base64", "Fn::Sub")
	got, ok := ud.(string)
	if !ok {
		t.Fatalf("Instance UserData must be Fn::Base64 of a !Sub string, got %#v", dig(tpl, "Resources", "Instance", "Properties", "UserData"))
	}
	settings := templateSettings(got)
	if len(settings) == 0 {
		t.Fatalf("UserData has no settings between %q and %q", settingsStart, settingsEnd)
	}
	script := string(readFile(t, userDataPath))
	want, err := renderUserData(script, settings)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		if !*update {
			t.Fatalf("the template's UserData differs from %s; run `go test ./packaging -run TestTemplateUserData -update`\n%s",
				userDataPath, bootstrap.UnifiedDiff(templatePath, []byte(got), []byte(want)))
		}
		newTmpl, err := replaceUserDataBlock(readFile(t, templatePath), want)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(templatePath, newTmpl, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the UserData of %s", templatePath)
		return
	}

	// Each setting is a variable the script reads, quoted for the shell.
	setting := regexp.MustCompile(`^(CCBOOT_[A-Z0-9_]+)='(\$\{[A-Za-z0-9.:]+\})'$`)
	seen := map[string]bool{}
	for _, l := range settings {
		m := setting.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("setting line %q is not NAME='${Ref}'", l)
			continue
		}
		seen[m[1]] = true
		if !strings.Contains(script, "${"+m[1]+":-") {
			t.Errorf("%s sets %s, which %s never reads", templatePath, m[1], userDataPath)
		}
	}
	for _, v := range []string{"CCBOOT_URL_ARM64", "CCBOOT_SHA256_ARM64", "CCBOOT_URL_AMD64", "CCBOOT_SHA256_AMD64", "CCBOOT_WAIT_CONDITION_URL", "CCBOOT_READONLY_ROLE_ARN", "CCBOOT_ELEVATED_ROLE_ARN", "CCBOOT_MODEL", "CCBOOT_TIER_MODE"} {
		if !seen[v] {
			t.Errorf("the template does not set %s", v)
		}
	}
	for _, must := range []string{"set -euo pipefail", "sha256sum", "--retry-all-errors", "ccboot\" install"} {
		if !strings.Contains(got, must) {
			t.Errorf("UserData lacks %q", must)
		}
	}
	// EC2 takes at most 16 KiB of UserData before base64.
	if n := len(subVar.ReplaceAllString(got, strings.Repeat("x", 200))); n > 16<<10 {
		t.Errorf("UserData is %d bytes with parameters filled in; EC2 allows 16384", n)
	}
}

func TestRenderUserDataRefusesAmbiguousScript(t *testing.T) {
	t.Parallel()
	if _, err := renderUserData("echo ${!x}\n"+settingsStart+"\n", nil); err == nil {
		t.Error("a script with ${!x} rendered")
	}
	if _, err := renderUserData("echo no marker\n", nil); err == nil {
		t.Error("a script without the settings marker rendered")
	}
	got, err := renderUserData("a=${b:-c}\n"+settingsStart+"\necho $d\n", []string{"X='${P}'"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "a=${!b:-c}\n" + settingsStart + "\nX='${P}'\n" + settingsEnd + "\necho $d\n"; got != want {
		t.Errorf("rendered %q, want %q", got, want)
	}
	tmpl := "X:\n  UserData:\n    Fn::Base64: !Sub |\n      old\n\n      older\n\n  Next: 1\n"
	out, err := replaceUserDataBlock([]byte(tmpl), "new\n\nlines\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := "X:\n  UserData:\n    Fn::Base64: !Sub |\n      new\n\n      lines\n\n  Next: 1\n"; string(out) != want {
		t.Errorf("replaced block:\n%s\nwant:\n%s", out, want)
	}
}

func loadSSMDoc(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(readFile(t, ssmDocPath), &doc); err != nil {
		t.Fatalf("%s: %v", ssmDocPath, err)
	}
	return doc
}

// ssmScript returns the runCommand lines of the document's only step.
func ssmScript(t *testing.T, doc map[string]any) string {
	t.Helper()
	if doc["schemaVersion"] != "2.2" {
		t.Errorf("schemaVersion = %v, want 2.2", doc["schemaVersion"])
	}
	steps, _ := doc["mainSteps"].([]any)
	if len(steps) != 1 || dig(steps[0], "action") != "aws:runShellScript" {
		t.Fatalf("want one aws:runShellScript step, got %v", doc["mainSteps"])
	}
	lines, _ := dig(steps[0], "inputs", "runCommand").([]any)
	var b strings.Builder
	for _, l := range lines {
		s, ok := l.(string)
		if !ok {
			t.Fatalf("runCommand line %v is not a string", l)
		}
		b.WriteString(s + "\n")
	}
	return b.String()
}

func TestSSMDocumentMatchesTemplate(t *testing.T) {
	t.Parallel()
	doc := loadSSMDoc(t)
	tpl := loadTemplate(t)
	res := dig(tpl, "Resources", "RepairDocument")
	if dig(res, "Type") != "AWS::SSM::Document" || dig(res, "Properties", "DocumentType") != "Command" {
		t.Fatalf("RepairDocument = %v", res)
	}
	// Compare through JSON so YAML and JSON scalars have one representation.
	norm := func(v any) any {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var out any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got, want := norm(dig(res, "Properties", "Content")), norm(doc); !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("the template's RepairDocument content differs from %s:\n%s", ssmDocPath, bootstrap.UnifiedDiff(ssmDocPath, g, w))
	}
}

func TestSSMDocumentRunsRepairThenStatus(t *testing.T) {
	t.Parallel()
	script := ssmScript(t, loadSSMDoc(t))
	if !strings.Contains(script, bootstrap.InstalledBinary) {
		t.Fatalf("the document does not run %s:\n%s", bootstrap.InstalledBinary, script)
	}
	for _, tc := range []struct {
		name       string
		install    bool
		repairExit int
		doctorExit int
		wantExit   int
		wantCalls  string
	}{
		{"repair ok", true, 0, 0, 0, "repair\ndoctor\nstatus --format json\n"},
		{"repair failed", true, 1, 0, 1, "repair\ndoctor\nstatus --format json\n"},
		{"drift left", true, 2, 0, 2, "repair\ndoctor\nstatus --format json\n"},
		// Converged, but Claude Code cannot use Bedrock: the document fails.
		{"doctor failed", true, 0, 1, 1, "repair\ndoctor\nstatus --format json\n"},
		// Repair's own failure is the one reported.
		{"both failed", true, 2, 1, 2, "repair\ndoctor\nstatus --format json\n"},
		{"not installed", false, 0, 0, 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			bin := filepath.Join(dir, "ccboot")
			calls := filepath.Join(dir, "calls")
			if tc.install {
				// status fails too: its exit code must not replace repair's.
				fake := fmt.Sprintf("#!/bin/sh\necho \"$*\" >>%q\ncase \"$1\" in repair) exit %d;; doctor) exit %d;; status) exit 7;; esac\n", calls, tc.repairExit, tc.doctorExit)
				if err := os.WriteFile(bin, []byte(fake), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			res := runBash(t, strings.ReplaceAll(script, bootstrap.InstalledBinary, bin), nil, nil)
			if res.code != tc.wantExit {
				t.Errorf("exit %d, want %d; output:\n%s", res.code, tc.wantExit, res.out)
			}
			got, _ := os.ReadFile(calls)
			if string(got) != tc.wantCalls {
				t.Errorf("ccboot was called with %q, want %q", got, tc.wantCalls)
			}
			if tc.name == "doctor failed" && !strings.Contains(res.out, "ccboot doctor failed") {
				t.Errorf("a doctor failure is not explained:\n%s", res.out)
			}
			if !tc.install && !strings.Contains(res.out, "not installed") {
				t.Errorf("missing binary not explained:\n%s", res.out)
			}
		})
	}
}

func TestUnitFileMatchesInstall(t *testing.T) {
	want := bootstrap.UnitFile()
	got, err := os.ReadFile(unitPath)
	if *update && !bytes.Equal(got, want) {
		if err := os.WriteFile(unitPath, want, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote %s", unitPath)
		return
	}
	if err != nil {
		t.Fatalf("%v; run `go test ./packaging -run TestUnitFile -update`", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from bootstrap.UnitFile(); run `go test ./packaging -run TestUnitFile -update`\n%s",
			unitPath, bootstrap.UnifiedDiff(unitPath, got, want))
	}
	if !bytes.Contains(got, []byte("\nExecStart="+bootstrap.InstalledBinary+" run\n")) {
		t.Errorf("%s does not start %s", unitPath, bootstrap.InstalledBinary)
	}
}

// The packages install the binary where the unit looks for it.
func TestNfpmConfigMatchesUnit(t *testing.T) {
	t.Parallel()
	var cfg struct {
		Contents []struct {
			Src, Dst, Type string
			FileInfo       struct {
				Mode int `yaml:"mode"`
			} `yaml:"file_info"`
		}
		Scripts map[string]string
	}
	if err := yaml.Unmarshal(readFile(t, nfpmPath), &cfg); err != nil {
		t.Fatal(err)
	}
	dst := map[string]string{}
	for _, c := range cfg.Contents {
		dst[c.Dst] = c.Src
		if c.Src != "" && !strings.Contains(c.Src, "${") {
			if _, err := os.Stat(filepath.Join("..", c.Src)); err != nil {
				t.Errorf("nfpm source %s: %v", c.Src, err)
			}
		}
	}
	if _, ok := dst[bootstrap.InstalledBinary]; !ok {
		t.Errorf("%s does not install %s (the unit's ExecStart)", nfpmPath, bootstrap.InstalledBinary)
	}
	if got := dst["/usr/lib/systemd/system/"+bootstrap.UnitName]; got != "packaging/"+unitPath {
		t.Errorf("%s installs the unit from %q, want packaging/%s", nfpmPath, got, unitPath)
	}
	for _, s := range cfg.Scripts {
		if _, err := os.Stat(filepath.Join("..", s)); err != nil {
			t.Errorf("nfpm script: %v", err)
		}
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
