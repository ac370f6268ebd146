package packaging_test

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/bedrock"
)

// Callers of the permission matrix.
const (
	instanceRole  = "instance role"
	readOnly      = "ReadOnly"
	elevated      = "Elevated"
	otherRole     = "another role in the account¹"
	otherUser     = "a user in the account¹"
	accountRoot   = "the account root¹"
	foreignRole   = "a role in another account¹"
	ec2Service    = "service `ec2.<URLSuffix>`"
	lambdaService = "service `lambda.<URLSuffix>`"
	// The same sessions with Bedrock making the call on their behalf (its
	// Marketplace subscription on a first invoke): aws:CalledViaLast.
	instanceViaBedrock = "instance role, through Bedrock³"
	readOnlyViaBedrock = "ReadOnly, through Bedrock³"
	elevatedViaBedrock = "Elevated, through Bedrock³"
)

// Targets of the permission matrix.
const (
	readOnlyRole  = "ReadOnly role"
	elevatedRole  = "Elevated role"
	instRole      = "instance role"
	anyResource   = "`*`"
	aBucket       = "a new bucket"
	anInstance    = "a new instance"
	aUser         = "a new user"
	bedrockModels = "Bedrock inference profiles and foundation models²"
)

var invoke = []string{"bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"}

// bedrockSubscribes is what Bedrock asks of the caller when it subscribes
// the account to a model on its first invoke (Anthropic's Claude Code IAM
// policy; AWS's "Grant IAM permissions to request access to Amazon Bedrock
// foundation models"); agreements are what a tier must not touch itself.
var (
	bedrockSubscribes = []string{"aws-marketplace:Subscribe", "aws-marketplace:ViewSubscriptions"}
	agreements        = []string{"aws-marketplace:Subscribe", "aws-marketplace:Unsubscribe"}
)

// viaBedrock is the request context of a call Bedrock makes for a caller.
var viaBedrock = map[string]any{"aws:CalledVia": []string{"bedrock.amazonaws.com"}, "aws:CalledViaFirst": "bedrock.amazonaws.com",
	"aws:CalledViaLast": "bedrock.amazonaws.com", "aws:ViaAWSService": "true"}

// matrixRow: who may (or may not) do actions on targets, in every partition.
type matrixRow struct {
	who     string
	actions []string
	on      []string
	allowed bool
}

// permissionMatrix is the security model of the stack. README.md prints it
// ("What each tier can do"); TestPermissionMatrixREADME keeps the two equal.
func permissionMatrix() []matrixRow {
	return []matrixRow{
		{instanceRole, []string{"sts:AssumeRole"}, []string{readOnlyRole}, true},
		{instanceRole, []string{"sts:AssumeRole"}, []string{elevatedRole}, false},
		{instanceRole, invoke, []string{bedrockModels}, false},
		{instanceRole, []string{"bedrock:ListInferenceProfiles", "s3:ListAllMyBuckets"}, []string{anyResource}, false},
		{instanceRole, []string{"s3:CreateBucket"}, []string{aBucket}, false},
		{instanceViaBedrock, bedrockSubscribes, []string{anyResource}, false},
		{instanceRole, []string{"ssm:UpdateInstanceInformation", "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
			"ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel", "ec2messages:GetMessages"}, []string{anyResource}, true},

		{readOnly, []string{"s3:ListAllMyBuckets", "ec2:DescribeInstances"}, []string{anyResource}, true},
		{readOnly, []string{"s3:CreateBucket"}, []string{aBucket}, false},
		{readOnly, []string{"ec2:RunInstances"}, []string{anInstance}, false},
		{readOnly, []string{"iam:CreateUser"}, []string{aUser}, false},
		{readOnly, invoke, []string{bedrockModels}, true},
		{readOnly, []string{"bedrock:ListInferenceProfiles", "bedrock:ListFoundationModels"}, []string{anyResource}, true},
		{readOnly, []string{"bedrock:GetFoundationModelAvailability"}, []string{anyResource}, true},
		{readOnlyViaBedrock, bedrockSubscribes, []string{anyResource}, true},
		{readOnly, append(agreements, "aws-marketplace:ViewSubscriptions"), []string{anyResource}, false},
		{readOnly, []string{"sts:AssumeRole"}, []string{elevatedRole}, true},

		{elevated, []string{"s3:CreateBucket"}, []string{aBucket}, true},
		{elevated, []string{"ec2:RunInstances"}, []string{anInstance}, true},
		{elevated, []string{"iam:CreateUser"}, []string{aUser}, false},
		{elevated, []string{"iam:AttachRolePolicy"}, []string{elevatedRole, readOnlyRole}, false},
		{elevated, []string{"organizations:CreateAccount", "organizations:LeaveOrganization", "organizations:InviteAccountToOrganization"}, []string{anyResource}, false},
		{elevated, invoke, []string{bedrockModels}, true},
		{elevatedViaBedrock, bedrockSubscribes, []string{anyResource}, true},
		{elevated, agreements, []string{anyResource}, false},
		{elevated, []string{"sts:AssumeRole"}, []string{readOnlyRole}, false},

		{otherRole, []string{"sts:AssumeRole"}, []string{readOnlyRole, elevatedRole, instRole}, false},
		{otherUser, []string{"sts:AssumeRole"}, []string{readOnlyRole, elevatedRole}, false},
		{accountRoot, []string{"sts:AssumeRole"}, []string{readOnlyRole, elevatedRole}, false},
		{foreignRole, []string{"sts:AssumeRole"}, []string{readOnlyRole, elevatedRole}, false},
		{ec2Service, []string{"sts:AssumeRole"}, []string{instRole}, true},
		{lambdaService, []string{"sts:AssumeRole"}, []string{instRole}, false},
	}
}

