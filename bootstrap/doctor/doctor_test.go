package doctor

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap/doctor/doctortest"
	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
)

// awsConfig is ~/.aws/config as the aws-config step writes it for the demo stack.
const awsConfig = `[default]
region = eu-west-1

[profile claudecode-readonly]
role_arn = arn:aws:iam::111122223333:role/claudecode-readonly-demo
credential_source = Ec2InstanceMetadata
role_session_name = claudecode-readonly-session
region = eu-west-1

[profile claudecode-elevated]
role_arn = arn:aws:iam::111122223333:role/claudecode-elevated-demo
source_profile = claudecode-readonly
role_session_name = claudecode-elevated-session
region = eu-west-1
`

// setup starts AWS's metadata mock and the fake STS/Bedrock, points the SDK
// at the fake through AWS_ENDPOINT_URL_STS and AWS_ENDPOINT_URL_BEDROCK, and
// fills the environment with an
// operator's settings that must not bypass the chain under test. Tests
// using it cannot run in parallel (t.Setenv).
func setup(t *testing.T) (*doctortest.Fake, *Env) {
	t.Helper()
	imds := aemmtest.Start(t, aemmtest.Default())
	fake := doctortest.New(t, "111122223333", "eu-west-1")
	// Per service: the SDK resolves the global AWS_ENDPOINT_URL after the
	// credential chain, so the chain's own AssumeRole would not see it (it
	// would go to the real STS). The global one is a closed loopback port,
	// so any client left unconfigured fails here instead of leaving it.
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
		AWSConfig:    []byte(awsConfig),
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
}

func TestAllPass(t *testing.T) {
	fake, env := setup(t)
	rs := Run(context.Background(), env)
	if !AllOK(rs) {
		t.Errorf("not all ok: %+v", rs)
	}
	m := byName(t, rs)
	want(t, m, IMDSCredentials, true, "instance role baskinc-role", "")
	want(t, m, ReadOnlyProfile, true, "arn:aws:sts::111122223333:assumed-role/claudecode-readonly-demo/claudecode-readonly-session via [profile claudecode-readonly]", "")
	want(t, m, ElevatedProfile, true, "arn:aws:sts::111122223333:assumed-role/claudecode-elevated-demo/claudecode-elevated-session via [profile claudecode-elevated]", "")
	want(t, m, BedrockModel, true, "eu.anthropic.claude-sonnet-4-6 in eu-west-1: inference profile", "")
	want(t, m, ReadOnlyInvoke, true, "the ReadOnly role may invoke eu.anthropic.claude-sonnet-4-6", "")
	want(t, m, ElevatedInvoke, true, "the Elevated role may invoke eu.anthropic.claude-sonnet-4-6", "")
	want(t, m, InstanceNoModel, true, "denied", "")
	// Every request was signed by a key of the chain, none by the
	// operator's AWS_ACCESS_KEY_ID; the model was described by ReadOnly and
	// the fail-safe asked as the instance role.
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

// A profile that resolves to another session than ccboot wrote fails, and
// so does a missing profile.
func TestProfileDrift(t *testing.T) {
	_, env := setup(t)
	env.AWSConfig = []byte(strings.Replace(awsConfig, "role_session_name = claudecode-readonly-session", "role_session_name = someone", 1))
	m := byName(t, Run(context.Background(), env))
	want(t, m, ReadOnlyProfile, false, "resolves to arn:aws:sts::111122223333:assumed-role/claudecode-readonly-demo/someone, want arn:aws:sts::111122223333:assumed-role/claudecode-readonly-demo/claudecode-readonly-session", "ccboot repair --only aws-config")

	env.AWSConfig = []byte("[default]\nregion = eu-west-1\n")
	m = byName(t, Run(context.Background(), env))
	want(t, m, ReadOnlyProfile, false, "~/.aws/config has no [profile claudecode-readonly]", "ccboot repair --only aws-config")
}

// doctor runs as root on a file the user may edit: a credential_process
// anywhere in the chain is refused, never run.
func TestCredentialProcessNotRun(t *testing.T) {
	_, env := setup(t)
	marker := filepath.Join(t.TempDir(), "ran")
	proc := "credential_process = /bin/sh -c 'touch " + marker + "'\n"
	for _, tc := range []struct{ name, cfg string }{
		{"readonly", strings.Replace(awsConfig, "credential_source = Ec2InstanceMetadata\n", proc, 1)},
		{"source of elevated", awsConfig + "\n[profile evil]\n" + proc + "\n"},
		{"environment", strings.Replace(awsConfig, "credential_source = Ec2InstanceMetadata", "credential_source = Environment", 1)},
	} {
		cfg := tc.cfg
		if tc.name == "source of elevated" {
			cfg = strings.Replace(cfg, "source_profile = claudecode-readonly", "source_profile = evil", 1)
		}
		env.AWSConfig = []byte(cfg)
		m := byName(t, Run(context.Background(), env))
		r := m[ReadOnlyProfile]
		if tc.name == "source of elevated" {
			r = m[ElevatedProfile]
		}
		if r.OK || !strings.Contains(r.Detail, "which ccboot doctor will not use as root") && !strings.Contains(r.Detail, "credential_source = Environment") {
			t.Errorf("%s: %+v, want a refusal", tc.name, r)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("doctor ran the user's credential_process")
	}
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
