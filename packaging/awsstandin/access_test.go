package awsstandin

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrock"
	bedrocktypes "github.com/aws/aws-sdk-go-v2/service/bedrock/types"
)

// standinWith serves the template (mutated) for the test stack in
// eu-west-1 with the account's model access as given.
func standinWith(t *testing.T, access ModelAccess, mutations ...[2]string) (*Server, string) {
	t.Helper()
	return standinAt(t, region, "aws", access, mutations...)
}

const sonnet = "anthropic.claude-sonnet-4-6"

// availability is GetFoundationModelAvailability through the SDK, as
// doctor calls it, in one line: agreement/authorization/entitlement/region.
func availability(t *testing.T, url string, c aws.Credentials, model string) (string, error) {
	t.Helper()
	out, err := bedrock.NewFromConfig(awsConfig(c), func(o *bedrock.Options) { o.BaseEndpoint = aws.String(url) }).
		GetFoundationModelAvailability(context.Background(), &bedrock.GetFoundationModelAvailabilityInput{ModelId: aws.String(model)})
	if err != nil {
		return "", err
	}
	a := out.AgreementAvailability
	if a == nil || aws.ToString(out.ModelId) != model {
		t.Fatalf("availability %+v", out)
	}
	s := string(a.Status)
	if a.ErrorMessage != nil {
		s += "(" + *a.ErrorMessage + ")"
	}
	return strings.Join([]string{s, string(out.AuthorizationStatus), string(out.EntitlementAvailability), string(out.RegionAvailability)}, "/"), nil
}

func readOnlyCreds(t *testing.T, url string) aws.Credentials {
	t.Helper()
	ro, err := assume(t, url, instanceCreds, readOnlyARN, roSession)
	if err != nil {
		t.Fatal(err)
	}
	return ro
}

// An account that never invoked the model: the first invoke by ReadOnly,
// whose template grants aws-marketplace:Subscribe through Bedrock,
// subscribes it and answers; availability shows the agreement before and
// after. The instance role may not read availability.
func TestModelAccessFirstInvokeSubscribes(t *testing.T) {
	s, url := standinWith(t, ModelAccess{NotSubscribed: true})
	ro := readOnlyCreds(t, url)
	if got, err := availability(t, url, ro, sonnet); err != nil || got != "NOT_AVAILABLE/AUTHORIZED/NOT_AVAILABLE/AVAILABLE" {
		t.Errorf("before the first invoke: %s %v", got, err)
	}
	if _, err := invoke(url, ro, sonnetEU); err != nil {
		t.Fatalf("first invoke: %v", err)
	}
	if !s.Subscribed() {
		t.Error("the first invoke did not subscribe the account")
	}
	if got, err := availability(t, url, ro, sonnet); err != nil || got != "AVAILABLE/AUTHORIZED/AVAILABLE/AVAILABLE" {
		t.Errorf("after the first invoke: %s %v", got, err)
	}
	var marketplace []string
	for _, r := range s.Requests() {
		if r.Marketplace != "" {
			marketplace = append(marketplace, r.Action+" "+r.Marketplace)
		}
	}
	if strings.Join(marketplace, ",") != "bedrock:InvokeModel Allowed" {
		t.Errorf("Marketplace decisions %v, want one, on the first invoke", marketplace)
	}
	_, err := availability(t, url, instanceCreds, sonnet)
	wantError(t, "instance role", err, "AccessDeniedException", "bedrock:GetFoundationModelAvailability")
}

// Without the template's Marketplace grant the first invoke fails with
// Bedrock's Marketplace message, the account stays unsubscribed and the
// agreement reports the error; so does every later invoke.
func TestModelAccessWithoutMarketplaceGrant(t *testing.T) {
	s, url := standinWith(t, ModelAccess{NotSubscribed: true}, [2]string{"              - aws-marketplace:Subscribe\n              - aws-marketplace:ViewSubscriptions\n", "              - aws-marketplace:ViewSubscriptions\n"})
	ro := readOnlyCreds(t, url)
	for i := range 2 {
		_, err := invoke(url, ro, sonnetEU)
		wantError(t, "invoke without aws-marketplace:Subscribe", err, "AccessDeniedException", "aws-marketplace:Subscribe")
		if i == 0 && s.Subscribed() {
			t.Error("subscribed without the permission")
		}
	}
	got, err := availability(t, url, ro, sonnet)
	if err != nil || !strings.HasPrefix(got, "ERROR(") || !strings.Contains(got, "aws-marketplace:Subscribe") {
		t.Errorf("availability after the failed subscription: %s %v", got, err)
	}
}

// The use-case form never submitted: invokes fail, availability says
// NOT_AUTHORIZED. A model out of the Region says so; an unknown one is not
// found.
func TestModelAccessUseCaseAndRegion(t *testing.T) {
	_, url := standinWith(t, ModelAccess{UseCaseMissing: true, NotInRegion: true})
	ro := readOnlyCreds(t, url)
	_, err := invoke(url, ro, sonnetEU)
	wantError(t, "invoke without the use-case form", err, "ResourceNotFoundException", "use case details have not been submitted")
	if got, err := availability(t, url, ro, sonnet); err != nil || got != string(bedrocktypes.AgreementStatusAvailable)+"/NOT_AUTHORIZED/AVAILABLE/NOT_AVAILABLE" {
		t.Errorf("availability: %s %v", got, err)
	}
	_, err = availability(t, url, ro, "anthropic.claude-nonesuch")
	wantError(t, "unknown model", err, "ResourceNotFoundException", "anthropic.claude-nonesuch")
}
