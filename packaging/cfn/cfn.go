// Package cfn resolves a CloudFormation template for one stack the way
// CloudFormation would at create time (parameters, conditions, intrinsic
// functions, the ARNs of roles and managed policies) and collects its IAM
// roles with their trust and identity policies. The packaging tests and the
// loopback AWS stand-in (packaging/awsstandin) evaluate those policies with a
// real IAM engine; this package is a test tool and never linked into ccboot.
package cfn

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Stack is one deployment of a template.
type Stack struct {
	Partition, Region string
	URLSuffix         string // "" for the partition's (amazonaws.com, amazonaws.com.cn)
	Account, Name     string
	InstanceID        string            // what Ref of an AWS::EC2::Instance gives
	Params            map[string]string // given at create-stack; the rest take their defaults
}

func (st Stack) urlSuffix() string {
	switch {
	case st.URLSuffix != "":
		return st.URLSuffix
	case st.Partition == "aws-cn":
		return "amazonaws.com.cn"
	}
	return "amazonaws.com"
}

// Section is a top-level section of a parsed template (Resources, ...).
func Section(tpl map[string]any, name string) map[string]any {
	m, _ := tpl[name].(map[string]any)
	return m
}

// Dig walks nested maps: Dig(m, "Resources", "Instance", "Properties").
func Dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// isIntrinsic reports whether !name is a CloudFormation short-form tag.
func isIntrinsic(name string) bool {
	switch name {
	case "Ref", "Condition", "Base64", "Cidr", "Equals", "FindInMap", "GetAtt", "GetAZs",
		"If", "ImportValue", "Join", "Not", "Or", "And", "Select", "Split", "Sub",
		"Transform", "Contains", "EachMemberEquals", "EachMemberIn", "RefAll",
		"ValueOf", "ValueOfAll", "Length", "ToJsonString":
		return true
	}
	return false
}

// decode turns a YAML node into plain Go values, rewriting CloudFormation
// short tags into their long form ({"Ref": x}, {"Fn::Sub": x}, GetAtt split
// into [resource, attribute]) so every reader sees one shape.
func decode(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return nil, fmt.Errorf("want one YAML document, got %d", len(n.Content))
		}
		return decode(n.Content[0])
	case yaml.AliasNode:
		return decode(n.Alias)
	}
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		name := n.Tag[1:]
		if !isIntrinsic(name) {
			return nil, fmt.Errorf("line %d: unknown tag %s", n.Line, n.Tag)
		}
		inner := *n
		inner.Tag = ""
		if n.Kind == yaml.ScalarNode {
			inner.Tag = "!!str"
		}
		v, err := decode(&inner)
		if err != nil {
			return nil, err
		}
		if s, ok := v.(string); ok && name == "GetAtt" {
			res, attr, _ := strings.Cut(s, ".")
			v = []any{res, attr}
		}
		if name == "Ref" || name == "Condition" {
			return map[string]any{name: v}, nil
		}
		return map[string]any{"Fn::" + name: v}, nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("line %d: duplicate key %q", n.Content[i].Line, k)
			}
			v, err := decode(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
		return m, nil
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := decode(c)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	default:
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		return v, nil
	}
}

// Parse reads a YAML template into plain values in long form.
func Parse(data []byte) (map[string]any, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	v, err := decode(&doc)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("template is a %T, not a mapping", v)
	}
	return m, nil
}

// noValue is what AWS::NoValue resolves to: the key is dropped.
type noValueT struct{}

var noValue = noValueT{}

// Resolver evaluates the template's intrinsic functions for one stack.
type Resolver struct {
	st         Stack
	params     map[string]any
	conditions map[string]any
	resources  map[string]any
	condCache  map[string]bool
}

// NewResolver takes st.Params for the parameters given, the template's
// defaults for the others; a parameter with neither is an error. As
// CloudFormation does, it refuses a parameter the template does not have
// and a value outside AllowedValues: a misspelt TierMode=enforced must not
// quietly give an advisory stack.
func NewResolver(tpl map[string]any, st Stack) (*Resolver, error) {
	r := &Resolver{st: st, params: map[string]any{}, conditions: Section(tpl, "Conditions"),
		resources: Section(tpl, "Resources"), condCache: map[string]bool{}}
	declared := Section(tpl, "Parameters")
	for name := range st.Params {
		if _, ok := declared[name]; !ok {
			return nil, fmt.Errorf("parameter %s is not in the template; check its spelling", name)
		}
	}
	for name, p := range declared {
		if v, ok := st.Params[name]; ok {
			if allowed, ok := Dig(p, "AllowedValues").([]any); ok && !allowedValue(allowed, v) {
				return nil, fmt.Errorf("parameter %s = %q is not one of its AllowedValues %v", name, v, allowed)
			}
			r.params[name] = v
		} else if d := Dig(p, "Default"); d != nil {
			r.params[name] = fmt.Sprint(d)
		} else {
			return nil, fmt.Errorf("parameter %s has no default and no value: give it in the stack's parameters", name)
		}
	}
	return r, nil
}

