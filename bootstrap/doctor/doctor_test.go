package doctor

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap/doctor/doctortest"
	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
)

// setup starts AWS's metadata mock and the fake STS/Bedrock, points the SDK
// at the fake through AWS_ENDPOINT_URL_STS and AWS_ENDPOINT_URL_BEDROCK, and
// fills the environment with an
// operator's settings that must not bypass the chain under test. Tests
// using it cannot run in parallel (t.Setenv).
func setup(t *testing.T) (*doctortest.Fake, *Env) {
	t.Helper()
	imds := aemmtest.Start(t, aemmtest.Default())
	fake := doctortest.New(t, "111122223333", "eu-west-1")
	// Per service, and the global one on a closed loopback port, so a
	// client that ignored the per-service setting fails here instead of
	// leaving loopback.
	t.Setenv("AWS_ENDPOINT_URL_STS", fake.URL)
	t.Setenv("AWS_ENDPOINT_URL_BEDROCK", fake.URL)
	t.Setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake.URL)
	t.Setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "AKIAOPERATORSHELL", "AWS_SECRET_ACCESS_KEY": "operator", "AWS_SESSION_TOKEN": "",
		"AWS_PROFILE": "claudecode-elevated", "AWS_DEFAULT_PROFILE": "claudecode-elevated",
		"AWS_CONFIG_FILE": filepath.Join(t.TempDir(), "missing"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(t.TempDir(), "missing"),
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
		"AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9",
	} {
		t.Setenv(k, v)
	}
	env := &Env{
		Region: "eu-west-1", Model: "eu.anthropic.claude-sonnet-4-6",
		ReadOnly:     Tier{"ReadOnly", "claudecode-readonly", "arn:aws:iam::111122223333:role/claudecode-readonly-demo", "claudecode-readonly-session"},
		Elevated:     Tier{"Elevated", "claudecode-elevated", "arn:aws:iam::111122223333:role/claudecode-elevated-demo", "claudecode-elevated-session"},
		IMDSEndpoint: imds,
		Timeout:      20 * time.Second,
	}
	return fake, env
}

func byName(t *testing.T, rs []Result) map[string]Result {
	t.Helper()
	if len(rs) != len(Checks()) {
		t.Fatalf("%d results, want %d: %+v", len(rs), len(Checks()), rs)
	}
	m := map[string]Result{}
	for _, r := range rs {
		m[r.Name] = r
	}
	return m
}

// want asserts one check's outcome: ok, and substrings of detail and fix.
func want(t *testing.T, rs map[string]Result, name string, ok bool, detail, fix string) {
	t.Helper()
	r := rs[name]
	if r.OK != ok || !strings.Contains(r.Detail, detail) || !strings.Contains(r.Fix, fix) {
		t.Errorf("%s = %+v\nwant ok=%v, detail containing %q, fix containing %q", name, r, ok, detail, fix)
	}
	if r.OK && r.Fix != "" {
		t.Errorf("%s passed with a fix: %q", name, r.Fix)
	}
	if r.Skipped != strings.HasPrefix(r.Detail, "skipped: ") {
		t.Errorf("%s: Skipped = %v with detail %q", name, r.Skipped, r.Detail)
	}
}

func TestAllPass(t *testing.T) {
	fake, env := setup(t)
	rs := Run(context.Background(), env)
	if !AllOK(rs) {
		t.Errorf("not all ok: %+v", rs)
	}
	m := byName(t, rs)
	want(t, m, IMDSCredentials, true, "instance role baskinc-role", "")
	want(t, m, AWSConfigFile, true, "[profile claudecode-readonly] and [profile claudecode-elevated] hold exactly what ccboot wrote", "")
	want(t, m, ReadOnlyProfile, true, "arn:aws:sts::111122223333:assumed-role/claudecode-readonly-demo/claudecode-readonly-session: ccboot's chain for [profile claudecode-readonly]", "")
	want(t, m, ElevatedProfile, true, "arn:aws:sts::111122223333:assumed-role/claudecode-elevated-demo/claudecode-elevated-session: ccboot's chain for [profile claudecode-elevated]", "")
	want(t, m, BedrockModel, true, "eu.anthropic.claude-sonnet-4-6 in eu-west-1: inference profile", "")
	want(t, m, ReadOnlyInvoke, true, "the ReadOnly role may invoke eu.anthropic.claude-sonnet-4-6", "")
	want(t, m, ElevatedInvoke, true, "the Elevated role may invoke eu.anthropic.claude-sonnet-4-6", "")
	want(t, m, InstanceNoModel, true, "denied", "")
	// Every request was signed by a key of the chain, none by the
	// operator's AWS_ACCESS_KEY_ID; the model was described by ReadOnly and
	// the fail-safe asked as the instance role.
	// Exactly ccboot's two roles were assumed, each once (the caches).
	if got := strings.Join(fake.AssumeRoleARNs(), ","); got != env.ReadOnly.RoleARN+","+env.Elevated.RoleARN {
		t.Errorf("AssumeRole of %s, want ccboot's ReadOnly then Elevated", got)
	}
	calls := strings.Join(fake.Calls(), "\n")
	for _, c := range fake.Calls() {
		if strings.HasSuffix(c, " ") {
			t.Errorf("request signed by an unknown key: %q", c)
		}
	}
	for _, w := range []string{
		"sts AssumeRole claudecode-ec2-demo",
		"sts GetCallerIdentity claudecode-readonly-demo",
		"sts AssumeRole claudecode-readonly-demo",
		"sts GetCallerIdentity claudecode-elevated-demo",
		"bedrock /inference-profiles/eu.anthropic.claude-sonnet-4-6 claudecode-readonly-demo",
		"bedrock /inference-profiles claudecode-ec2-demo",
		"bedrock /model/eu.anthropic.claude-sonnet-4-6/invoke claudecode-readonly-demo",
		"bedrock /model/eu.anthropic.claude-sonnet-4-6/invoke claudecode-elevated-demo",
	} {
		if !strings.Contains(calls, w+"\n") && !strings.HasSuffix(calls, w) {
			t.Errorf("no request %q in:\n%s", w, calls)
		}
	}
}

