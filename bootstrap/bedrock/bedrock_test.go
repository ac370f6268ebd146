package bedrock

import (
	"slices"
	"strings"
	"testing"
)

// One Region of every commercial family, GovCloud and China: the prefix the
// default model gets there, and what else that Region may use.
func TestModelForEveryRegionFamily(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		region, want string
		prefixes     []string
	}{
		{"us-east-1", "us.anthropic.claude-sonnet-4-6", []string{US, Global}},
		{"us-west-2", "us.anthropic.claude-sonnet-4-6", []string{US, Global}},
		{"eu-west-1", "eu.anthropic.claude-sonnet-4-6", []string{EU, Global}},
		{"eu-central-2", "eu.anthropic.claude-sonnet-4-6", []string{EU, Global}},
		{"ap-northeast-1", "jp.anthropic.claude-sonnet-4-6", []string{JP, APAC, Global}},
		{"ap-northeast-3", "jp.anthropic.claude-sonnet-4-6", []string{JP, APAC, Global}},
		{"ap-southeast-2", "au.anthropic.claude-sonnet-4-6", []string{AU, APAC, Global}},
		{"ap-southeast-4", "au.anthropic.claude-sonnet-4-6", []string{AU, APAC, Global}},
		{"ap-south-1", "apac.anthropic.claude-sonnet-4-6", []string{APAC, Global}},
		{"ap-northeast-2", "apac.anthropic.claude-sonnet-4-6", []string{APAC, Global}},
		{"ca-central-1", "global.anthropic.claude-sonnet-4-6", []string{Global}},
		{"sa-east-1", "global.anthropic.claude-sonnet-4-6", []string{Global}},
		{"me-central-1", "global.anthropic.claude-sonnet-4-6", []string{Global}},
		{"il-central-1", "global.anthropic.claude-sonnet-4-6", []string{Global}},
		{"af-south-1", "global.anthropic.claude-sonnet-4-6", []string{Global}},
		{"mx-central-1", "global.anthropic.claude-sonnet-4-6", []string{Global}},
		// A commercial Region newer than the table: global works from any.
		{"eu-east-9", "global.anthropic.claude-sonnet-4-6", []string{Global}},
		{"us-gov-west-1", "us-gov.anthropic.claude-sonnet-4-6", []string{USGov}},
		{"us-gov-east-1", "us-gov.anthropic.claude-sonnet-4-6", []string{USGov}},
		// China: no cross-Region inference profiles; the base ID as given
		// (README: configure a model the China Regions offer).
		{"cn-north-1", "anthropic.claude-sonnet-4-6", nil},
		{"cn-northwest-1", "anthropic.claude-sonnet-4-6", nil},
	} {
		if got := ModelFor(tc.region, DefaultModel); got != tc.want {
			t.Errorf("ModelFor(%s) = %q, want %q", tc.region, got, tc.want)
		}
		if got := Prefixes(tc.region); !slices.Equal(got, tc.prefixes) {
			t.Errorf("Prefixes(%s) = %q, want %q", tc.region, got, tc.prefixes)
		}
		// What ccboot writes by default must pass its own check.
		if err := Check(tc.region, ModelFor(tc.region, DefaultModel)); err != nil {
			t.Errorf("Check(%s, default) = %v", tc.region, err)
		}
	}
}

