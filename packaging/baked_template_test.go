package packaging_test

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

// instanceUserData resolves the instance's ImageId and decoded UserData
// for a stack created with the given parameters.
func instanceUserData(t *testing.T, given map[string]string) (imageID, userData string) {
	t.Helper()
	r, err := newResolverWith(loadTemplate(t), testStacks()[0], given)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Resources()
	if err != nil {
		t.Fatal(err)
	}
	props := dig(res["Instance"], "Properties")
	b, err := base64.StdEncoding.DecodeString(dig(props, "UserData").(string))
	if err != nil {
		t.Fatal(err)
	}
	return dig(props, "ImageId").(string), string(b)
}

// TestTemplateBakedImage: with BakedAmiId the instance boots that AMI and
// its UserData only writes the instance's settings as a ccboot.conf drop-in
// (cloud-config write_files, before ccboot.service starts), then waits for
// the run; no download. Without it, the shell UserData as before.
func TestTemplateBakedImage(t *testing.T) {
	const baked = "ami-0fedcba9876543210"
	for _, model := range []string{"", "eu.anthropic.claude-sonnet-4-6"} {
		image, ud := instanceUserData(t, map[string]string{"BakedAmiId": baked, "ModelId": model,
			"CcbootUrlArm64": "", "CcbootSha256Arm64": ""})
		if image != baked {
			t.Errorf("ImageId %q, want the baked AMI %s", image, baked)
		}
		if !strings.HasPrefix(ud, "#cloud-config\n") || strings.Contains(ud, "curl") || strings.Contains(ud, "sha256sum") {
			t.Fatalf("baked UserData is not a download-free cloud-config:\n%s", ud)
		}
		var cc struct {
			WriteFiles []struct{ Path, Owner, Permissions, Content string } `yaml:"write_files"`
			Runcmd     [][]string                                           `yaml:"runcmd"`
		}
		if err := yaml.Unmarshal([]byte(ud), &cc); err != nil {
			t.Fatalf("baked UserData is not YAML: %v\n%s", err, ud)
		}
		if len(cc.WriteFiles) != 1 || !strings.HasPrefix(cc.WriteFiles[0].Path, bootstrap.DefaultConfigPath+bootstrap.DropInSuffix+"/") ||
			!strings.HasSuffix(cc.WriteFiles[0].Path, ".conf") || cc.WriteFiles[0].Owner != "root:root" || cc.WriteFiles[0].Permissions != "0644" {
			t.Fatalf("write_files %+v, want one root-owned 0644 *.conf in %s%s/", cc.WriteFiles, bootstrap.DefaultConfigPath, bootstrap.DropInSuffix)
		}
		if len(cc.Runcmd) != 1 || strings.Join(cc.Runcmd[0], " ") != "/usr/local/bin/ccboot status --wait --timeout 45m" {
			t.Errorf("runcmd %v, want ccboot status --wait (so cloud-init's status covers ccboot)", cc.Runcmd)
		}
		// The drop-in is a config ccboot reads, with this stack's values.
		root := t.TempDir()
		p := filepath.Join(root, cc.WriteFiles[0].Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(cc.WriteFiles[0].Content), 0o644); err != nil {
			t.Fatal(err)
		}
		sys, err := fsroot.Open(root)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := bootstrap.LoadConfig(sys, bootstrap.DefaultConfigPath, nil)
		sys.Close()
		if err != nil {
			t.Fatalf("ccboot refuses the drop-in the baked UserData writes: %v\n%s", err, cc.WriteFiles[0].Content)
		}
		wantModel := model
		if wantModel == "" {
			wantModel = bootstrap.DefaultConfig().Model
		}
		if !strings.Contains(cfg.WaitConditionURL, "cloudformation-waitcondition") || !strings.Contains(cfg.ReadOnlyRoleARN, ":role/claudecode-readonly-") ||
			!strings.Contains(cfg.ElevatedRoleARN, ":role/claudecode-elevated-") || cfg.Model != wantModel {
			t.Errorf("drop-in read back as wait %q ro %q el %q model %q (want model %q)", cfg.WaitConditionURL, cfg.ReadOnlyRoleARN, cfg.ElevatedRoleARN, cfg.Model, wantModel)
		}
	}
	image, ud := instanceUserData(t, nil)
	if image != stackParameters["AmiId"] || !strings.HasPrefix(ud, "#!/bin/bash\n") || !strings.Contains(ud, "sha256sum") {
		t.Errorf("without BakedAmiId: ImageId %q and UserData %.40q, want AmiId and the shell UserData", image, ud)
	}
}
