package packaging_test

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/ini.v1"
	"gopkg.in/yaml.v3"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

// The template's TierMode outside IAM (the permission matrix covers IAM):
// the instance's metadata options and the mode the UserData hands ccboot.

const bakedAMI = "ami-0fedcba9876543210"

// tierInstance is the Instance of the stack created with TierMode mode,
// MetadataHopLimit hop, from a plain or a baked AMI.
type tierInstance struct {
	hop, tokens, endpoint string
	userData              string
}

func resolveTierInstance(tpl map[string]any, mode, hop string, baked bool) (tierInstance, error) {
	given := map[string]string{"TierMode": mode, "MetadataHopLimit": hop}
	if baked {
		given["BakedAmiId"], given["CcbootUrlArm64"], given["CcbootSha256Arm64"] = bakedAMI, "", ""
	}
	r, err := newResolverWith(tpl, testStacks()[0], given)
	if err != nil {
		return tierInstance{}, err
	}
	res, err := r.Resources()
	if err != nil {
		return tierInstance{}, err
	}
	props := dig(res["Instance"], "Properties")
	ud, _ := dig(props, "UserData").(string)
	b, err := base64.StdEncoding.DecodeString(ud)
	if err != nil {
		return tierInstance{}, fmt.Errorf("UserData: %w", err)
	}
	mo := dig(props, "MetadataOptions")
	return tierInstance{hop: fmt.Sprint(dig(mo, "HttpPutResponseHopLimit")), tokens: fmt.Sprint(dig(mo, "HttpTokens")),
		endpoint: fmt.Sprint(dig(mo, "HttpEndpoint")), userData: string(b)}, nil
}

// bakedDropIn is the ccboot.conf drop-in a baked image's cloud-config
// writes.
func bakedDropIn(userData string) (string, error) {
	var cc struct {
		WriteFiles []struct{ Path, Content string } `yaml:"write_files"`
	}
	if err := yaml.Unmarshal([]byte(userData), &cc); err != nil {
		return "", fmt.Errorf("baked UserData is not YAML: %w", err)
	}
	if len(cc.WriteFiles) != 1 {
		return "", fmt.Errorf("baked UserData writes %d files, want the one drop-in", len(cc.WriteFiles))
	}
	return cc.WriteFiles[0].Content, nil
}

// iniTierMode is [tiers] mode of an INI text, "" when absent (ccboot's
// default, advisory).
func iniTierMode(text string) (string, error) {
	f, err := ini.Load([]byte(text))
	if err != nil {
		return "", err
	}
	return f.Section("tiers").Key("mode").String(), nil
}

var scriptTierMode = regexp.MustCompile(`(?m)^CCBOOT_TIER_MODE='([^']*)'$`)

// tierModeProblems lists what breaks mode's invariants in the template
// text: IMDSv2 only in both modes; hop limit 1 in enforced whatever
// MetadataHopLimit says (bridged containers get no IMDS answer), the
// parameter in advisory; and the UserData of both AMI kinds handing ccboot
// the mode ([tiers] mode = enforced; advisory writes no key, so its config
// is as before).
func tierModeProblems(text []byte, mode string) []string {
	tpl, err := parseTemplate(text)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, hop := range []string{"1", "2"} {
		for _, baked := range []bool{false, true} {
			where := fmt.Sprintf("TierMode %s, MetadataHopLimit %s, baked %v", mode, hop, baked)
			in, err := resolveTierInstance(tpl, mode, hop, baked)
			if err != nil {
				out = append(out, where+": "+err.Error())
				continue
			}
			wantHop := hop
			if mode == enforced {
				wantHop = "1"
			}
			if in.hop != wantHop {
				out = append(out, fmt.Sprintf("%s: HttpPutResponseHopLimit %s, want %s", where, in.hop, wantHop))
			}
			if in.tokens != "required" || in.endpoint != "enabled" {
				out = append(out, fmt.Sprintf("%s: HttpTokens %s, HttpEndpoint %s, want required (IMDSv2 only), enabled", where, in.tokens, in.endpoint))
			}
			wantMode := map[string]string{advisory: "", enforced: enforced}[mode]
			if baked {
				conf, err := bakedDropIn(in.userData)
				var got string
				if err == nil {
					got, err = iniTierMode(conf)
				}
				if err != nil {
					out = append(out, where+": "+err.Error())
				} else if got != wantMode {
					out = append(out, fmt.Sprintf("%s: the drop-in says [tiers] mode = %q, want %q", where, got, wantMode))
				}
				continue
			}
			m := scriptTierMode.FindStringSubmatch(in.userData)
			if m == nil {
				out = append(out, where+": the UserData script sets no CCBOOT_TIER_MODE")
			} else if m[1] != mode {
				out = append(out, fmt.Sprintf("%s: the UserData script sets CCBOOT_TIER_MODE=%q, want %q", where, m[1], mode))
			}
		}
	}
	return out
}

func TestTemplateTierMode(t *testing.T) {
	t.Parallel()
	text := readFile(t, templatePath)
	for _, mode := range tierModes {
		for _, p := range tierModeProblems(text, mode) {
			t.Error(p)
		}
	}
	tpl := loadTemplate(t)
	p := dig(tpl, "Parameters", "TierMode")
	if dig(p, "Default") != advisory || fmt.Sprint(dig(p, "AllowedValues")) != "[advisory enforced]" {
		t.Errorf("TierMode = %v, want Default advisory, AllowedValues [advisory enforced]", p)
	}
	if got := fmt.Sprint(dig(tpl, "Conditions", "Enforced")); got != "map[Fn::Equals:[map[Ref:TierMode] enforced]]" {
		t.Errorf("condition Enforced = %s", got)
	}
}

// configKnows reports whether this ccboot has the config key section.name.
func configKnows(section, name string) bool {
	for _, k := range bootstrap.ConfigReference() {
		if k.Section == section && k.Name == name {
			return true
		}
	}
	return false
}

// The enforced drop-in of a baked image is a config ccboot reads. A ccboot
// that predates [tiers] must refuse it, not run advisory on a stack meant
// to be enforced: that is why advisory writes no key and enforced does.
func TestTemplateBakedImageEnforcedDropIn(t *testing.T) {
	t.Parallel()
	in, err := resolveTierInstance(loadTemplate(t), enforced, "2", true)
	if err != nil {
		t.Fatal(err)
	}
	conf, err := bakedDropIn(in.userData)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	path := filepath.Join(root, bootstrap.DefaultConfigPath+bootstrap.DropInSuffix, "50-instance.conf")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	sys, err := fsroot.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	_, err = bootstrap.LoadConfig(sys, bootstrap.DefaultConfigPath, nil)
	switch known := configKnows("tiers", "mode"); {
	case known && err != nil:
		t.Errorf("ccboot refuses the enforced drop-in: %v\n%s", err, conf)
	case !known && (err == nil || !strings.Contains(err.Error(), "[tiers] mode")):
		t.Errorf("a ccboot without [tiers] mode read the enforced drop-in (error %v): it would run advisory on an enforced stack", err)
	case !known:
		t.Logf("this ccboot has no [tiers] mode yet and refuses the drop-in, as it must: %v", err)
	}
}