// renderMatrix is the README table.
func renderMatrix(rows []matrixRow) string {
	var b strings.Builder
	b.WriteString("| caller | action | on | decision |\n|---|---|---|---|\n")
	for _, r := range rows {
		acts := make([]string, len(r.actions))
		for i, a := range r.actions {
			acts[i] = "`" + a + "`"
		}
		d := "denied"
		if r.allowed {
			d = "**allowed**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", r.who, strings.Join(acts, ", "), strings.Join(r.on, ", "), d)
	}
	return b.String()
}

// caller is a principal making requests in a stack.
type caller struct {
	principal    string // the request's principal
	principalArn string // aws:PrincipalArn ("" for a service)
	account      string
	identity     []namedPolicy
	context      map[string]any // request context beyond the principal's keys
}

var allowAll = map[string]any{"Version": "2012-10-17", "Statement": []any{map[string]any{"Effect": "Allow", "Action": "*", "Resource": "*"}}}

// chinaServicePrincipal works around the engine: iam-simulate recognises a
// service principal only by the suffix amazonaws.com, so in aws-cn both the
// trust policies and the request name ec2.cn.amazonaws.com for
// ec2.amazonaws.com.cn. Principals match by exact string, and the renaming
// is one-to-one, so the decision is the same.
func chinaServicePrincipal(s string) string {
	return strings.ReplaceAll(s, ".amazonaws.com.cn", ".cn.amazonaws.com")
}

func stackCallers(st stack, roles map[string]*iamRole) (map[string]caller, map[string]*iamRole, error) {
	byTier := map[string]*iamRole{}
	for tier, name := range map[string]string{instRole: "claudecode-ec2-", readOnlyRole: "claudecode-readonly-", elevatedRole: "claudecode-elevated-"} {
		for _, r := range roles {
			if r.Name == name+testStack {
				byTier[tier] = r
			}
		}
		if byTier[tier] == nil {
			return nil, nil, fmt.Errorf("no role named %s%s in the template", name, testStack)
		}
	}
	session := func(r *iamRole, s string) caller {
		return caller{principal: fmt.Sprintf("arn:%s:sts::%s:assumed-role/%s/%s", st.Partition, testAccount, r.Name, s),
			principalArn: r.ARN, account: testAccount, identity: r.Identity}
	}
	cfg := bootstrap.DefaultConfig()
	p := st.Partition
	all := []namedPolicy{{Name: "AllowAll", Policy: allowAll}}
	through := func(c caller) caller {
		c.context = viaBedrock
		return c
	}
	return map[string]caller{
		instanceRole:       session(byTier[instRole], instanceID),
		readOnly:           session(byTier[readOnlyRole], cfg.ReadOnlySessionName),
		elevated:           session(byTier[elevatedRole], cfg.ElevatedSessionName),
		instanceViaBedrock: through(session(byTier[instRole], instanceID)),
		readOnlyViaBedrock: through(session(byTier[readOnlyRole], cfg.ReadOnlySessionName)),
		elevatedViaBedrock: through(session(byTier[elevatedRole], cfg.ElevatedSessionName)),
		otherRole: {principal: fmt.Sprintf("arn:%s:sts::%s:assumed-role/admin/alice", p, testAccount),
			principalArn: fmt.Sprintf("arn:%s:iam::%s:role/admin", p, testAccount), account: testAccount, identity: all},
		otherUser: {principal: fmt.Sprintf("arn:%s:iam::%s:user/bob", p, testAccount),
			principalArn: fmt.Sprintf("arn:%s:iam::%s:user/bob", p, testAccount), account: testAccount, identity: all},
		// The root user may do anything in its account by itself.
		accountRoot: {principal: fmt.Sprintf("arn:%s:iam::%s:root", p, testAccount),
			principalArn: fmt.Sprintf("arn:%s:iam::%s:root", p, testAccount), account: testAccount, identity: all},
		foreignRole: {principal: fmt.Sprintf("arn:%s:sts::%s:assumed-role/admin/mallory", p, otherAcct),
			principalArn: fmt.Sprintf("arn:%s:iam::%s:role/admin", p, otherAcct), account: otherAcct, identity: all},
		ec2Service:    {principal: chinaServicePrincipal("ec2." + st.URLSuffix)},
		lambdaService: {principal: chinaServicePrincipal("lambda." + st.URLSuffix)},
	}, byTier, nil
}