func allowedValue(allowed []any, v string) bool {
	for _, a := range allowed {
		if fmt.Sprint(a) == v {
			return true
		}
	}
	return false
}

func (r *Resolver) condition(name string) (bool, error) {
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

func (r *Resolver) pseudo(name string) (string, bool) {
	switch name {
	case "AWS::Partition":
		return r.st.Partition, true
	case "AWS::Region":
		return r.st.Region, true
	case "AWS::AccountId":
		return r.st.Account, true
	case "AWS::StackName":
		return r.st.Name, true
	case "AWS::URLSuffix":
		return r.st.urlSuffix(), true
	case "AWS::StackId":
		return fmt.Sprintf("arn:%s:cloudformation:%s:%s:stack/%s/0a1b2c3d", r.st.Partition, r.st.Region, r.st.Account, r.st.Name), true
	}
	return "", false
}

// Ref is what !Ref returns: a parameter's value or a resource's physical ID.
func (r *Resolver) Ref(name string) (any, error) {
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
		v, err := r.resolve(Dig(res, "Properties", key))
		s, _ := v.(string)
		if err == nil && s == "" {
			err = fmt.Errorf("Ref %s: no %s", name, key)
		}
		return s, err
	}
	st := r.st
	switch Dig(res, "Type") {
	case "AWS::IAM::Role":
		return prop("RoleName")
	case "AWS::IAM::InstanceProfile":
		return prop("InstanceProfileName")
	case "AWS::IAM::ManagedPolicy":
		return fmt.Sprintf("arn:%s:iam::%s:policy/%s-%s-ABCDEF", st.Partition, st.Account, st.Name, name), nil
	case "AWS::EC2::Instance":
		return st.InstanceID, nil
	case "AWS::EC2::SecurityGroup":
		return "sg-0123456789abcdef0", nil
	case "AWS::CloudFormation::WaitConditionHandle":
		return fmt.Sprintf("https://cloudformation-waitcondition-%s.s3.%s.%s/arn%%3A%s/handle?X-Amz-Signature=abc", st.Region, st.Region, st.urlSuffix(), st.Partition), nil
	}
	return fmt.Sprintf("%s-%s-ABCDEF", st.Name, name), nil
}

// GetAtt is what !GetAtt returns, for the attributes the template uses.
func (r *Resolver) GetAtt(name, attr string) (any, error) {
	res, ok := r.resources[name]
	if !ok {
		return nil, fmt.Errorf("GetAtt %s.%s: no such resource", name, attr)
	}
	typ, _ := Dig(res, "Type").(string)
	switch {
	case typ == "AWS::IAM::Role" && attr == "Arn":
		n, err := r.Ref(name)
		if err != nil {
			return nil, err
		}
		return fmt.Sprintf("arn:%s:iam::%s:role/%s", r.st.Partition, r.st.Account, n), nil
	case typ == "AWS::IAM::InstanceProfile" && attr == "Arn":
		n, err := r.Ref(name)
		if err != nil {
			return nil, err
		}
		return fmt.Sprintf("arn:%s:iam::%s:instance-profile/%s", r.st.Partition, r.st.Account, n), nil
	case typ == "AWS::CloudFormation::WaitCondition" && attr == "Data":
		return `{"ccboot":"ok"}`, nil
	}
	return nil, fmt.Errorf("GetAtt %s.%s: the resolver does not model %s attributes; add it to cfn's GetAtt", name, attr, typ)
}

var subRef = regexp.MustCompile(`\$\{([^}]*)\}`)

