package awsstandin

import (
	"fmt"
	"net/http"
	"strings"
)

// Model access beyond IAM, as AWS's "Access Amazon Bedrock foundation
// models" describes it for Anthropic's models: the account must have
// submitted Anthropic's use-case form once, and holds an AWS Marketplace
// agreement, which Bedrock creates on the first invoke if the caller may
// aws-marketplace:Subscribe and ViewSubscriptions through Bedrock
// (aws:CalledViaLast). Simplified: the subscription completes at once
// (AWS: up to 2 minutes), and a failed attempt fails that invoke too
// (AWS: calls may succeed for a while, then AccessDeniedException).

// ModelAccess is the account's standing with the stand-in's models. The
// zero value is an account that has it all.
type ModelAccess struct {
	// UseCaseMissing: Anthropic's first-time-use form was never submitted
	// (PutUseCaseForModelAccess). Invokes fail; availability reports
	// authorizationStatus NOT_AUTHORIZED.
	UseCaseMissing bool
	// NotSubscribed: no Marketplace agreement yet. The first invoke by a
	// caller with the Marketplace grant subscribes the account; one without
	// it fails AccessDeniedException, and availability then reports the
	// agreement's ERROR.
	NotSubscribed bool
	// NotInRegion: availability reports regionAvailability NOT_AVAILABLE.
	NotInRegion bool
}

// bedrockService is aws:CalledViaLast of a call Bedrock makes for a caller.
const bedrockService = "bedrock.amazonaws.com"

// viaBedrock is the request context of the Marketplace calls Bedrock makes
// with the caller's permissions.
func viaBedrock() map[string]any {
	return map[string]any{"aws:CalledVia": []string{bedrockService}, "aws:CalledViaFirst": bedrockService,
		"aws:CalledViaLast": bedrockService, "aws:ViaAWSService": "true"}
}

// marketplaceDenied is Bedrock's answer when the automatic subscription
// fails for want of the caller's Marketplace permissions (AWS re:Post,
// "resolve AccessDeniedException errors for AWS Marketplace permissions").
const marketplaceDenied = "Model access is denied due to IAM user or service role is not authorized to perform the required AWS Marketplace actions (aws-marketplace:ViewSubscriptions, aws-marketplace:Subscribe) to enable access to this model. Refer to the Amazon Bedrock documentation for further details. Your AWS Marketplace subscription for this model cannot be completed at this time. If you recently fixed this issue, try again after 15 minutes."

const useCaseMissing = "Model use case details have not been submitted for this account. Fill out the Anthropic use case details form before using the model. If you have already filled out the form, try again in 15 minutes."

// modelAccess decides whether an invoke that IAM allowed may use the
// model: the use-case form, then the agreement, subscribing the account
// if the caller may.
func (s *Server) modelAccess(c *call) error {
	s.mu.Lock()
	useCase, subscribed := !s.cfg.ModelAccess.UseCaseMissing, s.subscribed
	s.mu.Unlock()
	if !useCase {
		return &apiError{http.StatusNotFound, "ResourceNotFoundException", useCaseMissing}
	}
	if subscribed {
		return nil
	}
	var sims []simulation
	for _, a := range []string{"aws-marketplace:Subscribe", "aws-marketplace:ViewSubscriptions"} {
		sims = append(sims, simulation{Principal: c.id.principal(s.cfg.Partition, s.cfg.Account), PrincipalArn: c.id.role.ARN,
			Account: s.cfg.Account, Action: a, Resource: "*", Identity: c.id.role.Identity, Context: viaBedrock()})
	}
	got, err := s.engine.decide(s.cfg.Account, sims)
	if err != nil {
		return err
	}
	c.rec.Marketplace = "Allowed"
	for _, d := range got {
		if d != "Allowed" {
			c.rec.Marketplace = d
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.rec.Marketplace != "Allowed" {
		s.subscribeError = fmt.Sprintf("%s is not authorized to perform aws-marketplace:Subscribe and aws-marketplace:ViewSubscriptions", c.id.principal(s.cfg.Partition, s.cfg.Account))
		return &apiError{http.StatusForbidden, "AccessDeniedException", marketplaceDenied}
	}
	s.subscribed, s.subscribeError = true, ""
	return nil
}

// getFoundationModelAvailability answers GET
// /foundation-model-availability/{modelId}: the model's standing for the
// account in the Region, read-only.
func (s *Server) getFoundationModelAvailability(c *call, id string) error {
	c.rec.ModelID = id
	ok, err := s.authorize(c, "bedrock:GetFoundationModelAvailability", []string{"*"}, nil)
	if err != nil {
		return err
	}
	if !ok {
		return s.accessDenied(c)
	}
	m := findModel(id)
	if m == nil {
		return &apiError{http.StatusNotFound, "ResourceNotFoundException", fmt.Sprintf("Model %s not found.", id)}
	}
	inRegion := false
	for _, rm := range regionModels(s.cfg.Region) {
		inRegion = inRegion || rm.ID == m.ID
	}
	s.mu.Lock()
	subscribed, subscribeError := s.subscribed, s.subscribeError
	s.mu.Unlock()
	available := func(ok bool) string {
		if ok {
			return "AVAILABLE"
		}
		return "NOT_AVAILABLE"
	}
	agreement := map[string]string{"status": available(subscribed)}
	if subscribeError != "" {
		agreement = map[string]string{"status": "ERROR", "errorMessage": subscribeError}
	}
	authorization := "AUTHORIZED"
	if s.cfg.ModelAccess.UseCaseMissing {
		authorization = "NOT_AUTHORIZED"
	}
	return writeJSON(c, map[string]any{
		"modelId": m.ID, "agreementAvailability": agreement, "authorizationStatus": authorization,
		"entitlementAvailability": available(subscribed),
		"regionAvailability":      available(inRegion && !s.cfg.ModelAccess.NotInRegion),
	})
}

// Subscribed reports whether the account holds the Marketplace agreement.
func (s *Server) Subscribed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subscribed
}

func availabilityModelID(path string) (string, bool) {
	id, ok := strings.CutPrefix(path, "/foundation-model-availability/")
	return id, ok && id != ""
}