// bedrockResources are the ARNs Claude Code's requests need in the stack's
// partition, from the Region table: in each Region, the inference profile
// of each prefix it can use and the foundation models the profile routes
// to: for a geographic profile, the model in each Region of the geography;
// for a global one, the model in the source Region and the Region-less
// model ARN that AWS authorizes global routing with
// (arn:aws:bedrock:::foundation-model/...). In a Region without profiles
// (China), the foundation model there.
//
// region limits the Regions to one ("" for all of the partition).
func bedrockResources(st stack, region string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	model := func(region string) string {
		return fmt.Sprintf("arn:%s:bedrock:%s::foundation-model/%s", st.Partition, region, bedrock.DefaultModel)
	}
	for _, source := range bedrock.Regions() {
		if bedrock.Partition(source) != st.Partition || region != "" && source != region {
			continue
		}
		region := source
		ps := bedrock.Prefixes(region)
		if len(ps) == 0 {
			add(model(region))
		}
		for _, p := range ps {
			add(fmt.Sprintf("arn:%s:bedrock:%s:%s:inference-profile/%s.%s", st.Partition, region, testAccount, p, bedrock.DefaultModel))
			dests := bedrock.SourceRegions(p)
			if p == bedrock.Global {
				dests = []string{"", region}
			}
			for _, d := range dests {
				add(model(d))
			}
		}
	}
	return out
}

// simCheck is one request of the matrix and the decision it must get.
type simCheck struct {
	id         string
	row        int
	who        string
	action     string
	resource   string
	allowed    bool
	simulation map[string]any
}

// matrixChecks expands the matrix into requests for st. full: Bedrock
// requests for every Region of the partition, else the stack's Region only.
func matrixChecks(st stack, roles map[string]*iamRole, full bool) ([]simCheck, error) {
	callers, tiers, err := stackCallers(st, roles)
	if err != nil {
		return nil, err
	}
	p, r, a := st.Partition, st.Region, testAccount
	targets := map[string][]string{
		anyResource:   {"*"},
		aBucket:       {fmt.Sprintf("arn:%s:s3:::ccboot-matrix-%s", p, a)},
		anInstance:    {fmt.Sprintf("arn:%s:ec2:%s:%s:instance/%s", p, r, a, instanceID)},
		aUser:         {fmt.Sprintf("arn:%s:iam::%s:user/mallory", p, a)},
		bedrockModels: bedrockResources(st, map[bool]string{true: "", false: st.Region}[full]),
	}
	for _, t := range []string{readOnlyRole, elevatedRole, instRole} {
		targets[t] = []string{tiers[t].ARN}
	}
	trustOf := map[string]any{}
	for _, t := range tiers {
		b, err := json.Marshal(t.Trust)
		if err != nil {
			return nil, err
		}
		var trust any
		if err := json.Unmarshal([]byte(chinaServicePrincipal(string(b))), &trust); err != nil {
			return nil, err
		}
		trustOf[t.ARN] = trust
	}
	var out []simCheck
	for i, row := range permissionMatrix() {
		c := callers[row.who]
		for _, on := range row.on {
			if len(targets[on]) == 0 {
				return nil, fmt.Errorf("matrix row %d: no resources for %q", i, on)
			}
			for _, action := range row.actions {
				for _, res := range targets[on] {
					ctx := map[string]any{}
					if c.principalArn != "" {
						ctx["aws:PrincipalArn"] = c.principalArn
						ctx["aws:PrincipalAccount"] = c.account
					}
					for k, v := range c.context {
						ctx[k] = v
					}
					identity := c.identity
					if identity == nil {
						identity = []namedPolicy{}
					}
					sim := map[string]any{
						"request": map[string]any{
							"principal": c.principal, "action": action, "contextVariables": ctx,
							// AWS-owned resources (foundation models, "*")
							// have no account; the engine would take them
							// as cross-account, so they are put in the
							// caller's: identity policies alone decide.
							"resource": map[string]any{"resource": res, "accountId": a},
						},
						"identityPolicies": identity, "serviceControlPolicies": []any{}, "resourceControlPolicies": []any{},
					}
					// The Region-less foundation model ARN of global
					// profiles (arn:aws:bedrock:::foundation-model/...)
					// does not fit iam-data's foundation-model ARN (it
					// has a Region), so the engine's request validation
					// refuses it: evaluate it without.
					if strings.Contains(res, ":bedrock:::") {
						sim["unvalidated"] = true
					}
					if trust, ok := trustOf[res]; ok && action == "sts:AssumeRole" {
						sim["resourcePolicy"] = trust
					}
					out = append(out, simCheck{row: i, who: row.who, action: action, resource: res, allowed: row.allowed, simulation: sim})
				}
			}
		}
	}
	return out, nil
}