func (r *Resolver) sub(s string, locals map[string]any) (string, error) {
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
			v, err = r.GetAtt(res, attr)
		} else {
			v, err = r.Ref(name)
		}
		if err == nil {
			if _, ok := v.(string); !ok {
				err = fmt.Errorf("!Sub ${%s} is a %T, not a string", name, v)
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
func (r *Resolver) resolve(v any) (any, error) {
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

func (r *Resolver) intrinsic(fn string, arg any) (any, error) {
	list, _ := arg.([]any)
	switch fn {
	case "Ref":
		return r.Ref(fmt.Sprint(arg))
	case "Condition":
		return r.condition(fmt.Sprint(arg))
	case "Fn::GetAtt":
		if len(list) != 2 {
			return nil, fmt.Errorf("GetAtt %v", arg)
		}
		return r.GetAtt(fmt.Sprint(list[0]), fmt.Sprint(list[1]))
	case "Fn::Sub":
		if s, ok := arg.(string); ok {
			return r.sub(s, nil)
		}
		if len(list) == 2 {
			s, _ := list[0].(string)
			locals, _ := list[1].(map[string]any)
			return r.sub(s, locals)
		}
		return nil, fmt.Errorf("!Sub %v", arg)
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
			return nil, fmt.Errorf("!If %v", arg)
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
			return nil, fmt.Errorf("!Equals %v", arg)
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
				return nil, fmt.Errorf("!Not %v", arg)
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
	return nil, fmt.Errorf("the resolver does not evaluate %s; add it to cfn's intrinsic", fn)
}

// Resources returns the stack's resources (those whose Condition holds)
// with every intrinsic function evaluated.
func (r *Resolver) Resources() (map[string]any, error) {
	out := map[string]any{}
	for name, res := range r.resources {
		if c, ok := Dig(res, "Condition").(string); ok {
			on, err := r.condition(c)
			if err != nil {
				return nil, fmt.Errorf("resource %s: %w", name, err)
			}
			if !on {
				continue
			}
		}
		v, err := r.resolve(res)
		if err != nil {
			return nil, fmt.Errorf("resource %s: %w", name, err)
		}
		out[name] = v
	}
	return out, nil
}

// Resolve resolves the template for st and returns its resources, with
// "_arn" set on roles and managed policies for Roles.
func Resolve(tpl map[string]any, st Stack) (map[string]any, error) {
	r, err := NewResolver(tpl, st)
	if err != nil {
		return nil, err
	}
	res, err := r.Resources()
	if err != nil {
		return nil, err
	}
	for name, v := range res {
		var arn any
		switch Dig(v, "Type") {
		case "AWS::IAM::Role":
			arn, err = r.GetAtt(name, "Arn")
		case "AWS::IAM::ManagedPolicy":
			arn, err = r.Ref(name)
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

// NamedPolicy is an identity policy as iam-simulate takes it.
type NamedPolicy struct {
	Name   string `json:"name"`
	Policy any    `json:"policy"`
}

// Role is a role of the stack: its ARN, trust policy and every identity
// policy attached to it (inline, template managed policies, AWS managed).
type Role struct {
	Name, ARN string
	Trust     any
	Identity  []NamedPolicy
}

// ManagedPoliciesDir finds the AWS managed policy documents in
// shared/aws/managed-policies beside dir or beside one of its parents (a git
// worktree); CCBOOT_MANAGED_POLICIES overrides.
func ManagedPoliciesDir(dir string) (string, error) {
	if d := os.Getenv("CCBOOT_MANAGED_POLICIES"); d != "" {
		return d, nil
	}
	dir, err := filepath.Abs(dir)
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

// Roles collects the roles of resources resolved by Resolve, by logical ID;
// AWS managed policies are read from policiesDir.
func Roles(res map[string]any, policiesDir string) (map[string]*Role, error) {
	byARN := map[string]any{} // template managed policy ARN -> document
	for _, r := range res {
		if Dig(r, "Type") == "AWS::IAM::ManagedPolicy" {
			byARN[fmt.Sprint(Dig(r, "_arn"))] = Dig(r, "Properties", "PolicyDocument")
		}
	}
	roles := map[string]*Role{}
	byName := map[string]*Role{}
	for logical, r := range res {
		if Dig(r, "Type") != "AWS::IAM::Role" {
			continue
		}
		name, _ := Dig(r, "Properties", "RoleName").(string)
		role := &Role{Name: name, ARN: fmt.Sprint(Dig(r, "_arn")), Trust: Dig(r, "Properties", "AssumeRolePolicyDocument")}
		inline, _ := Dig(r, "Properties", "Policies").([]any)
		for _, p := range inline {
			role.Identity = append(role.Identity, NamedPolicy{Name: fmt.Sprint(Dig(p, "PolicyName")), Policy: Dig(p, "PolicyDocument")})
		}
		arns, _ := Dig(r, "Properties", "ManagedPolicyArns").([]any)
		for _, a := range arns {
			arn := fmt.Sprint(a)
			if m := awsManagedARN.FindStringSubmatch(arn); m != nil {
				doc, err := loadManagedPolicy(policiesDir, m[1])
				if err != nil {
					return nil, err
				}
				role.Identity = append(role.Identity, NamedPolicy{Name: m[1], Policy: doc})
			} else if doc, ok := byARN[arn]; ok {
				role.Identity = append(role.Identity, NamedPolicy{Name: arn, Policy: doc})
			} else {
				return nil, fmt.Errorf("role %s: managed policy %s is neither an AWS managed policy nor one of the template", logical, arn)
			}
		}
		roles[logical] = role
		byName[name] = role
	}
	// Policies that name the role from their side (Roles: [!Ref Role]).
	for logical, r := range res {
		typ := Dig(r, "Type")
		if typ != "AWS::IAM::ManagedPolicy" && typ != "AWS::IAM::Policy" {
			continue
		}
		attached, _ := Dig(r, "Properties", "Roles").([]any)
		for _, n := range attached {
			if role := byName[fmt.Sprint(n)]; role != nil {
				role.Identity = append(role.Identity, NamedPolicy{Name: logical, Policy: Dig(r, "Properties", "PolicyDocument")})
			}
		}
	}
	return roles, nil
}
