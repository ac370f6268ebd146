package steps

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccboot/ccboot/bootstrap/bedrock"
)

func readManagedEnv(t *testing.T, p string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Env map[string]string `json:"env"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("%s is not JSON: %v\n%s", p, err, b)
	}
	return s.Env
}

func TestClaudeSettingsGolden(t *testing.T) {
	t.Parallel()
	env, _ := newTestEnv(t)
	d := convergeStep(t, env, ClaudeSettings{})
	p := filepath.Join(env.Root, managedSettingsPath)
	if len(d.Changes) != 1 || !strings.Contains(d.Changes[0], "create") || !strings.Contains(d.Diff, `+    "ANTHROPIC_MODEL": "eu.anthropic.claude-sonnet-4-6"`) {
		t.Errorf("first Check: %q\n%s", d.Changes, d.Diff)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "managed-settings.json", got)
	if uid, gid, mode := ownerOf(t, p); uid != 0 || gid != 0 || mode != 0o644 {
		t.Errorf("%s: %d:%d %v, want 0:0 -rw-r--r--", p, uid, gid, mode)
	}
	if uid, gid, mode := ownerOf(t, filepath.Dir(p)); uid != 0 || gid != 0 || mode != os.ModeDir|0o755 {
		t.Errorf("%s: %d:%d %v, want 0:0 drwxr-xr-x", filepath.Dir(p), uid, gid, mode)
	}
	if _, err := os.Lstat(filepath.Join(env.Root, managedDropInDir)); err == nil {
		t.Error("a drop-in directory was made though managed-settings.json was free")
	}
	assertSecondApplyIsNoop(t, env, ClaudeSettings{}, p)
}

// The two files carry the same values, from the one computation: every
// variable in the managed settings is exported by profile-env with the
// same value, and the other way round.
func TestClaudeSettingsMatchesProfileEnv(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, region, model, haiku string
		autoUpdate                 bool
	}{
		{name: "defaults"},
		{name: "GovCloud", region: "us-gov-west-1"},
		{name: "configured", region: "ap-northeast-1", model: "global.anthropic.claude-sonnet-4-6", haiku: "apac.anthropic.claude-haiku-4-5-20251001-v1:0", autoUpdate: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, _ := newTestEnv(t)
			env.Config.Region = tc.region
			if tc.model != "" {
				env.Config.Model = tc.model
			}
			if tc.haiku != "" {
				env.Config.HaikuModel = tc.haiku
			}
			env.Config.ClaudeAutoUpdate = tc.autoUpdate
			convergeStep(t, env, ClaudeSettings{})
			convergeStep(t, env, ProfileEnv{})
			managed := readManagedEnv(t, filepath.Join(env.Root, managedSettingsPath))
			script, err := os.ReadFile(filepath.Join(env.Root, profileEnvPath))
			if err != nil {
				t.Fatal(err)
			}
			exported := map[string]string{}
			for _, l := range strings.Split(strings.TrimSpace(string(script)), "\n")[1:] {
				name, v, _ := strings.Cut(strings.TrimPrefix(l, "export "), "=")
				exported[name] = strings.Trim(v, "'")
			}
			if len(managed) != len(exported) {
				t.Errorf("managed settings %v, profile.d %v", managed, exported)
			}
			for k, v := range managed {
				if exported[k] != v {
					t.Errorf("%s: managed settings %q, profile.d %q", k, v, exported[k])
				}
			}
			if _, ok := managed["AWS_PROFILE"]; ok {
				t.Error("the managed settings set AWS_PROFILE, which is per tier")
			}
			_, disabled := managed["DISABLE_UPDATES"]
			if disabled == tc.autoUpdate || (managed["DISABLE_AUTOUPDATER"] == "1") == tc.autoUpdate {
				t.Errorf("auto_update=%v but DISABLE_UPDATES=%q DISABLE_AUTOUPDATER=%q", tc.autoUpdate, managed["DISABLE_UPDATES"], managed["DISABLE_AUTOUPDATER"])
			}
		})
	}
}

// The three alias pins: the defaults get the Region's prefix; where AWS
// offers no profile of a default (GovCloud) the pin is ANTHROPIC_MODEL; a
// configured pin the Region cannot use fails the step naming its key.
func TestClaudeSettingsPins(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, region, model, haiku, opus string
		want                             map[string]string
		wantErr                          []string
	}{
		{name: "eu-west-1", want: map[string]string{
			"ANTHROPIC_DEFAULT_SONNET_MODEL": "eu.anthropic.claude-sonnet-4-6",
			"ANTHROPIC_DEFAULT_HAIKU_MODEL":  "eu." + bedrock.DefaultHaikuModel,
			"ANTHROPIC_DEFAULT_OPUS_MODEL":   "eu." + bedrock.DefaultOpusModel,
		}},
		{name: "Tokyo", region: "ap-northeast-1", want: map[string]string{
			"ANTHROPIC_DEFAULT_HAIKU_MODEL": "jp." + bedrock.DefaultHaikuModel,
			"ANTHROPIC_DEFAULT_OPUS_MODEL":  "jp." + bedrock.DefaultOpusModel,
		}},
		{name: "GovCloud falls back to ANTHROPIC_MODEL", region: "us-gov-west-1", want: map[string]string{
			"ANTHROPIC_MODEL":                "us-gov.anthropic.claude-sonnet-4-6",
			"ANTHROPIC_DEFAULT_SONNET_MODEL": "us-gov.anthropic.claude-sonnet-4-6",
			"ANTHROPIC_DEFAULT_HAIKU_MODEL":  "us-gov.anthropic.claude-sonnet-4-6",
			"ANTHROPIC_DEFAULT_OPUS_MODEL":   "us-gov.anthropic.claude-sonnet-4-6",
		}},
		{name: "sonnet follows [bedrock] model", model: "global.anthropic.claude-sonnet-4-5-20250929-v1:0", want: map[string]string{
			"ANTHROPIC_MODEL":                "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
			"ANTHROPIC_DEFAULT_SONNET_MODEL": "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
		}},
		{name: "configured opus as given", opus: "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/op1", want: map[string]string{
			"ANTHROPIC_DEFAULT_OPUS_MODEL": "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/op1",
		}},
		{name: "us haiku in eu-west-1", haiku: "us." + bedrock.DefaultHaikuModel,
			wantErr: []string{"claude-settings", "[bedrock] haiku_model", "eu-west-1", "us.", "eu, global"}},
		{name: "us opus in eu-west-1", opus: "us." + bedrock.DefaultOpusModel,
			wantErr: []string{"claude-settings", "[bedrock] opus_model", "eu-west-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, _ := newTestEnv(t)
			env.Config.Region = tc.region
			for _, set := range []struct {
				to *string
				v  string
			}{{&env.Config.Model, tc.model}, {&env.Config.HaikuModel, tc.haiku}, {&env.Config.OpusModel, tc.opus}} {
				if set.v != "" {
					*set.to = set.v
				}
			}
			p := filepath.Join(env.Root, managedSettingsPath)
			if tc.wantErr != nil {
				_, err := ClaudeSettings{}.Check(context.Background(), env)
				for _, w := range tc.wantErr {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Errorf("Check error = %v, want one naming %q", err, w)
					}
				}
				if err := (ClaudeSettings{}).Apply(context.Background(), env); err == nil {
					t.Error("Apply succeeded with a pin the Region cannot use")
				}
				if _, err := os.Lstat(p); err == nil {
					t.Error("the failed step wrote the file")
				}
				return
			}
			convergeStep(t, env, ClaudeSettings{})
			got := readManagedEnv(t, p)
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q (all: %v)", k, got[k], v, got)
				}
			}
		})
	}
}

// A managed-settings.json ccboot did not write is kept byte for byte, and
// ccboot's values go into its drop-in, which Claude Code merges on top;
// the variables the drop-in overrides are named in the notes. Once the
// drop-in is ccboot's file, ccboot stays there.
func TestClaudeSettingsKeepsForeignFile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		foreign string // content, or "symlink"
		notes   []string
	}{
		{name: "policy file", foreign: `{"permissions": {"deny": ["Read(./.env)"]}, "env": {"ANTHROPIC_MODEL": "us.anthropic.claude-opus-4-6-v1", "HTTPS_PROXY": "http://proxy:3128"}}`,
			notes: []string{"not written by ccboot", "10-ccboot.json", "ANTHROPIC_MODEL=us.anthropic.claude-opus-4-6-v1"}},
		{name: "env block with a variable ccboot does not manage", foreign: `{"env": {"CLAUDE_CODE_USE_BEDROCK": "1", "HTTPS_PROXY": "http://proxy:3128"}}`,
			notes: []string{"not written by ccboot"}},
		{name: "not JSON", foreign: "# written by hand\n", notes: []string{"not written by ccboot"}},
		{name: "symlink", foreign: "symlink", notes: []string{"not written by ccboot"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, _ := newTestEnv(t)
			base := filepath.Join(env.Root, managedSettingsPath)
			if err := os.MkdirAll(filepath.Dir(base), 0o755); err != nil {
				t.Fatal(err)
			}
			target := filepath.Join(env.Root, "etc/elsewhere.json")
			if tc.foreign == "symlink" {
				writeTestFile(t, env.Root, "etc/elsewhere.json", "{}\n", 0o644)
				if err := os.Symlink(target, base); err != nil {
					t.Fatal(err)
				}
			} else {
				writeTestFile(t, env.Root, managedSettingsPath, tc.foreign, 0o640)
			}
			before := stampOf(t, base)
			d, err := ClaudeSettings{}.Check(context.Background(), env)
			if err != nil {
				t.Fatal(err)
			}
			if len(d.Changes) != 1 || !strings.Contains(d.Changes[0], "create") || !strings.Contains(d.Changes[0], managedDropInPath) {
				t.Errorf("Check: %q, want the drop-in created", d.Changes)
			}
			notes := strings.Join(d.Notes, "\n")
			for _, w := range tc.notes {
				if !strings.Contains(notes, w) {
					t.Errorf("notes %q lack %q", d.Notes, w)
				}
			}
			convergeStep(t, env, ClaudeSettings{})
			if after := stampOf(t, base); after != before {
				t.Errorf("%s was touched: %+v -> %+v", base, before, after)
			}
			if tc.foreign == "symlink" {
				if b, _ := os.ReadFile(target); string(b) != "{}\n" {
					t.Errorf("the link's target was written: %q", b)
				}
			} else if b, _ := os.ReadFile(base); string(b) != tc.foreign {
				t.Errorf("%s changed: %q", base, b)
			}
			dropIn := filepath.Join(env.Root, managedDropInPath)
			if got := readManagedEnv(t, dropIn); got["ANTHROPIC_MODEL"] != "eu.anthropic.claude-sonnet-4-6" || got["CLAUDE_CODE_USE_BEDROCK"] != "1" {
				t.Errorf("drop-in env %v", got)
			}
			if uid, gid, mode := ownerOf(t, filepath.Dir(dropIn)); uid != 0 || gid != 0 || mode != os.ModeDir|0o755 {
				t.Errorf("%s: %d:%d %v, want 0:0 drwxr-xr-x", filepath.Dir(dropIn), uid, gid, mode)
			}
			assertSecondApplyIsNoop(t, env, ClaudeSettings{}, dropIn)
			// The drop-in stays ccboot's file even once the other is gone.
			if err := os.Remove(base); err != nil {
				t.Fatal(err)
			}
			assertSecondApplyIsNoop(t, env, ClaudeSettings{}, dropIn)
			if _, err := os.Lstat(base); err == nil {
				t.Error("ccboot wrote managed-settings.json beside its drop-in")
			}
		})
	}
}

// A file of ccboot's shape is ccboot's: a changed value, mode or owner is
// drift that repair fixes in place (no drop-in).
func TestClaudeSettingsDrift(t *testing.T) {
	t.Parallel()
	env, _ := newTestEnv(t)
	convergeStep(t, env, ClaudeSettings{})
	p := filepath.Join(env.Root, managedSettingsPath)
	old := `{"env": {"CLAUDE_CODE_USE_BEDROCK": "1", "ANTHROPIC_MODEL": "old"}}`
	if err := os.WriteFile(p, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, testUID, testGID); err != nil {
		t.Fatal(err)
	}
	d, err := ClaudeSettings{}.Check(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(d.Changes, "\n")
	for _, w := range []string{"update", managedSettingsPath, "chmod", "0644", "chown", "0:0"} {
		if !strings.Contains(joined, w) {
			t.Errorf("changes %q lack %q", d.Changes, w)
		}
	}
	if got, _ := os.ReadFile(p); string(got) != old {
		t.Errorf("Check changed the file: %q", got)
	}
	convergeStep(t, env, ClaudeSettings{})
	if uid, gid, mode := ownerOf(t, p); uid != 0 || gid != 0 || mode != 0o644 {
		t.Errorf("after repair: %d:%d %v", uid, gid, mode)
	}
	if got := readManagedEnv(t, p); got["ANTHROPIC_MODEL"] != "eu.anthropic.claude-sonnet-4-6" {
		t.Errorf("after repair: %v", got)
	}
	if _, err := os.Lstat(filepath.Join(env.Root, managedDropInPath)); err == nil {
		t.Error("ccboot's own file was taken for someone else's")
	}
}

func TestWrittenByCcboot(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{
		string(renderManagedSettings([]envVar{{"CLAUDE_CODE_USE_BEDROCK", "1"}, {"AWS_REGION", "eu-west-1"}})): true,
		`{"env":{"CLAUDE_CODE_USE_BEDROCK":"1","DISABLE_UPDATES":"1"}}`:                                        true,
		`{"env":{"AWS_REGION":"eu-west-1"}}`:                                                                   false, // no CLAUDE_CODE_USE_BEDROCK
		`{"env":{"CLAUDE_CODE_USE_BEDROCK":"1","AWS_PROFILE":"x"}}`:                                            false,
		`{"env":{"CLAUDE_CODE_USE_BEDROCK":1}}`:                                                                false,
		`{"env":{"CLAUDE_CODE_USE_BEDROCK":"1"},"model":"opus"}`:                                               false,
		`{}`:     false,
		`[]`:     false,
		``:       false,
		`{"env"`: false,
	} {
		if got := writtenByCcboot([]byte(in)); got != want {
			t.Errorf("writtenByCcboot(%s) = %v, want %v", in, got, want)
		}
	}
}

func TestClaudeSettingsRegionError(t *testing.T) {
	t.Parallel()
	env, _ := newTestEnv(t)
	m := testMetadata()
	m.Err = os.ErrDeadlineExceeded
	env.Meta = m
	_, err := ClaudeSettings{}.Check(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "claude-settings") || !strings.Contains(err.Error(), "[aws] region") {
		t.Fatalf("err = %v, want a claude-settings error naming [aws] region", err)
	}
}