func TestReadOnlyTrustBroken(t *testing.T) {
	fake, env := setup(t)
	fake.Set(func(f *doctortest.Fake) { delete(f.Trust, "claudecode-readonly-demo") })
	m := byName(t, Run(context.Background(), env))
	want(t, m, IMDSCredentials, true, "", "")
	want(t, m, ReadOnlyProfile, false, "STS AssumeRole: AccessDenied: User: arn:aws:sts::111122223333:assumed-role/claudecode-ec2-demo/", "trust policy of arn:aws:iam::111122223333:role/claudecode-readonly-demo must let the instance role")
	want(t, m, ElevatedProfile, false, "skipped: readonly-profile failed", "")
	want(t, m, BedrockModel, false, "skipped: readonly-profile failed", "")
	want(t, m, ReadOnlyInvoke, false, "skipped: bedrock-model failed", "")
	want(t, m, ElevatedInvoke, false, "skipped: elevated-profile, bedrock-model failed", "")
	want(t, m, InstanceNoModel, true, "", "")
}

func TestElevatedTrustBroken(t *testing.T) {
	fake, env := setup(t)
	fake.Set(func(f *doctortest.Fake) { f.Trust["claudecode-elevated-demo"] = "someone-else" })
	m := byName(t, Run(context.Background(), env))
	want(t, m, ReadOnlyProfile, true, "", "")
	want(t, m, ElevatedProfile, false, "AccessDenied", "must let the ReadOnly role arn:aws:iam::111122223333:role/claudecode-readonly-demo assume it")
	want(t, m, BedrockModel, true, "", "")
}

func TestReadOnlyBedrockDenied(t *testing.T) {
	fake, env := setup(t)
	fake.Set(func(f *doctortest.Fake) { delete(f.Bedrock, "claudecode-readonly-demo") })
	m := byName(t, Run(context.Background(), env))
	want(t, m, BedrockModel, false, "Bedrock GetInferenceProfile: AccessDeniedException", "may not call bedrock:GetInferenceProfile")
}

// Describing the model is not invoking it: a tier without
// bedrock:InvokeModel fails its own line.
func TestInvokeDenied(t *testing.T) {
	fake, env := setup(t)
	fake.Set(func(f *doctortest.Fake) { delete(f.Invoke, "claudecode-elevated-demo") })
	m := byName(t, Run(context.Background(), env))
	want(t, m, BedrockModel, true, "", "")
	want(t, m, ReadOnlyInvoke, true, "", "")
	want(t, m, ElevatedInvoke, false, "the Elevated role may not invoke eu.anthropic.claude-sonnet-4-6: Bedrock Runtime InvokeModel: AccessDeniedException", "allow bedrock:InvokeModel and bedrock:InvokeModelWithResponseStream")
}

// Bedrock reports an account without model access as a ValidationException
// too: only the malformed-body answer passes the invoke probe.
func TestInvokeAccountNotAuthorized(t *testing.T) {
	fake, env := setup(t)
	fake.Set(func(f *doctortest.Fake) {
		f.InvokeError = "Your account is not authorized to invoke this API operation."
	})
	m := byName(t, Run(context.Background(), env))
	want(t, m, ReadOnlyInvoke, false, "ValidationException: Your account is not authorized to invoke this API operation.", "model access in the Bedrock console")
}