// The table itself: every Region's partition fits its prefixes, and no
// geography leaks into another partition.
func TestTableConsistent(t *testing.T) {
	t.Parallel()
	for _, r := range Regions() {
		ps := Prefixes(r)
		switch Partition(r) {
		case "aws":
			if len(ps) == 0 || ps[len(ps)-1] != Global || slices.Contains(ps, USGov) {
				t.Errorf("%s (aws): %q, want global last and no us-gov", r, ps)
			}
		case "aws-us-gov":
			if !slices.Equal(ps, []string{USGov}) {
				t.Errorf("%s (aws-us-gov): %q, want us-gov only", r, ps)
			}
		case "aws-cn":
			if len(ps) != 0 {
				t.Errorf("%s (aws-cn): %q, want none", r, ps)
			}
		default:
			t.Errorf("%s: partition %s", r, Partition(r))
		}
	}
	for _, p := range allPrefixes {
		if len(SourceRegions(p)) == 0 {
			t.Errorf("prefix %s has no source Region in the table", p)
		}
	}
	if got := SourceRegions(JP); !slices.Equal(got, []string{"ap-northeast-1", "ap-northeast-3"}) {
		t.Errorf("SourceRegions(jp) = %q", got)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		region, model string
		wantErr       []string // all in the message; nil: accepted
	}{
		{"eu-west-1", "eu.anthropic.claude-sonnet-4-6", nil},
		{"eu-west-1", "global.anthropic.claude-sonnet-4-6", nil},
		{"eu-west-1", "us.anthropic.claude-sonnet-4-6", []string{"eu-west-1", `"us.anthropic.claude-sonnet-4-6"`, "us. inference profile", "prefixes that work there: eu, global", "eu.anthropic.claude-sonnet-4-6"}},
		{"us-east-1", "eu.anthropic.claude-sonnet-4-6", []string{"us-east-1", "eu.", "us, global"}},
		{"ap-northeast-1", "au.anthropic.claude-sonnet-4-6", []string{"ap-northeast-1", "au.", "jp, apac, global"}},
		{"ap-northeast-1", "apac.anthropic.claude-sonnet-4-6", nil},
		{"ca-central-1", "us.anthropic.claude-sonnet-4-6", []string{"ca-central-1", "us.", "global"}},
		{"us-gov-west-1", "global.anthropic.claude-sonnet-4-6", []string{"us-gov-west-1", "global.", "us-gov"}},
		{"us-gov-west-1", "us.anthropic.claude-sonnet-4-6", []string{"us-gov-west-1", "us.", "us-gov"}},
		{"us-gov-west-1", "us-gov.anthropic.claude-sonnet-4-6", nil},
		{"cn-north-1", "us.anthropic.claude-sonnet-4-6", []string{"cn-north-1", "us.", "no cross-Region inference profile", "anthropic.claude-sonnet-4-6"}},
		// Taken as given: no geographic prefix, or an ARN.
		{"cn-north-1", "anthropic.claude-sonnet-4-6", nil},
		{"eu-west-1", "anthropic.claude-3-haiku-20240307-v1:0", nil},
		{"eu-west-1", "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/abc123", nil},
		{"eu-west-1", "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-6", nil},
		{"eu-west-1", "usa.model", nil},
	} {
		err := Check(tc.region, tc.model)
		if tc.wantErr == nil {
			if err != nil {
				t.Errorf("Check(%s, %s) = %v, want nil", tc.region, tc.model, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("Check(%s, %s) = nil, want an error", tc.region, tc.model)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error is not one line: %q", err)
		}
		for _, w := range tc.wantErr {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Check(%s, %s) = %q, lacks %q", tc.region, tc.model, err, w)
			}
		}
	}
}

func TestSplitPrefix(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, prefix, base string }{
		{"us-gov.anthropic.claude-sonnet-4-6", USGov, "anthropic.claude-sonnet-4-6"},
		{"apac.anthropic.claude-sonnet-4-6", APAC, "anthropic.claude-sonnet-4-6"},
		{"anthropic.claude-sonnet-4-6", "", "anthropic.claude-sonnet-4-6"},
		{"arn:aws:bedrock:us-east-1:1:inference-profile/us.x", "", "arn:aws:bedrock:us-east-1:1:inference-profile/us.x"},
		{"nodot", "", "nodot"},
	} {
		p, b, ok := SplitPrefix(tc.in)
		if p != tc.prefix || b != tc.base || ok != (tc.prefix != "") {
			t.Errorf("SplitPrefix(%q) = %q, %q, %v", tc.in, p, b, ok)
		}
	}
}

// The haiku and opus pins get the Region's prefix like the default model,
// except where AWS offers no profile of them (GovCloud): no pin there, so
// the caller falls back to ANTHROPIC_MODEL instead of naming a profile
// that does not exist.
func TestPinFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		region, base, want string
		ok                 bool
	}{
		{"eu-west-1", DefaultHaikuModel, "eu." + DefaultHaikuModel, true},
		{"eu-west-1", DefaultOpusModel, "eu." + DefaultOpusModel, true},
		{"us-east-1", DefaultHaikuModel, "us." + DefaultHaikuModel, true},
		{"ap-northeast-1", DefaultOpusModel, "jp." + DefaultOpusModel, true},
		{"ca-central-1", DefaultHaikuModel, "global." + DefaultHaikuModel, true},
		{"us-gov-west-1", DefaultModel, "us-gov." + DefaultModel, true},
		{"us-gov-west-1", DefaultHaikuModel, "", false},
		{"us-gov-east-1", DefaultOpusModel, "", false},
		{"cn-north-1", DefaultHaikuModel, DefaultHaikuModel, true},
	} {
		got, ok := PinFor(tc.region, tc.base)
		if got != tc.want || ok != tc.ok {
			t.Errorf("PinFor(%s, %s) = %q, %v; want %q, %v", tc.region, tc.base, got, ok, tc.want, tc.ok)
		}
		if ok {
			if err := Check(tc.region, got); err != nil {
				t.Errorf("PinFor(%s, %s) = %q fails Check: %v", tc.region, tc.base, got, err)
			}
		}
	}
}
