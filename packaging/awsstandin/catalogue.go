package awsstandin

import (
	"fmt"
	"slices"
	"strings"
)

// The stand-in's own statement of what Bedrock serves, written from AWS's
// "Supported Regions and models for inference profiles" independently of
// bootstrap/bedrock (ccboot's table): the tests compare the two, so one must
// not be derived from the other. Simplified: a geographic profile's
// destination Regions are its source Regions.

const globalPrefix = "global"

// geographies: each geographic prefix and the Regions that may use it (and
// that its profiles route to).
var geographies = map[string][]string{
	"us": {"us-east-1", "us-east-2", "us-west-1", "us-west-2"},
	"eu": {"eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2", "eu-west-1", "eu-west-2", "eu-west-3"},
	"apac": {"ap-east-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1", "ap-south-2",
		"ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5", "ap-southeast-7"},
	"jp":     {"ap-northeast-1", "ap-northeast-3"},
	"au":     {"ap-southeast-2", "ap-southeast-4"},
	"us-gov": {"us-gov-east-1", "us-gov-west-1"},
}

// model is a foundation model and the profile prefixes it is offered with.
type model struct {
	ID, Name string
	Prefixes []string
	Created  string
}

var models = []model{
	{"anthropic.claude-sonnet-4-6", "Claude Sonnet 4.6", []string{"us", "eu", "apac", "jp", "au", "us-gov", globalPrefix}, "2026-02-17T00:00:00Z"},
	{"anthropic.claude-sonnet-4-5-20250929-v1:0", "Claude Sonnet 4.5", []string{"us", "eu", "apac", "jp", "au", "us-gov", globalPrefix}, "2025-09-29T00:00:00Z"},
	{"anthropic.claude-haiku-4-5-20251001-v1:0", "Claude Haiku 4.5", []string{"us", "eu", "apac", "jp", "au", globalPrefix}, "2025-10-01T00:00:00Z"},
	{"anthropic.claude-opus-4-6-v1", "Claude Opus 4.6", []string{"us", "eu", "apac", "jp", "au", globalPrefix}, "2026-02-05T00:00:00Z"},
	{"anthropic.claude-opus-4-5-20251101-v1:0", "Claude Opus 4.5", []string{"us", "eu", globalPrefix}, "2025-11-24T00:00:00Z"},
}

func findModel(id string) *model {
	for i := range models {
		if models[i].ID == id {
			return &models[i]
		}
	}
	return nil
}

// partitionOf is the partition of a Region by its name.
func partitionOf(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	case strings.HasPrefix(region, "us-iso"):
		return "aws-iso"
	}
	return "aws"
}

// regionPrefixes are the prefixes a source Region may use: its
// geographies, and global in the commercial partition.
func regionPrefixes(region string) []string {
	var out []string
	for _, p := range []string{"us", "eu", "jp", "au", "apac", "us-gov"} {
		if slices.Contains(geographies[p], region) {
			out = append(out, p)
		}
	}
	if partitionOf(region) == "aws" {
		out = append(out, globalPrefix)
	}
	return out
}

// splitProfile splits "eu.anthropic.x" into ("eu", "anthropic.x"); ok is
// false for an ID without a known geographic prefix.
func splitProfile(id string) (prefix, base string, ok bool) {
	p, b, found := strings.Cut(id, ".")
	if !found {
		return "", id, false
	}
	if _, geo := geographies[p]; geo || p == globalPrefix {
		return p, b, true
	}
	return "", id, false
}

// profile is a system-defined inference profile a Region can use.
type profile struct {
	ID     string
	Prefix string
	Model  *model
}

// profileFor returns the profile id names in region, or nil when the
// Region cannot use it (the prefix is not its geography's, or the model is
// not offered with that prefix).
func profileFor(region, id string) *profile {
	p, base, ok := splitProfile(id)
	if !ok || !slices.Contains(regionPrefixes(region), p) {
		return nil
	}
	m := findModel(base)
	if m == nil || !slices.Contains(m.Prefixes, p) {
		return nil
	}
	return &profile{ID: id, Prefix: p, Model: m}
}

// regionProfiles lists every profile region can use, by model then prefix.
func regionProfiles(region string) []*profile {
	var out []*profile
	for i := range models {
		for _, p := range regionPrefixes(region) {
			if slices.Contains(models[i].Prefixes, p) {
				out = append(out, &profile{ID: p + "." + models[i].ID, Prefix: p, Model: &models[i]})
			}
		}
	}
	return out
}

// regionModels lists the foundation models served in region (through one
// of its profiles).
func regionModels(region string) []*model {
	var out []*model
	for i := range models {
		for _, p := range regionPrefixes(region) {
			if slices.Contains(models[i].Prefixes, p) {
				out = append(out, &models[i])
				break
			}
		}
	}
	return out
}

func (s *Server) profileARN(id string) string {
	return fmt.Sprintf("arn:%s:bedrock:%s:%s:inference-profile/%s", s.cfg.Partition, s.cfg.Region, s.cfg.Account, id)
}

func (s *Server) modelARN(region, id string) string {
	return fmt.Sprintf("arn:%s:bedrock:%s::foundation-model/%s", s.cfg.Partition, region, id)
}

// routes are the foundation-model ARNs a profile routes to, each of which
// the caller must be allowed to invoke as well as the profile: for a
// geographic profile the model in every Region of the geography; for a
// global one the source Region's and the Region-less ARN AWS authorizes
// global routing with (arn:aws:bedrock:::foundation-model/ID). AWS's
// "Prerequisites for inference profiles" (Bedrock user guide) grants both the
// profile and foundation-model/* in every Region for this reason, as does
// the CDK's CrossRegionInferenceProfile.grantInvoke.
func (s *Server) routes(p *profile) []string {
	if p.Prefix == globalPrefix {
		return []string{s.modelARN(s.cfg.Region, p.Model.ID), s.modelARN("", p.Model.ID)}
	}
	var out []string
	for _, r := range geographies[p.Prefix] {
		out = append(out, s.modelARN(r, p.Model.ID))
	}
	return out
}