func TestModelNotInRegion(t *testing.T) {
	fake, env := setup(t)
	fake.Set(func(f *doctortest.Fake) { delete(f.Models, "eu.anthropic.claude-sonnet-4-6") })
	m := byName(t, Run(context.Background(), env))
	want(t, m, BedrockModel, false, "ResourceNotFoundException", "does not offer eu.anthropic.claude-sonnet-4-6: set [bedrock] model to one it offers (inference profile prefixes that work in eu-west-1: eu, global)")
}

// A plain model ID is described as a foundation model; an inference
// profile ARN is taken as given.
func TestModelKinds(t *testing.T) {
	_, env := setup(t)
	env.Model = "anthropic.claude-sonnet-4-6"
	m := byName(t, Run(context.Background(), env))
	want(t, m, BedrockModel, true, "foundation model arn:aws:bedrock:eu-west-1::foundation-model/anthropic.claude-sonnet-4-6, ACTIVE", "")
	env.Model = "arn:aws:bedrock:eu-west-1:111122223333:inference-profile/global.anthropic.claude-sonnet-4-6"
	m = byName(t, Run(context.Background(), env))
	want(t, m, BedrockModel, true, "inference profile arn:aws:bedrock:eu-west-1:111122223333:inference-profile/global.anthropic.claude-sonnet-4-6", "")
}

// The model ccboot would refuse (a us. profile in eu-west-1) is reported
// with profile-env's own error, without asking Bedrock.
func TestModelGeography(t *testing.T) {
	fake, env := setup(t)
	env.Model, env.ModelErr = "", errModel
	m := byName(t, Run(context.Background(), env))
	want(t, m, BedrockModel, false, errModel.Error(), "set [bedrock] model")
	for _, c := range fake.Calls() {
		if strings.Contains(c, "us.anthropic") {
			t.Errorf("asked Bedrock about a refused model: %s", c)
		}
	}
}

var errModel = &modelError{}

type modelError struct{}

func (*modelError) Error() string {
	return `[bedrock] model "us.anthropic.claude-sonnet-4-6": Region eu-west-1 cannot use the us. inference profile; prefixes that work there: eu, global (e.g. eu.anthropic.claude-sonnet-4-6)`
}

func TestInstanceRoleCanUseBedrock(t *testing.T) {
	fake, env := setup(t)
	fake.Set(func(f *doctortest.Fake) { f.Bedrock["claudecode-ec2-demo"] = true })
	m := byName(t, Run(context.Background(), env))
	want(t, m, InstanceNoModel, false, "the instance role can use Bedrock", "remove the bedrock:* permissions from the instance role")
}

func TestIMDSUnreachable(t *testing.T) {
	_, env := setup(t)
	env.IMDSEndpoint = "http://127.0.0.1:9"
	env.Timeout = 3 * time.Second
	m := byName(t, Run(context.Background(), env))
	want(t, m, IMDSCredentials, false, "no instance role in IMDS", "attach the stack's instance profile")
	want(t, m, ReadOnlyProfile, false, "skipped: imds-credentials failed", "")
	want(t, m, ElevatedProfile, false, "skipped: readonly-profile failed", "")
	want(t, m, InstanceNoModel, false, "skipped: imds-credentials failed", "")
}

// What the aws-config step's vet found in the user's file fails its own
// line, split into the cause and the fix; the tiers, built from ccboot's
// values, are not affected by it.
func TestAWSConfigFile(t *testing.T) {
	_, env := setup(t)
	env.AWSConfigVet = errors.New("~/.aws/config line 9: [profile claudecode-readonly] sets credential_process, which root will not trust; fix: remove the line")
	m := byName(t, Run(context.Background(), env))
	want(t, m, AWSConfigFile, false, "~/.aws/config line 9: [profile claudecode-readonly] sets credential_process, which root will not trust", "remove the line")
	if r := m[AWSConfigFile]; strings.Contains(r.Detail, "fix:") {
		t.Errorf("the fix is left in the detail: %q", r.Detail)
	}
	want(t, m, ReadOnlyProfile, true, "", "")
	want(t, m, ElevatedProfile, true, "", "")

	env.AWSConfigVet = errors.New("~/.aws/config has a problem")
	m = byName(t, Run(context.Background(), env))
	want(t, m, AWSConfigFile, false, "~/.aws/config has a problem", "ccboot repair --only aws-config")

	env.AWSConfigVet, env.AWSConfigErr = nil, errors.New("/home/ec2-user/.aws/config does not exist (the aws-config step writes it for ec2-user)")
	m = byName(t, Run(context.Background(), env))
	want(t, m, AWSConfigFile, false, "does not exist", "ccboot repair --only aws-config")
}

