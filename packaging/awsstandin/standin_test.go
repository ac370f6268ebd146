package awsstandin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrock"
	bedrocktypes "github.com/aws/aws-sdk-go-v2/service/bedrock/types"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/ccboot/ccboot/packaging/cfn"
)

const (
	account      = "111122223333"
	stackName    = "claude-dev"
	region       = "eu-west-1"
	instanceKey  = "ASIAINSTANCEKEY00001"
	instanceSec  = "instance/secret/0123456789abcdefghijklmn"
	templatePath = "../cloudformation/ccboot.yaml"
	roPrefix     = "arn:aws:iam::" + account + ":role/claudecode-"
	readOnlyARN  = roPrefix + "readonly-" + stackName
	elevatedARN  = roPrefix + "elevated-" + stackName
	instRoleARN  = roPrefix + "ec2-" + stackName
	roSession    = "claudecode-readonly-session"
	elSession    = "claudecode-elevated-session"
	sonnetEU     = "eu.anthropic.claude-sonnet-4-6"
	anthropicVer = "bedrock-2023-05-31"
)

// standin serves the template (with each mutation applied, each of which
// must change it) for the test stack in eu-west-1.
func standin(t *testing.T, mutations ...[2]string) (*Server, string) {
	t.Helper()
	return standinIn(t, region, "aws", mutations...)
}

// standinIn is standin in another Region and partition.
func standinIn(t *testing.T, region, partition string, mutations ...[2]string) (*Server, string) {
	t.Helper()
	return standinAt(t, region, partition, ModelAccess{}, mutations...)
}

// standinAt serves the template (mutated) for the test stack in region and
// partition, with the account's model access as given.
func standinAt(t *testing.T, region, partition string, access ModelAccess, mutations ...[2]string) (*Server, string) {
	t.Helper()
	tpl := templatePath
	if len(mutations) > 0 {
		tpl = filepath.Join(t.TempDir(), "ccboot.yaml")
		if err := MutatedTemplate(templatePath, tpl, mutations...); err != nil {
			t.Fatal(err)
		}
	}
	policies, err := cfn.ManagedPoliciesDir("../..")
	if err != nil {
		t.Fatal(err)
	}
	return Serve(t, Config{Template: tpl, PoliciesDir: policies, HarnessDir: "../iam", StackName: stackName,
		Region: region, Account: account, Partition: partition, InstanceKeys: map[string]string{instanceKey: instanceSec},
		ModelAccess: access})
}

// awsConfig is a client configuration with static credentials and no
// retries (a denied request answers once).
func awsConfig(c aws.Credentials) aws.Config {
	return aws.Config{Region: region, Retryer: func() aws.Retryer { return aws.NopRetryer{} },
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return c, nil })}
}

var instanceCreds = aws.Credentials{AccessKeyID: instanceKey, SecretAccessKey: instanceSec, SessionToken: "imds-mock-token"}

func stsClient(url string, c aws.Credentials) *sts.Client {
	return sts.NewFromConfig(awsConfig(c), func(o *sts.Options) { o.BaseEndpoint = aws.String(url) })
}

func assume(t *testing.T, url string, c aws.Credentials, role, session string) (aws.Credentials, error) {
	t.Helper()
	out, err := stsClient(url, c).AssumeRole(context.Background(), &sts.AssumeRoleInput{RoleArn: aws.String(role), RoleSessionName: aws.String(session)})
	if err != nil {
		return aws.Credentials{}, err
	}
	cr := out.Credentials
	return aws.Credentials{AccessKeyID: *cr.AccessKeyId, SecretAccessKey: *cr.SecretAccessKey, SessionToken: *cr.SessionToken}, nil
}

func callerARN(t *testing.T, url string, c aws.Credentials) string {
	t.Helper()
	out, err := stsClient(url, c).GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("GetCallerIdentity: %v", err)
	}
	if *out.Account != account {
		t.Errorf("account %s", *out.Account)
	}
	return *out.Arn
}

// wantError fails unless err is the AWS error code whose message contains msg.
func wantError(t *testing.T, what string, err error, code, msg string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != code || !strings.Contains(ae.ErrorMessage(), msg) {
		t.Errorf("%s: got %v, want %s containing %q", what, err, code, msg)
	}
}

