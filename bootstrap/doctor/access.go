package doctor

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrock"
	"github.com/aws/aws-sdk-go-v2/service/bedrock/types"

	ccbedrock "github.com/ccboot/ccboot/bootstrap/bedrock"
)

// ModelAccess is the check that tells "allowed by IAM" from "usable": IAM
// may allow the invoke while the account still lacks what Bedrock needs
// besides, for an Anthropic model (AWS, "Access Amazon Bedrock foundation
// models"): Anthropic's use-case form submitted once per account (or
// organization), and the model's AWS Marketplace agreement, which Bedrock
// makes on the first invoke with the caller's Marketplace permissions.
// Without them the invoke probe can still pass (an empty body is rejected
// before any of this), and Claude Code fails later with
// AccessDeniedException.
const ModelAccess = "model-access"

// foundationModelID is the foundation model behind ANTHROPIC_MODEL, which
// GetFoundationModelAvailability takes: a system inference profile's ID (or
// ARN) without its prefix, a foundation model ARN's ID, or, for an
// application inference profile, the model it routes to (asked of Bedrock).
func foundationModelID(ctx context.Context, client *bedrock.Client, model string) (string, error) {
	if _, base, ok := ccbedrock.SplitPrefix(model); ok {
		return base, nil
	}
	if !strings.HasPrefix(model, "arn:") {
		return model, nil
	}
	// IDs may hold colons (anthropic.claude-sonnet-4-5-20250929-v1:0).
	if _, id, ok := strings.Cut(model, ":foundation-model/"); ok {
		return id, nil
	}
	if _, profile, ok := strings.Cut(model, ":inference-profile/"); ok {
		if _, base, ok := ccbedrock.SplitPrefix(profile); ok {
			return base, nil
		}
	}
	out, err := client.GetInferenceProfile(ctx, &bedrock.GetInferenceProfileInput{InferenceProfileIdentifier: aws.String(model)})
	if err != nil {
		return "", err
	}
	for _, m := range out.Models {
		if arn := aws.ToString(m.ModelArn); strings.Contains(arn, ":foundation-model/") {
			return arn[strings.Index(arn, ":foundation-model/")+len(":foundation-model/"):], nil
		}
	}
	return "", fmt.Errorf("inference profile %s routes to no foundation model", model)
}

// checkModelAccess asks Bedrock, as the ReadOnly role, for the model's
// availability to this account in the Region and names the first thing
// missing, each with its own fix.
func checkModelAccess(ctx context.Context, s *state) outcome {
	model, region := s.env.Model, s.env.Region
	client := bedrock.NewFromConfig(s.readOnlyCfg)
	id, err := foundationModelID(ctx, client, model)
	if err != nil {
		return fail(fmt.Sprintf("the foundation model behind %s: %s", model, describe(err)), modelFix(model, region, "GetInferenceProfile", err))
	}
	out, err := client.GetFoundationModelAvailability(ctx, &bedrock.GetFoundationModelAvailabilityInput{ModelId: aws.String(id)})
	if err == nil && out.AgreementAvailability == nil {
		err = errors.New("GetFoundationModelAvailability returned no agreement availability")
	}
	if _, code := apiError(err); code == "UnknownOperationException" {
		// A partition or Region without the API (model access is not
		// sold through AWS Marketplace everywhere): nothing to tell, and
		// the invoke probes still ask IAM. Said, not hidden.
		return pass("%s in %s: Bedrock here has no GetFoundationModelAvailability, so model access is not checked (the invoke checks still run)", model, region)
	}
	if err != nil {
		return fail(fmt.Sprintf("availability of %s in %s with the ReadOnly role: %s", id, region, describe(err)), modelFix(id, region, "GetFoundationModelAvailability", err))
	}
	return accessOutcome(model, id, region, out)
}

// accessOutcome reads the four fields of an availability answer, most
// basic first: Region, use-case form, then the Marketplace agreement.
func accessOutcome(model, id, region string, out *bedrock.GetFoundationModelAvailabilityOutput) outcome {
	agreement := out.AgreementAvailability.Status
	state := fmt.Sprintf("agreement %s, authorization %s, entitlement %s, Region %s", agreement, out.AuthorizationStatus, out.EntitlementAvailability, out.RegionAvailability)
	what := id
	if id != model {
		what = fmt.Sprintf("%s (behind %s)", id, model)
	}
	again := "then run `sudo ccboot doctor` again"
	switch {
	case out.RegionAvailability != types.RegionAvailabilityAvailable:
		return fail(fmt.Sprintf("%s is not available in %s (%s)", what, region, state),
			fmt.Sprintf("set [bedrock] model to a model %s offers (aws bedrock list-foundation-models --by-provider anthropic --region %s) and run `sudo ccboot repair`, or use a Region that offers %s", region, region, id))
	case out.AuthorizationStatus != types.AuthorizationStatusAuthorized:
		return fail(fmt.Sprintf("Anthropic's use-case form was not submitted for this account: %s is not authorized (%s)", what, state),
			"submit the Anthropic use case details once per account: Bedrock console, Model catalog, any Anthropic model; or `aws bedrock put-use-case-for-model-access --form-data <base64 JSON>` from the organization's management account (member accounts inherit it); "+again)
	case agreement == types.AgreementStatusError:
		return fail(fmt.Sprintf("Bedrock could not subscribe the account to the AWS Marketplace offer of %s: %s (%s)", what, aws.ToString(out.AgreementAvailability.ErrorMessage), state),
			"the Marketplace permission is missing: allow the tiers aws-marketplace:Subscribe and aws-marketplace:ViewSubscriptions on \"*\" with the condition aws:CalledViaLast = bedrock.amazonaws.com (the stack's BedrockPolicy, MarketplaceSubscribeThroughBedrock) and check no SCP denies them; the next invoke subscribes again (allow up to 15 minutes), "+again)
	case agreement == types.AgreementStatusPending:
		return fail(fmt.Sprintf("the account's AWS Marketplace subscription to %s is in progress (%s)", what, state),
			"wait for Bedrock to finish the subscription (up to 15 minutes), "+again)
	case agreement != types.AgreementStatusAvailable || out.EntitlementAvailability != types.EntitlementAvailabilityAvailable:
		return fail(fmt.Sprintf("the account has no AWS Marketplace subscription to %s yet: its agreement was not accepted (%s)", what, state),
			"the first invoke subscribes the account when the caller may aws-marketplace:Subscribe and ViewSubscriptions through Bedrock, as the stack's tiers may: run one request as ec2-user (claude-ro -p hi), allow up to 2 minutes, "+again+"; an organization that reviews the EULA first accepts it in the Bedrock console")
	}
	return pass("%s usable in %s: %s", what, region, state)
}