// The tiers assume the role ARNs and session names ccboot computed (Env),
// and a role ARN that is not one is reported before any request.
func TestTierUsesCCBootValues(t *testing.T) {
	_, env := setup(t)
	env.ReadOnly.Session = "someone"
	m := byName(t, Run(context.Background(), env))
	want(t, m, ReadOnlyProfile, true, "assumed-role/claudecode-readonly-demo/someone", "")
	env.ReadOnly.RoleARN = "arn:aws:iam::111122223333:user/claudecode-readonly-demo"
	m = byName(t, Run(context.Background(), env))
	want(t, m, ReadOnlyProfile, false, "is not arn:PARTITION:iam::ACCOUNT:role/NAME", "fix the cause above")
}

// doctor runs as root: no shared config file on disk is loaded by its SDK.
// The operator's AWS_CONFIG_FILE and root's $HOME/.aws/config both name a
// credential_process, an IMDS endpoint and a [services] STS endpoint for
// every profile doctor could pick. Only the global AWS_ENDPOINT_URL names
// the fake, which a [services] entry would override: the program never
// runs, and the tiers resolve through ccboot's chain.
func TestCredentialProcessNotRun(t *testing.T) {
	fake, env := setup(t)
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	proc := "credential_process = /bin/sh -c 'touch " + marker + "'\n"
	var cfg strings.Builder
	for _, p := range []string{"[default]", "[profile claudecode-readonly]", "[profile claudecode-elevated]"} {
		cfg.WriteString(p + "\n" + proc + "ec2_metadata_service_endpoint = http://127.0.0.1:9\nservices = evil\n\n")
	}
	cfg.WriteString("[services evil]\nsts =\n  endpoint_url = http://127.0.0.1:9\n")
	path := filepath.Join(dir, ".aws", "config")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", dir)
	t.Setenv("AWS_CONFIG_FILE", path)
	t.Setenv("AWS_PROFILE", "claudecode-readonly")
	t.Setenv("AWS_ENDPOINT_URL_STS", "")
	t.Setenv("AWS_ENDPOINT_URL", fake.URL)
	m := byName(t, Run(context.Background(), env))
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("doctor ran a credential_process of a shared config file")
	}
	want(t, m, IMDSCredentials, true, "", "")
	want(t, m, ReadOnlyProfile, true, "ccboot's chain for [profile claudecode-readonly]", "")
	want(t, m, ElevatedProfile, true, "ccboot's chain for [profile claudecode-elevated]", "")
}

// A Bedrock that accepts the connection but never answers: the check gives
// up at its timeout and says so; the others are unaffected.
func TestCheckTimeout(t *testing.T) {
	_, env := setup(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	t.Setenv("AWS_ENDPOINT_URL_BEDROCK", "http://"+l.Addr().String())
	env.Timeout = 2 * time.Second
	start := time.Now()
	m := byName(t, Run(context.Background(), env))
	want(t, m, ReadOnlyProfile, true, "", "")
	want(t, m, BedrockModel, false, "timed out after 2s", "")
	want(t, m, InstanceNoModel, false, "timed out after 2s", "")
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %s", d)
	}
}

func TestAssumedRoleARN(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ role, want string }{
		{"arn:aws:iam::111122223333:role/claudecode-readonly-demo", "arn:aws:sts::111122223333:assumed-role/claudecode-readonly-demo/s"},
		{"arn:aws-cn:iam::111122223333:role/team/x/claudecode-readonly-demo", "arn:aws-cn:sts::111122223333:assumed-role/claudecode-readonly-demo/s"},
	} {
		if got, err := assumedRoleARN(tc.role, "s"); err != nil || got != tc.want {
			t.Errorf("assumedRoleARN(%s) = %q, %v; want %q", tc.role, got, err, tc.want)
		}
	}
	if _, err := assumedRoleARN("arn:aws:iam::111122223333:user/bob", "s"); err == nil {
		t.Error("a user ARN was taken as a role")
	}
}

func TestModelCall(t *testing.T) {
	t.Parallel()
	for model, want := range map[string]string{
		"eu.anthropic.claude-sonnet-4-6":     "GetInferenceProfile",
		"global.anthropic.claude-sonnet-4-6": "GetInferenceProfile",
		"us-gov.anthropic.claude-sonnet-4-6": "GetInferenceProfile",
		"anthropic.claude-sonnet-4-6":        "GetFoundationModel",
		"arn:aws:bedrock:eu-west-1:111122223333:inference-profile/eu.anthropic.claude-sonnet-4-6": "GetInferenceProfile",
		"arn:aws:bedrock:eu-west-1:111122223333:application-inference-profile/abc123":             "GetInferenceProfile",
		"arn:aws:bedrock:eu-west-1::foundation-model/anthropic.claude-sonnet-4-6":                 "GetFoundationModel",
	} {
		if got := modelCall(model); got != want {
			t.Errorf("modelCall(%s) = %s, want %s", model, got, want)
		}
	}
}