func assumedARN(role, session string) string {
	name := role[strings.LastIndex(role, "/")+1:]
	return "arn:aws:sts::" + account + ":assumed-role/" + name + "/" + session
}

// The chain instance role -> ReadOnly -> Elevated, decided by the
// template's trust and identity policies.
func TestAssumeRoleChain(t *testing.T) {
	s, url := standin(t)
	if got, want := callerARN(t, url, instanceCreds), assumedARN(instRoleARN, "i-1234567890abcdef0"); got != want {
		t.Errorf("instance identity %s, want %s", got, want)
	}
	ro, err := assume(t, url, instanceCreds, readOnlyARN, roSession)
	if err != nil {
		t.Fatalf("instance -> ReadOnly: %v", err)
	}
	if got, want := callerARN(t, url, ro), assumedARN(readOnlyARN, roSession); got != want {
		t.Errorf("ReadOnly identity %s, want %s", got, want)
	}
	el, err := assume(t, url, ro, elevatedARN, elSession)
	if err != nil {
		t.Fatalf("ReadOnly -> Elevated: %v", err)
	}
	if got, want := callerARN(t, url, el), assumedARN(elevatedARN, elSession); got != want {
		t.Errorf("Elevated identity %s, want %s", got, want)
	}
	_, err = assume(t, url, instanceCreds, elevatedARN, "direct")
	wantError(t, "instance -> Elevated", err, "AccessDenied", "User: "+assumedARN(instRoleARN, "i-1234567890abcdef0")+
		" is not authorized to perform: sts:AssumeRole on resource: "+elevatedARN)
	_, err = assume(t, url, el, readOnlyARN, "back")
	wantError(t, "Elevated -> ReadOnly", err, "AccessDenied", "sts:AssumeRole")

	// Every request is recorded with the key that signed it and its role.
	reqs := s.Requests()
	type row struct{ action, key, role, session, decision string }
	var got []row
	for _, r := range reqs {
		got = append(got, row{r.Action, r.AccessKey, r.Role, r.Session, r.Decision})
	}
	want := []row{
		{"sts:GetCallerIdentity", instanceKey, instRoleARN, "i-1234567890abcdef0", ""},
		{"sts:AssumeRole", instanceKey, instRoleARN, "i-1234567890abcdef0", "Allowed"},
		{"sts:GetCallerIdentity", ro.AccessKeyID, readOnlyARN, roSession, ""},
		{"sts:AssumeRole", ro.AccessKeyID, readOnlyARN, roSession, "Allowed"},
		{"sts:GetCallerIdentity", el.AccessKeyID, elevatedARN, elSession, ""},
		{"sts:AssumeRole", instanceKey, instRoleARN, "i-1234567890abcdef0", "ImplicitlyDenied"},
		{"sts:AssumeRole", el.AccessKeyID, elevatedARN, elSession, "ImplicitlyDenied"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("requests\n%v\nwant\n%v", got, want)
	}
	if reqs[1].Resource != readOnlyARN || reqs[1].Status != 200 || reqs[5].Status != 403 {
		t.Errorf("AssumeRole records %+v %+v", reqs[1], reqs[5])
	}
}

// standinEnforced serves the template deployed with TierMode=enforced.
func standinEnforced(t *testing.T) (*Server, string) {
	t.Helper()
	policies, err := cfn.ManagedPoliciesDir("../..")
	if err != nil {
		t.Fatal(err)
	}
	return Serve(t, Config{Template: templatePath, PoliciesDir: policies, HarnessDir: "../iam", StackName: stackName,
		Region: region, Account: account, Partition: "aws", InstanceKeys: map[string]string{instanceKey: instanceSec},
		Params: map[string]string{"TierMode": "enforced"}})
}

// TierMode=enforced: Elevated is reached from the instance role (the
// broker, as root) and no longer from ReadOnly; the instance role still has
// no Bedrock of its own.
func TestAssumeRoleEnforced(t *testing.T) {
	s, url := standinEnforced(t)
	ro, err := assume(t, url, instanceCreds, readOnlyARN, roSession)
	if err != nil {
		t.Fatalf("instance -> ReadOnly: %v", err)
	}
	_, err = assume(t, url, ro, elevatedARN, elSession)
	wantError(t, "ReadOnly -> Elevated", err, "AccessDenied", "User: "+assumedARN(readOnlyARN, roSession)+
		" is not authorized to perform: sts:AssumeRole on resource: "+elevatedARN)
	el, err := assume(t, url, instanceCreds, elevatedARN, elSession)
	if err != nil {
		t.Fatalf("instance -> Elevated: %v", err)
	}
	if got, want := callerARN(t, url, el), assumedARN(elevatedARN, elSession); got != want {
		t.Errorf("Elevated identity %s, want %s", got, want)
	}
	if text, err := invoke(url, el, sonnetEU); err != nil || !strings.Contains(text, "role=claudecode-elevated-"+stackName) {
		t.Errorf("Elevated InvokeModel: %q, %v", text, err)
	}
	_, err = invoke(url, instanceCreds, sonnetEU)
	wantError(t, "instance role InvokeModel", err, "AccessDeniedException", "bedrock:InvokeModel")
	var decisions []string
	for _, r := range s.Requests() {
		if r.Action == "sts:AssumeRole" {
			decisions = append(decisions, r.Role+" -> "+r.Resource+": "+r.Decision)
		}
	}
	want := []string{instRoleARN + " -> " + readOnlyARN + ": Allowed", readOnlyARN + " -> " + elevatedARN + ": ImplicitlyDenied",
		instRoleARN + " -> " + elevatedARN + ": Allowed"}
	if !slices.Equal(decisions, want) {
		t.Errorf("AssumeRole decisions\n%v\nwant\n%v", decisions, want)
	}
}

// A parameter the template lacks, or a value it does not allow, is refused:
// a misspelt TierMode must not serve an advisory stack to a test that
// meant enforced.
func TestStandinRefusesUnknownParameters(t *testing.T) {
	policies, err := cfn.ManagedPoliciesDir("../..")
	if err != nil {
		t.Fatal(err)
	}
	for msg, params := range map[string]map[string]string{
		"parameter TierMod is not in the template":                        {"TierMod": "enforced"},
		`parameter TierMode = "Enforced" is not one of its AllowedValues`: {"TierMode": "Enforced"},
	} {
		s, err := New(Config{Template: templatePath, PoliciesDir: policies, HarnessDir: "../iam", StackName: stackName,
			Region: region, Account: account, Partition: "aws", Params: params})
		if err == nil {
			_ = s.Close()
		}
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("Params %v: %v, want an error containing %q", params, err, msg)
		}
	}
}

