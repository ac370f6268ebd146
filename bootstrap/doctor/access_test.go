package doctor

import (
	"context"
	"strings"
	"testing"

	"github.com/ccboot/ccboot/bootstrap/doctor/doctortest"
)

// The foundation model behind each kind of ANTHROPIC_MODEL, without asking
// Bedrock (a nil client would panic if it did).
func TestFoundationModelID(t *testing.T) {
	t.Parallel()
	for model, want := range map[string]string{
		"eu.anthropic.claude-sonnet-4-6":                                                          "anthropic.claude-sonnet-4-6",
		"global.anthropic.claude-sonnet-4-6":                                                      "anthropic.claude-sonnet-4-6",
		"us-gov.anthropic.claude-sonnet-4-5-20250929-v1:0":                                        "anthropic.claude-sonnet-4-5-20250929-v1:0",
		"anthropic.claude-sonnet-4-5-20250929-v1:0":                                               "anthropic.claude-sonnet-4-5-20250929-v1:0",
		"arn:aws:bedrock:eu-west-1::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0":   "anthropic.claude-sonnet-4-5-20250929-v1:0",
		"arn:aws:bedrock:eu-west-1:111122223333:inference-profile/eu.anthropic.claude-sonnet-4-6": "anthropic.claude-sonnet-4-6",
	} {
		if got, err := foundationModelID(context.Background(), nil, model); err != nil || got != want {
			t.Errorf("foundationModelID(%s) = %q, %v; want %q", model, got, err, want)
		}
	}
}

// Every state of the account's model access fails model-access on its own
// line with its own fix, while IAM allows everything (bedrock-model and the
// invoke probes still pass): allowed is not usable.
func TestModelAccessStates(t *testing.T) {
	for _, c := range []struct {
		name         string
		availability doctortest.Availability
		detail, fix  string
	}{
		{"use-case form not submitted", doctortest.Availability{Authorization: "NOT_AUTHORIZED"},
			"Anthropic's use-case form was not submitted for this account", "aws bedrock put-use-case-for-model-access --form-data"},
		{"not subscribed", doctortest.Availability{Agreement: "NOT_AVAILABLE", Entitlement: "NOT_AVAILABLE"},
			"no AWS Marketplace subscription to anthropic.claude-sonnet-4-6 (behind eu.anthropic.claude-sonnet-4-6) yet", "the first invoke subscribes the account"},
		{"entitlement missing", doctortest.Availability{Entitlement: "NOT_AVAILABLE"},
			"entitlement NOT_AVAILABLE", "the first invoke subscribes the account"},
		{"Marketplace permission missing", doctortest.Availability{Agreement: "ERROR", AgreementError: "not authorized to perform aws-marketplace:Subscribe"},
			"could not subscribe the account to the AWS Marketplace offer of anthropic.claude-sonnet-4-6 (behind eu.anthropic.claude-sonnet-4-6): not authorized to perform aws-marketplace:Subscribe",
			"the Marketplace permission is missing: allow the tiers aws-marketplace:Subscribe and aws-marketplace:ViewSubscriptions on \"*\" with the condition aws:CalledViaLast = bedrock.amazonaws.com"},
		{"subscription pending", doctortest.Availability{Agreement: "PENDING"}, "subscription to anthropic.claude-sonnet-4-6 (behind eu.anthropic.claude-sonnet-4-6) is in progress", "up to 15 minutes"},
		{"not in the Region", doctortest.Availability{Region: "NOT_AVAILABLE"},
			"is not available in eu-west-1", "aws bedrock list-foundation-models --by-provider anthropic --region eu-west-1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fake, env := setup(t)
			fake.Set(func(f *doctortest.Fake) { f.Availability = c.availability })
			rs := Run(context.Background(), env)
			m := byName(t, rs)
			want(t, m, ModelAccess, false, c.detail, c.fix)
			want(t, m, BedrockModel, true, "", "")
			want(t, m, ReadOnlyInvoke, true, "", "")
			if AllOK(rs) {
				t.Error("all ok with model access missing")
			}
		})
	}
}

// An intact account passes, asked as ReadOnly for the foundation model
// behind the profile; an application inference profile is resolved to its
// model through Bedrock first.
func TestModelAccessUsable(t *testing.T) {
	fake, env := setup(t)
	m := byName(t, Run(context.Background(), env))
	want(t, m, ModelAccess, true, "anthropic.claude-sonnet-4-6 (behind eu.anthropic.claude-sonnet-4-6) usable in eu-west-1: agreement AVAILABLE, authorization AUTHORIZED, entitlement AVAILABLE, Region AVAILABLE", "")
	if calls := strings.Join(fake.Calls(), "\n"); !strings.Contains(calls, "bedrock /foundation-model-availability/anthropic.claude-sonnet-4-6 claudecode-readonly-demo") {
		t.Errorf("availability not asked as ReadOnly:\n%s", calls)
	}

	// Where Bedrock has no such operation, the check says it could not
	// check and passes; the invoke probes still run.
	fake.Set(func(f *doctortest.Fake) { f.NoAvailabilityAPI = true })
	m = byName(t, Run(context.Background(), env))
	want(t, m, ModelAccess, true, "has no GetFoundationModelAvailability, so model access is not checked", "")
	want(t, m, ReadOnlyInvoke, true, "", "")
	fake.Set(func(f *doctortest.Fake) { f.NoAvailabilityAPI = false })

	const app = "arn:aws:bedrock:eu-west-1:111122223333:application-inference-profile/team-claude"
	fake.Set(func(f *doctortest.Fake) { f.Models["team-claude"] = true })
	env.Model = app
	m = byName(t, Run(context.Background(), env))
	want(t, m, ModelAccess, true, "team-claude (behind "+app+") usable", "")

	// Without the model in the Region, bedrock-model fails first.
	fake.Set(func(f *doctortest.Fake) { delete(f.Models, "team-claude") })
	m = byName(t, Run(context.Background(), env))
	want(t, m, ModelAccess, false, "skipped: bedrock-model failed", "")
}
