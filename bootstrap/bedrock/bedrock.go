// Package bedrock knows which cross-Region inference profiles an AWS Region
// can use, so ANTHROPIC_MODEL names one that Bedrock serves from the
// instance's Region.
//
// A cross-Region (system-defined) inference profile ID is a model ID with a
// geographic prefix: us.anthropic.claude-sonnet-4-6. Bedrock accepts it only
// from the profile's source Regions (a us. profile from eu-west-1 is a
// validation error), and routes the request to a foundation model in one of
// the profile's destination Regions; a global. profile may route to any
// commercial Region.
package bedrock

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// DefaultModel is the model ccboot configures when [bedrock] model is not
// set, given without a prefix: the prefix comes from the Region (ModelFor).
const DefaultModel = "anthropic.claude-sonnet-4-6"

// DefaultHaikuModel and DefaultOpusModel are what Claude Code's haiku and
// opus aliases (and its background model, which is haiku's) are pinned to
// when [bedrock] haiku_model / opus_model are not set; like DefaultModel
// they get the Region's prefix (PinFor). Pinned because Claude Code's
// built-in defaults can name a model the Region or account lacks.
const (
	DefaultHaikuModel = "anthropic.claude-haiku-4-5-20251001-v1:0"
	DefaultOpusModel  = "anthropic.claude-opus-4-6-v1"
)

// notOffered lists, for the defaults above, prefixes under which AWS's
// "Supported Regions and models for inference profiles" offers no profile
// of that model: Haiku 4.5 and Opus 4.6 have none in GovCloud.
var notOffered = map[string][]string{
	DefaultHaikuModel: {USGov},
	DefaultOpusModel:  {USGov},
}

// Geographic prefixes of system-defined inference profiles.
const (
	US     = "us"
	EU     = "eu"
	APAC   = "apac"
	JP     = "jp"
	AU     = "au"
	USGov  = "us-gov"
	Global = "global"
)

// allPrefixes are the prefixes ccboot recognises in a model ID.
var allPrefixes = []string{US, EU, APAC, JP, AU, USGov, Global}

// regionPrefixes is the one table: for each source Region, the inference
// profile prefixes Bedrock accepts there, most local geography first (so
// the default keeps requests in the nearest geography, global last).
//
// From AWS's documentation of cross-Region inference: "Supported Regions and
// models for inference profiles"
// (https://docs.aws.amazon.com/bedrock/latest/userguide/inference-profiles-support.html),
// "Geographic cross-Region inference"
// (.../geographic-cross-region-inference.html) and "Global cross-Region
// inference" (.../global-cross-region-inference.html), as listed for the
// Anthropic Claude profiles: US, EU, APAC, Japan (jp: Tokyo, Osaka),
// Australia (au: Sydney, Melbourne), GovCloud (us-gov); global from every
// commercial source Region. The China Regions (aws-cn) have no
// cross-Region inference profile for these models: nothing to prefix.
var regionPrefixes = map[string][]string{
	// United States
	"us-east-1": {US, Global}, "us-east-2": {US, Global}, "us-west-1": {US, Global}, "us-west-2": {US, Global},
	// Europe
	"eu-central-1": {EU, Global}, "eu-central-2": {EU, Global}, "eu-north-1": {EU, Global},
	"eu-south-1": {EU, Global}, "eu-south-2": {EU, Global},
	"eu-west-1": {EU, Global}, "eu-west-2": {EU, Global}, "eu-west-3": {EU, Global},
	// Asia Pacific: Japan and Australia have profiles of their own.
	"ap-northeast-1": {JP, APAC, Global}, "ap-northeast-3": {JP, APAC, Global},
	"ap-southeast-2": {AU, APAC, Global}, "ap-southeast-4": {AU, APAC, Global},
	"ap-northeast-2": {APAC, Global}, "ap-south-1": {APAC, Global}, "ap-south-2": {APAC, Global},
	"ap-southeast-1": {APAC, Global}, "ap-southeast-3": {APAC, Global}, "ap-southeast-5": {APAC, Global},
	"ap-southeast-7": {APAC, Global}, "ap-east-2": {APAC, Global},
	// Commercial Regions outside the geographies above: global only.
	"ca-central-1": {Global}, "ca-west-1": {Global}, "mx-central-1": {Global}, "sa-east-1": {Global},
	"me-central-1": {Global}, "me-south-1": {Global}, "il-central-1": {Global}, "af-south-1": {Global},
	"ap-east-1": {Global},
	// AWS GovCloud (US): its own profiles, no global.
	"us-gov-west-1": {USGov}, "us-gov-east-1": {USGov},
	// China: none.
	"cn-north-1": nil, "cn-northwest-1": nil,
}