// ReadOnly's trust policy decides: naming another role denies the instance.
func TestAssumeRoleTrustBroken(t *testing.T) {
	_, url := standin(t, [2]string{"aws:PrincipalArn: !Sub arn:${AWS::Partition}:iam::${AWS::AccountId}:role/claudecode-ec2-${AWS::StackName}\n",
		"aws:PrincipalArn: !Sub arn:${AWS::Partition}:iam::${AWS::AccountId}:role/someone-else\n"})
	_, err := assume(t, url, instanceCreds, readOnlyARN, roSession)
	wantError(t, "instance -> ReadOnly with a trust policy for another role", err, "AccessDenied", "sts:AssumeRole on resource: "+readOnlyARN)
}

func runtimeClient(url string, c aws.Credentials) *bedrockruntime.Client {
	return bedrockruntime.NewFromConfig(awsConfig(c), func(o *bedrockruntime.Options) { o.BaseEndpoint = aws.String(url) })
}

const prompt = `{"anthropic_version":"` + anthropicVer + `","max_tokens":100,"messages":[{"role":"user","content":"say hi"}]}`

func invoke(url string, c aws.Credentials, model string) (string, error) {
	out, err := runtimeClient(url, c).InvokeModel(context.Background(), &bedrockruntime.InvokeModelInput{
		ModelId: aws.String(model), Body: []byte(prompt), ContentType: aws.String("application/json")})
	if err != nil {
		return "", err
	}
	var msg struct {
		Content []struct{ Type, Text string }
	}
	if err := json.Unmarshal(out.Body, &msg); err != nil || len(msg.Content) != 1 {
		return "", errors.New("answer " + string(out.Body))
	}
	return msg.Content[0].Text, nil
}