// matrixProblems lists every request whose decision differs from the
// matrix, per partition, for template key.
func (ev *evaluation) matrixProblems(key string) []string {
	te := ev.templates[key]
	if te.setupErr != nil {
		return []string{te.setupErr.Error()}
	}
	var out []string
	parts := make([]string, 0, len(te.sims))
	for p := range te.sims {
		parts = append(parts, p)
	}
	sort.Strings(parts)
	for _, p := range parts {
		for _, c := range te.sims[p] {
			got := ev.answer.Simulations[c.id]
			want := "denied"
			if c.allowed {
				want = "allowed"
			}
			switch {
			case got.Error != "":
				out = append(out, fmt.Sprintf("%s: %s %s on %s: the engine refused the request: %s", p, c.who, c.action, c.resource, got.Error))
			case (got.Result == "Allowed") != c.allowed:
				out = append(out, fmt.Sprintf("%s: %s %s on %s: %s, want %s (matrix row %d)", p, c.who, c.action, c.resource, got.Result, want, c.row+1))
			}
		}
	}
	return out
}

// TestPermissionMatrix evaluates every row of the matrix in the aws, aws-cn
// and aws-us-gov partitions with the roles as the template creates them.
func TestPermissionMatrix(t *testing.T) {
	t.Parallel()
	ev := evaluate(t)
	t.Logf("engine: %v", ev.answer.Versions)
	n := 0
	for _, sims := range ev.templates["template"].sims {
		n += len(sims)
	}
	problems := ev.matrixProblems("template")
	for _, p := range problems {
		t.Error(p)
	}
	if len(ev.templates["template"].sims) != len(testStacks()) || n == 0 {
		t.Fatalf("evaluated %d requests in %d partitions", n, len(ev.templates["template"].sims))
	}
	t.Logf("%d requests evaluated in %d partitions", n, len(testStacks()))
}

const (
	matrixStart = "<!-- permission-matrix: generated from packaging/matrix_test.go; go test ./packaging -run TestPermissionMatrixREADME -update -->\n"
	matrixEnd   = "<!-- end permission-matrix -->\n"
)

// README's table is the test's table.
func TestPermissionMatrixREADME(t *testing.T) {
	const readme = "../README.md"
	b := readFile(t, readme)
	before, rest, ok := strings.Cut(string(b), matrixStart)
	if !ok {
		t.Fatalf("README.md lacks the line %q", matrixStart)
	}
	got, after, ok := strings.Cut(rest, matrixEnd)
	if !ok {
		t.Fatalf("README.md lacks the line %q", matrixEnd)
	}
	want := renderMatrix(permissionMatrix())
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(readme, []byte(before+matrixStart+want+matrixEnd+after), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("rewrote the permission matrix in README.md")
		return
	}
	t.Errorf("README.md's permission matrix differs from permissionMatrix(); run `go test ./packaging -run TestPermissionMatrixREADME -update`\n%s",
		bootstrap.UnifiedDiff("README.md", []byte(got), []byte(want)))
}

// Every action name of every policy of the template exists, and every
// Resource pattern it is granted on fits one of its resource types.
func TestTemplatePolicyActions(t *testing.T) {
	t.Parallel()
	ev := evaluate(t)
	if len(ev.templates["template"].actions) < 5 {
		t.Fatalf("only %d actions found in the template's policies", len(ev.templates["template"].actions))
	}
	for _, p := range ev.actionProblems("template") {
		t.Error(p)
	}
}

