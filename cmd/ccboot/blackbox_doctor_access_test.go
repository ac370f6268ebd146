package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccboot/ccboot/bootstrap/doctor"
	"github.com/ccboot/ccboot/bootstrap/doctor/doctortest"
	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
	"github.com/ccboot/ccboot/packaging/awsstandin"
	"github.com/ccboot/ccboot/packaging/cfn"
)

// standinWithAccess is standinFor with the account's model access as
// given: the stand-in decides every request with the template's policies,
// and Bedrock's use-case form, Marketplace agreement and Region on top.
func standinWithAccess(t *testing.T, access awsstandin.ModelAccess, mutations ...[2]string) (*awsstandin.Server, string) {
	t.Helper()
	const template = "../../packaging/cloudformation/ccboot.yaml"
	tpl := template
	if len(mutations) > 0 {
		tpl = filepath.Join(t.TempDir(), "ccboot.yaml")
		if err := awsstandin.MutatedTemplate(template, tpl, mutations...); err != nil {
			t.Fatal(err)
		}
	}
	policies, err := cfn.ManagedPoliciesDir("../..")
	if err != nil {
		t.Fatal(err)
	}
	inst := aemmtest.Default()
	return awsstandin.Serve(t, awsstandin.Config{Template: tpl, PoliciesDir: policies, HarnessDir: "../../packaging/iam",
		StackName: "demo", Region: inst.Region, Account: inst.Account, Partition: inst.Partition,
		InstanceKeys: map[string]string{doctortest.AEMMAccessKey: doctortest.AEMMSecretKey}, InstanceID: inst.InstanceID,
		ModelAccess: access})
}

// TestBlackboxDoctorModelAccess runs the built binary's doctor on a root
// ccboot bootstrapped, against the stand-in in each state of the account's
// model access. IAM allows every call in each, so only model-access tells
// that Claude Code could not use the model, each state with its own fix.
func TestBlackboxDoctorModelAccess(t *testing.T) {
	t.Parallel()
	_, flags := bootstrappedRoot(t)
	doctorRun := func(url string) (result, map[string]doctor.Result) {
		t.Helper()
		r := ccbootEnv(t, doctorShell(t, url), append([]string{"doctor", "--format", "json"}, flags...)...)
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
	// expect: exit code, and model-access failing with detail and fix
	// containing the given texts ("" detail: model-access passes).
	expect := func(what string, r result, m map[string]doctor.Result, code int, detail, fix string) {
		t.Helper()
		if r.code != code {
			t.Errorf("%s: exit %d, want %d\n%s", what, r.code, code, r.stdout)
		}
		got := m[doctor.ModelAccess]
		if detail == "" {
			if !got.OK {
				t.Errorf("%s: model-access = %+v, want ok", what, got)
			}
			return
		}
		if got.OK || !strings.Contains(got.Detail, detail) || !strings.Contains(got.Fix, fix) {
			t.Errorf("%s: model-access = %+v\nwant failing with detail %q and fix %q", what, got, detail, fix)
		}
		if !m[doctor.BedrockModel].OK {
			t.Errorf("%s: bedrock-model = %+v, want ok (IAM allows it)", what, m[doctor.BedrockModel])
		}
	}

	t.Run("not subscribed, the tiers may subscribe", func(t *testing.T) {
		t.Parallel()
		s, url := standinWithAccess(t, awsstandin.ModelAccess{NotSubscribed: true})
		r, m := doctorRun(url)
		expect("first run", r, m, 1, "the account has no AWS Marketplace subscription to anthropic.claude-sonnet-4-6", "the first invoke subscribes the account")
		// Doctor's own invoke probe was the account's first invoke: with
		// the template's grant, Bedrock subscribed it as ReadOnly.
		if !m[doctor.ReadOnlyInvoke].OK || !s.Subscribed() {
			t.Errorf("readonly-invoke %+v, subscribed %v: want the probe to subscribe the account", m[doctor.ReadOnlyInvoke], s.Subscribed())
		}
		r, m = doctorRun(url)
		expect("second run", r, m, 0, "", "")
	})

	t.Run("Marketplace permission missing", func(t *testing.T) {
		t.Parallel()
		// Subscribing denied even through Bedrock (as an SCP might): the
		// template's Deny without its aws:CalledViaLast exception, which
		// also overrides PowerUserAccess's aws-marketplace:*.
		s, url := standinWithAccess(t, awsstandin.ModelAccess{NotSubscribed: true}, [2]string{
			"            Condition:\n              StringNotEquals:\n                aws:CalledViaLast: bedrock.amazonaws.com\n", ""})
		r, m := doctorRun(url)
		expect("first run", r, m, 1, "no AWS Marketplace subscription", "the first invoke subscribes the account")
		if inv := m[doctor.ReadOnlyInvoke]; inv.OK || !strings.Contains(inv.Detail, "aws-marketplace:Subscribe") || s.Subscribed() {
			t.Errorf("readonly-invoke %+v, subscribed %v: want Bedrock's Marketplace denial", inv, s.Subscribed())
		}
		r, m = doctorRun(url)
		expect("after the failed subscription", r, m, 1, "could not subscribe the account to the AWS Marketplace offer of anthropic.claude-sonnet-4-6",
			"the Marketplace permission is missing: allow the tiers aws-marketplace:Subscribe and aws-marketplace:ViewSubscriptions")
	})

	t.Run("use-case form not submitted", func(t *testing.T) {
		t.Parallel()
		_, url := standinWithAccess(t, awsstandin.ModelAccess{UseCaseMissing: true})
		r, m := doctorRun(url)
		expect("use case", r, m, 1, "Anthropic's use-case form was not submitted for this account", "aws bedrock put-use-case-for-model-access")
	})

	t.Run("not in the Region", func(t *testing.T) {
		t.Parallel()
		_, url := standinWithAccess(t, awsstandin.ModelAccess{NotInRegion: true})
		r, m := doctorRun(url)
		expect("Region", r, m, 1, "is not available in eu-west-1", "set [bedrock] model to a model eu-west-1 offers")
	})
}