// stream returns the event types of the stream and the text of its deltas.
func stream(url string, c aws.Credentials, model string) ([]string, string, error) {
	out, err := runtimeClient(url, c).InvokeModelWithResponseStream(context.Background(), &bedrockruntime.InvokeModelWithResponseStreamInput{
		ModelId: aws.String(model), Body: []byte(prompt), ContentType: aws.String("application/json")})
	if err != nil {
		return nil, "", err
	}
	es := out.GetStream()
	defer es.Close()
	var types_ []string
	var text strings.Builder
	for ev := range es.Events() {
		chunk, ok := ev.(*types.ResponseStreamMemberChunk)
		if !ok {
			return nil, "", errors.New("event of another type")
		}
		var e struct {
			Type  string
			Delta struct{ Text string }
		}
		if err := json.Unmarshal(chunk.Value.Bytes, &e); err != nil {
			return nil, "", err
		}
		types_ = append(types_, e.Type)
		text.WriteString(e.Delta.Text)
	}
	return types_, text.String(), es.Err()
}

var wantEvents = []string{"message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"}

func TestInvokeModel(t *testing.T) {
	s, url := standin(t)
	ro, err := assume(t, url, instanceCreds, readOnlyARN, roSession)
	if err != nil {
		t.Fatal(err)
	}
	el, err := assume(t, url, ro, elevatedARN, elSession)
	if err != nil {
		t.Fatal(err)
	}
	n0 := len(s.Requests())
	for _, tc := range []struct {
		creds   aws.Credentials
		role    string
		session string
		model   string
	}{
		{ro, "claudecode-readonly-" + stackName, roSession, sonnetEU},
		{el, "claudecode-elevated-" + stackName, elSession, sonnetEU},
		{ro, "claudecode-readonly-" + stackName, roSession, "global.anthropic.claude-sonnet-4-6"},
		{ro, "claudecode-readonly-" + stackName, roSession, "eu.anthropic.claude-haiku-4-5-20251001-v1:0"},
	} {
		want := "standin: role=" + tc.role + " session=" + tc.session + " model=" + tc.model
		text, err := invoke(url, tc.creds, tc.model)
		if err != nil || text != want {
			t.Errorf("InvokeModel %s as %s: %q, %v; want %q", tc.model, tc.session, text, err, want)
		}
		events, text, err := stream(url, tc.creds, tc.model)
		if err != nil || text != want || !slices.Equal(events, wantEvents) {
			t.Errorf("InvokeModelWithResponseStream %s as %s: events %v, text %q, %v; want %v, %q", tc.model, tc.session, events, text, err, wantEvents, want)
		}
	}
	reqs := s.Requests()[n0:]
	if len(reqs) != 8 {
		t.Fatalf("%d requests recorded, want 8", len(reqs))
	}
	if r := reqs[1]; r.Service != "bedrock-runtime" || r.Action != "bedrock:InvokeModelWithResponseStream" || r.AccessKey != ro.AccessKeyID ||
		r.Role != readOnlyARN || r.Session != roSession || r.Decision != "Allowed" || r.ModelID != sonnetEU || r.Status != 200 ||
		r.Resource != "arn:aws:bedrock:eu-west-1:"+account+":inference-profile/"+sonnetEU {
		t.Errorf("stream request recorded as %+v", r)
	}
	if r := reqs[2]; r.AccessKey != el.AccessKeyID || r.Role != elevatedARN || r.Session != elSession {
		t.Errorf("Elevated request recorded as %+v", r)
	}

	// The instance role has no Bedrock permission in the template.
	_, err = invoke(url, instanceCreds, sonnetEU)
	wantError(t, "instance role InvokeModel", err, "AccessDeniedException", "is not authorized to perform: bedrock:InvokeModel on resource: arn:aws:bedrock:eu-west-1:"+account+":inference-profile/"+sonnetEU)
	_, _, err = stream(url, instanceCreds, sonnetEU)
	wantError(t, "instance role stream", err, "AccessDeniedException", "bedrock:InvokeModelWithResponseStream")
	if r := s.Requests()[len(s.Requests())-1]; r.Decision != "ImplicitlyDenied" || r.Status != 403 || r.Role != instRoleARN {
		t.Errorf("denied request recorded as %+v", r)
	}

	// A profile of another geography: Bedrock refuses the ID itself.
	for _, model := range []string{"us.anthropic.claude-sonnet-4-6", "jp.anthropic.claude-sonnet-4-6", "eu.anthropic.claude-no-such-model", "anthropic.claude-no-such-model"} {
		_, err = invoke(url, ro, model)
		wantError(t, "InvokeModel "+model+" in eu-west-1", err, "ValidationException", "The provided model identifier is invalid.")
	}
	_, err = invoke(url, ro, "anthropic.claude-sonnet-4-6")
	wantError(t, "on-demand foundation model", err, "ValidationException", "with on-demand throughput isn’t supported")
}