// The template against CloudFormation's resource specification: resource
// types, properties and their shapes, required properties, attributes.
func TestTemplateResourceSpec(t *testing.T) {
	t.Parallel()
	ev := evaluate(t)
	for _, p := range ev.specProblems("template") {
		t.Error(p)
	}
}

// mutation is an edit of the template that a named check must catch.
type mutation struct {
	name, from, to string
	caughtBy       string // TestPermissionMatrix, TestTemplatePolicyActions or TestTemplateResourceSpec
}

// noDirectAgreements is the template's Deny of Marketplace agreements made
// other than through Bedrock.
const noDirectAgreements = `          - Sid: NoDirectMarketplaceAgreements
            Effect: Deny
            Action:
              - aws-marketplace:Subscribe
              - aws-marketplace:Unsubscribe
            Resource: "*"
            Condition:
              StringNotEquals:
                aws:CalledViaLast: bedrock.amazonaws.com
`

func templateMutations() []mutation {
	return []mutation{
		{"ReadOnly trust widened to the account",
			"            Condition:\n              ArnEquals:\n                aws:PrincipalArn: !Sub arn:${AWS::Partition}:iam::${AWS::AccountId}:role/claudecode-ec2-${AWS::StackName}\n",
			"", "TestPermissionMatrix"},
		{"Elevated trust widened to the account",
			"            Condition:\n              ArnEquals:\n                aws:PrincipalArn: !GetAtt ReadOnlyRole.Arn\n",
			"", "TestPermissionMatrix"},
		{"ReadOnlyAccess swapped for PowerUserAccess", "iam::aws:policy/ReadOnlyAccess", "iam::aws:policy/PowerUserAccess", "TestPermissionMatrix"},
		{"Bedrock granted to the instance role",
			"        - !Sub arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore\n",
			"        - !Sub arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore\n        - !Ref BedrockPolicy\n", "TestPermissionMatrix"},
		{"Subscribe without the CalledViaLast condition",
			"            Resource: \"*\"\n            Condition:\n              StringEquals:\n                aws:CalledViaLast: bedrock.amazonaws.com\n",
			"            Resource: \"*\"\n", "TestPermissionMatrix"},
		{"direct Marketplace agreements not denied (PowerUserAccess allows them)", noDirectAgreements, "", "TestPermissionMatrix"},
		{"Marketplace grant dropped", "              - aws-marketplace:ViewSubscriptions\n", "", "TestPermissionMatrix"},
		{"global inference profiles' Region-less model ARN not covered",
			"arn:${AWS::Partition}:bedrock:*::foundation-model/*", "arn:${AWS::Partition}:bedrock:*-*::foundation-model/*", "TestPermissionMatrix"},
		{"misspelled property", "HttpTokens: required", "HttpToken: required", "TestTemplateResourceSpec"},
		{"property of the wrong shape", "SecurityGroupIds: [!Ref SecurityGroup]", "SecurityGroupIds: !Ref SecurityGroup", "TestTemplateResourceSpec"},
		{"required property missing", "      GroupDescription: !Sub Claude Code instance (${AWS::StackName}); no inbound, SSM Session Manager only\n", "", "TestTemplateResourceSpec"},
		{"attribute that does not exist", "Value: !GetAtt Ec2Role.Arn", "Value: !GetAtt Ec2Role.RoleArn", "TestTemplateResourceSpec"},
		{"action that does not exist", "- bedrock:InvokeModelWithResponseStream\n", "- bedrock:InvokeModelWithResponseStreaming\n", "TestTemplatePolicyActions"},
		{"resource ARN of the wrong shape", "inference-profile/*", "inference-profiles/*", "TestTemplatePolicyActions"},
	}
}

// Each mutation of the template fails the check named for it: the checks
// can fail, and fail for the reason they exist.
func TestTemplateMutationsAreCaught(t *testing.T) {
	t.Parallel()
	ev := evaluate(t)
	for _, m := range templateMutations() {
		key := "mutation: " + m.name
		var problems []string
		switch m.caughtBy {
		case "TestPermissionMatrix":
			problems = ev.matrixProblems(key)
		case "TestTemplatePolicyActions":
			problems = ev.actionProblems(key)
		case "TestTemplateResourceSpec":
			problems = ev.specProblems(key)
		default:
			t.Fatalf("%s: unknown check %s", m.name, m.caughtBy)
		}
		if te := ev.templates[key]; te.setupErr != nil {
			t.Errorf("%s: %v", m.name, te.setupErr)
			continue
		}
		if len(problems) == 0 {
			t.Errorf("%s: %s found nothing wrong", m.name, m.caughtBy)
			continue
		}
		t.Logf("%s -> %s: %s", m.name, m.caughtBy, problems[0])
	}
}