// Partition returns the partition a Region belongs to.
func Partition(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	case strings.HasPrefix(region, "us-iso"):
		return "aws-iso" // no profiles known; see Prefixes
	}
	return "aws"
}

// Prefixes returns the inference profile prefixes usable from region, most
// local first. A commercial Region newer than the table gets global only;
// a GovCloud one us-gov; China and other partitions none.
func Prefixes(region string) []string {
	if p, ok := regionPrefixes[region]; ok {
		return append([]string(nil), p...)
	}
	switch Partition(region) {
	case "aws":
		return []string{Global}
	case "aws-us-gov":
		return []string{USGov}
	}
	return nil
}

// SourceRegions returns the Regions of the table that can use prefix, sorted.
// A geographic profile routes only among Regions of its geography, so these
// are also where its foundation models run.
func SourceRegions(prefix string) []string {
	var out []string
	for r, ps := range regionPrefixes {
		for _, p := range ps {
			if p == prefix {
				out = append(out, r)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Regions returns every Region of the table, sorted.
func Regions() []string {
	out := make([]string, 0, len(regionPrefixes))
	for r := range regionPrefixes {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// SplitPrefix splits a geographic prefix off a model ID:
// "eu.anthropic.claude-sonnet-4-6" -> "eu", "anthropic.claude-sonnet-4-6".
// ok is false for ARNs and IDs without a known prefix.
func SplitPrefix(model string) (prefix, base string, ok bool) {
	if strings.HasPrefix(model, "arn:") {
		return "", model, false
	}
	p, rest, found := strings.Cut(model, ".")
	if !found {
		return "", model, false
	}
	for _, known := range allPrefixes {
		if p == known {
			return p, rest, true
		}
	}
	return "", model, false
}

// ModelFor returns the model ID for ANTHROPIC_MODEL in region: model with
// the first prefix the Region can use, or model as it is when the Region
// has none (China). model is a base ID such as DefaultModel.
func ModelFor(region, model string) string {
	if ps := Prefixes(region); len(ps) > 0 {
		return ps[0] + "." + model
	}
	return model
}

// Check reports whether Bedrock in region accepts model. Inference profile
// ARNs and IDs without a geographic prefix are taken as given.
func Check(region, model string) error { return CheckKey("model", region, model) }

// CheckKey is Check for the model set by [bedrock] key, so the error names
// the key to change (haiku_model, opus_model).
func CheckKey(key, region, model string) error {
	prefix, base, ok := SplitPrefix(model)
	if !ok {
		return nil
	}
	ps := Prefixes(region)
	for _, p := range ps {
		if p == prefix {
			return nil
		}
	}
	if len(ps) == 0 {
		return fmt.Errorf("[bedrock] %s %q: Region %s cannot use the %s. inference profile (no cross-Region inference profile is offered there); set a model ID without a prefix, e.g. %s",
			key, model, region, prefix, base)
	}
	return fmt.Errorf("[bedrock] %s %q: Region %s cannot use the %s. inference profile; prefixes that work there: %s (e.g. %s.%s)",
		key, model, region, prefix, strings.Join(ps, ", "), ps[0], base)
}

// PinFor returns the inference profile ID of base (a model ID without a
// prefix) for region, with the first prefix the Region can use and the
// model is offered under. ok is false when there is none (Haiku 4.5 in
// GovCloud): the caller then pins the alias to ANTHROPIC_MODEL, the way
// Claude Code itself falls back when a background model is missing.
func PinFor(region, base string) (id string, ok bool) {
	ps := Prefixes(region)
	if len(ps) == 0 {
		return base, true // China: the base ID as given (see ModelFor)
	}
	for _, p := range ps {
		if !slices.Contains(notOffered[base], p) {
			return p + "." + base, true
		}
	}
	return "", false
}