// The template's Bedrock statement decides: without the streaming action the
// stream is denied; with foundation models of the source Region only, a
// geographic profile (routing to the geography's other Regions) is denied.
func TestInvokeModelTemplateDecides(t *testing.T) {
	_, url := standin(t,
		[2]string{"              - bedrock:InvokeModelWithResponseStream\n", ""},
		[2]string{"arn:${AWS::Partition}:bedrock:*::foundation-model/*", "arn:${AWS::Partition}:bedrock:${AWS::Region}::foundation-model/*"})
	ro, err := assume(t, url, instanceCreds, readOnlyARN, roSession)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = stream(url, ro, sonnetEU)
	wantError(t, "stream without the action", err, "AccessDeniedException", "bedrock:InvokeModelWithResponseStream on resource: arn:aws:bedrock:eu-west-1:"+account+":inference-profile/"+sonnetEU)
	_, err = invoke(url, ro, sonnetEU)
	wantError(t, "eu profile with eu-west-1's models only", err, "AccessDeniedException", "bedrock:InvokeModel on resource: arn:aws:bedrock:eu-central-1::foundation-model/anthropic.claude-sonnet-4-6")
	_, err = invoke(url, ro, "global.anthropic.claude-sonnet-4-6")
	wantError(t, "global profile without the Region-less model ARN", err, "AccessDeniedException", "on resource: arn:aws:bedrock:::foundation-model/anthropic.claude-sonnet-4-6")
}

// Signatures are verified with the key's secret, and issued keys with their
// session token.
func TestSignatures(t *testing.T) {
	s, url := standin(t)
	bad := instanceCreds
	bad.SecretAccessKey = "wrong/secret/0123456789abcdefghijklmnopq"
	_, err := stsClient(url, bad).GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
	wantError(t, "STS with a wrong secret", err, "SignatureDoesNotMatch", "The request signature we calculated does not match")
	_, err = invoke(url, bad, sonnetEU)
	wantError(t, "Bedrock with a wrong secret", err, "InvalidSignatureException", "The request signature we calculated does not match")
	if r := s.Requests()[1]; r.Decision != "" || r.Status != 403 || r.AccessKey != instanceKey || r.Role != instRoleARN {
		t.Errorf("bad signature recorded as %+v", r)
	}

	unknown := aws.Credentials{AccessKeyID: "ASIANOSUCHKEY0000000", SecretAccessKey: instanceSec}
	_, err = stsClient(url, unknown).GetCallerIdentity(context.Background(), &sts.GetCallerIdentityInput{})
	wantError(t, "unknown key", err, "InvalidClientTokenId", "The security token included in the request is invalid.")

	ro, err := assume(t, url, instanceCreds, readOnlyARN, roSession)
	if err != nil {
		t.Fatal(err)
	}
	noToken := ro
	noToken.SessionToken = ""
	_, err = invoke(url, noToken, sonnetEU)
	wantError(t, "issued key without its token", err, "UnrecognizedClientException", "The security token included in the request is invalid.")
	otherRegion := awsConfig(ro)
	otherRegion.Region = "us-east-1"
	_, err = bedrockruntime.NewFromConfig(otherRegion, func(o *bedrockruntime.Options) { o.BaseEndpoint = aws.String(url) }).InvokeModel(context.Background(),
		&bedrockruntime.InvokeModelInput{ModelId: aws.String(sonnetEU), Body: []byte(prompt)})
	wantError(t, "signed for another Region", err, "InvalidSignatureException", "Credential should be scoped to a valid region")
	if _, err := invoke(url, ro, sonnetEU); err != nil {
		t.Errorf("the same key, signed right: %v", err)
	}

	// Unsigned requests, and STS over the JSON protocol, which no client
	// uses for STS.
	for _, tc := range []struct{ path, target, body, want string }{
		{"/", "", "Action=GetCallerIdentity&Version=2011-06-15", "<Code>MissingAuthenticationToken</Code>"},
		{"/model/" + sonnetEU + "/invoke", "", prompt, `{"message":"Missing Authentication Token"}`},
	} {
		resp, err := http.Post(url+tc.path, "application/x-www-form-urlencoded", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 403 || !strings.Contains(string(b), tc.want) {
			t.Errorf("unsigned POST %s: %d %s, want 403 %s", tc.path, resp.StatusCode, b, tc.want)
		}
	}
	if r := s.Requests()[len(s.Requests())-1]; r.AccessKey != "" || r.Decision != "" || r.Status != 403 || r.Service != "bedrock-runtime" {
		t.Errorf("unsigned request recorded as %+v", r)
	}
}

func TestControlPlane(t *testing.T) {
	s, url := standin(t)
	ro, err := assume(t, url, instanceCreds, readOnlyARN, roSession)
	if err != nil {
		t.Fatal(err)
	}
	client := func(c aws.Credentials) *bedrock.Client {
		return bedrock.NewFromConfig(awsConfig(c), func(o *bedrock.Options) { o.BaseEndpoint = aws.String(url) })
	}
	ctx := context.Background()
	var ids []string
	pages := bedrock.NewListInferenceProfilesPaginator(client(ro), &bedrock.ListInferenceProfilesInput{
		TypeEquals: bedrocktypes.InferenceProfileTypeSystemDefined, MaxResults: aws.Int32(2)})
	n := 0
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n++
		for _, p := range page.InferenceProfileSummaries {
			ids = append(ids, *p.InferenceProfileId)
			if *p.InferenceProfileArn != "arn:aws:bedrock:eu-west-1:"+account+":inference-profile/"+*p.InferenceProfileId || p.Status != bedrocktypes.InferenceProfileStatusActive {
				t.Errorf("profile %+v", p)
			}
		}
	}
	if n < 2 || !slices.Contains(ids, sonnetEU) || !slices.Contains(ids, "global.anthropic.claude-sonnet-4-6") ||
		!slices.Contains(ids, "eu.anthropic.claude-haiku-4-5-20251001-v1:0") {
		t.Errorf("%d pages of profiles %v", n, ids)
	}
	for _, id := range ids {
		if !strings.HasPrefix(id, "eu.") && !strings.HasPrefix(id, "global.") {
			t.Errorf("eu-west-1 lists %s", id)
		}
	}
	p, err := client(ro).GetInferenceProfile(ctx, &bedrock.GetInferenceProfileInput{InferenceProfileIdentifier: aws.String(sonnetEU)})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Models) != len(geographies["eu"]) || *p.Models[0].ModelArn != "arn:aws:bedrock:eu-central-1::foundation-model/anthropic.claude-sonnet-4-6" {
		t.Errorf("%s routes to %d models, first %s", sonnetEU, len(p.Models), *p.Models[0].ModelArn)
	}
	_, err = client(ro).GetInferenceProfile(ctx, &bedrock.GetInferenceProfileInput{InferenceProfileIdentifier: aws.String("us.anthropic.claude-sonnet-4-6")})
	wantError(t, "us. profile in eu-west-1", err, "ResourceNotFoundException", "us.anthropic.claude-sonnet-4-6")
	m, err := client(ro).GetFoundationModel(ctx, &bedrock.GetFoundationModelInput{ModelIdentifier: aws.String("anthropic.claude-haiku-4-5-20251001-v1:0")})
	if err != nil || *m.ModelDetails.ModelArn != "arn:aws:bedrock:eu-west-1::foundation-model/anthropic.claude-haiku-4-5-20251001-v1:0" {
		t.Errorf("GetFoundationModel: %v %v", m, err)
	}
	fm, err := client(ro).ListFoundationModels(ctx, &bedrock.ListFoundationModelsInput{ByProvider: aws.String("Anthropic")})
	if err != nil || len(fm.ModelSummaries) != len(models) {
		t.Errorf("ListFoundationModels: %v %v", fm, err)
	}
	_, err = client(instanceCreds).ListInferenceProfiles(ctx, &bedrock.ListInferenceProfilesInput{})
	wantError(t, "instance role ListInferenceProfiles", err, "AccessDeniedException", "bedrock:ListInferenceProfiles on resource: *")
	if r := s.Requests()[len(s.Requests())-1]; r.Service != "bedrock" || r.Decision != "ImplicitlyDenied" {
		t.Errorf("recorded %+v", r)
	}
	_, err = client(ro).ListCustomModels(ctx, &bedrock.ListCustomModelsInput{})
	wantError(t, "not implemented", err, "UnknownOperationException", "standin: bedrock GET /custom-models is not implemented")
	_, err = stsClient(url, ro).GetSessionToken(ctx, &sts.GetSessionTokenInput{})
	wantError(t, "STS GetSessionToken", err, "InvalidAction", `STS action "GetSessionToken" is not implemented`)
}

// GovCloud: its own partition's ARNs and the us-gov profile.
func TestGovCloud(t *testing.T) {
	_, url := standinIn(t, "us-gov-west-1", "aws-us-gov")
	c := stsClient(url, instanceCreds)
	c = sts.New(c.Options(), func(o *sts.Options) { o.Region = "us-gov-west-1" })
	out, err := c.AssumeRole(context.Background(), &sts.AssumeRoleInput{
		RoleArn: aws.String("arn:aws-us-gov:iam::" + account + ":role/claudecode-readonly-" + stackName), RoleSessionName: aws.String(roSession)})
	if err != nil {
		t.Fatal(err)
	}
	ro := aws.Credentials{AccessKeyID: *out.Credentials.AccessKeyId, SecretAccessKey: *out.Credentials.SecretAccessKey, SessionToken: *out.Credentials.SessionToken}
	if *out.AssumedRoleUser.Arn != "arn:aws-us-gov:sts::"+account+":assumed-role/claudecode-readonly-"+stackName+"/"+roSession {
		t.Errorf("assumed %s", *out.AssumedRoleUser.Arn)
	}
	cfg := awsConfig(ro)
	cfg.Region = "us-gov-west-1"
	rt := bedrockruntime.NewFromConfig(cfg, func(o *bedrockruntime.Options) { o.BaseEndpoint = aws.String(url) })
	for model, wantErr := range map[string]string{"us-gov.anthropic.claude-sonnet-4-6": "", "us.anthropic.claude-sonnet-4-6": "ValidationException",
		"global.anthropic.claude-sonnet-4-6": "ValidationException"} {
		_, err := rt.InvokeModel(context.Background(), &bedrockruntime.InvokeModelInput{ModelId: aws.String(model), Body: []byte(prompt)})
		code := ""
		if err != nil {
			code = "not an AWS error"
			var ae smithy.APIError
			if errors.As(err, &ae) {
				code = ae.ErrorCode()
			}
		}
		if code != wantErr {
			t.Errorf("%s in us-gov-west-1: %v, want %q", model, err, wantErr)
		}
	}
}

// The stand-in's own Region table.
func TestRegionPrefixes(t *testing.T) {
	for r, want := range map[string]string{
		"us-east-1": "us global", "eu-west-1": "eu global", "eu-central-2": "eu global",
		"ap-northeast-1": "jp apac global", "ap-southeast-2": "au apac global", "ap-south-1": "apac global",
		"ca-central-1": "global", "sa-east-1": "global", "us-gov-west-1": "us-gov", "cn-north-1": "",
	} {
		if got := strings.Join(regionPrefixes(r), " "); got != want {
			t.Errorf("%s: prefixes %q, want %q", r, got, want)
		}
	}
	if p := profileFor("eu-west-1", "us.anthropic.claude-sonnet-4-6"); p != nil {
		t.Errorf("eu-west-1 can use %v", p)
	}
	if p := profileFor("ap-northeast-1", "jp.anthropic.claude-haiku-4-5-20251001-v1:0"); p == nil {
		t.Error("Tokyo cannot use jp. Haiku 4.5")
	}
	if p := profileFor("us-gov-west-1", "us-gov.anthropic.claude-haiku-4-5-20251001-v1:0"); p != nil {
		t.Errorf("GovCloud offers %v", p)
	}
}
