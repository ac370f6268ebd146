package steps

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/ccboot/ccboot/bootstrap"
)

// enforcedTestSections are awsSections in [tiers] mode = enforced for
// testMetadata: no role, no source, only the broker's credential_process.
func enforcedTestSections() []awsSection {
	return []awsSection{
		{"default", [][2]string{{"region", "eu-west-1"}}},
		{"profile claudecode-readonly", [][2]string{
			{"credential_process", "/usr/local/bin/ccboot credentials readonly"},
			{"region", "eu-west-1"},
		}},
		{"profile claudecode-elevated", [][2]string{
			{"credential_process", "/usr/local/bin/ccboot credentials elevated"},
			{"region", "eu-west-1"},
		}},
	}
}

const enforcedTestConfig = "[default]\nregion = eu-west-1\n\n[profile claudecode-readonly]\ncredential_process = /usr/local/bin/ccboot credentials readonly\nregion = eu-west-1\n\n[profile claudecode-elevated]\ncredential_process = /usr/local/bin/ccboot credentials elevated\nregion = eu-west-1\n"

func enforcedAWSEnv(t *testing.T) *bootstrap.Env {
	t.Helper()
	env, _ := newTestEnv(t)
	env.Config.TierMode = bootstrap.TierEnforced
	return env
}

// The step's sections are the ones the tests (and the fuzz oracle) expect,
// and the command is the installed binary by its absolute path.
func TestAWSConfigEnforcedSections(t *testing.T) {
	t.Parallel()
	got, err := awsSections(context.Background(), enforcedAWSEnv(t))
	if err != nil {
		t.Fatal(err)
	}
	if a, b := strings.Join(flatten(got), "\n"), strings.Join(flatten(enforcedTestSections()), "\n"); a != b {
		t.Fatalf("enforced sections:\n%s\nwant\n%s", a, b)
	}
	if p := BrokerCredentialProcess("readonly"); !strings.HasPrefix(p, bootstrap.InstalledBinary+" ") || !strings.HasPrefix(p, "/") {
		t.Errorf("credential_process %q does not name the installed binary %s", p, bootstrap.InstalledBinary)
	}
}

func flatten(sections []awsSection) []string {
	var out []string
	for _, s := range sections {
		out = append(out, "["+s.name+"]")
		for _, kv := range s.keys {
			out = append(out, kv[0]+" = "+kv[1])
		}
	}
	return out
}

func TestAWSConfigEnforcedFresh(t *testing.T) {
	t.Parallel()
	env := enforcedAWSEnv(t)
	convergeStep(t, env, AWSConfig{})
	p := awsConfigFile(env)
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "aws-config-enforced.ini", got)
	if string(got) != enforcedTestConfig {
		t.Errorf("enforcedTestConfig is not what the step writes:\n%s", got)
	}
	// What the SDK makes of it: a process to run, nothing to assume.
	for _, tier := range []string{"readonly", "elevated"} {
		sc, err := sdkProfile(t, got, "claudecode-"+tier)
		if err != nil {
			t.Fatal(err)
		}
		if sc.CredentialProcess != "/usr/local/bin/ccboot credentials "+tier || sc.RoleARN != "" || sc.CredentialSource != "" || sc.SourceProfileName != "" || sc.Region != "eu-west-1" {
			t.Errorf("the SDK reads claudecode-%s as %+v", tier, sc)
		}
	}
	if err := VetAWSConfigFile(context.Background(), env, got); err != nil {
		t.Errorf("doctor's vet refuses the enforced file: %v", err)
	}
	assertSecondApplyIsNoop(t, env, AWSConfig{}, p)
}

// Switching [tiers] mode converges the file both ways: ccboot's own file
// comes back byte for byte; in the user's file (comments between ccboot's
// keys move) every line outside ccboot's profiles stays, each mode reads as
// ccboot's, and one round trip is where every later one ends.
func TestAWSConfigModeSwitchBothWays(t *testing.T) {
	t.Parallel()
	existing, err := os.ReadFile("testdata/golden/aws-config-existing.in")
	if err != nil {
		t.Fatal(err)
	}
	for _, start := range []struct {
		name, in string
		exact    bool
	}{{"fresh", "", true}, {"the user's file", string(existing), false}} {
		t.Run(start.name, func(t *testing.T) {
			t.Parallel()
			merge := func(in []byte, sections []awsSection) []byte {
				t.Helper()
				out, err := mergeAWSConfig(in, sections)
				if err != nil {
					t.Fatal(err)
				}
				return out
			}
			advisory := merge([]byte(start.in), testSections())
			enforced := merge(advisory, enforcedTestSections())
			assertSDKSeesEnforced(t, enforced)
			if strings.Contains(string(enforced), "Ec2InstanceMetadata") || strings.Contains(string(enforced), "role_arn") {
				t.Errorf("enforced file keeps an advisory key:\n%s", enforced)
			}
			back := merge(enforced, testSections())
			assertSDKSeesCCBoot(t, back)
			for _, f := range [][]byte{enforced, back} {
				if userPart(t, f) != userPart(t, []byte(start.in)) {
					t.Errorf("the switch changed lines outside ccboot's sections:\n%s", f)
				}
			}
			if again := merge(merge(back, enforcedTestSections()), testSections()); string(again) != string(back) {
				t.Errorf("a second round trip moved lines again:\n%s", bootstrap.UnifiedDiff("first", back, again))
			}
			if !start.exact {
				return
			}
			if direct := merge([]byte(start.in), enforcedTestSections()); string(enforced) != string(direct) {
				t.Errorf("advisory -> enforced differs from enforced at once:\n%s", bootstrap.UnifiedDiff("direct", direct, enforced))
			}
			if string(back) != string(advisory) {
				t.Errorf("enforced -> advisory is not today's file:\n%s", bootstrap.UnifiedDiff("advisory", advisory, back))
			}
		})
	}
	// Through the step, as a config change and a rerun would.
	env, _ := newTestEnv(t)
	convergeStep(t, env, AWSConfig{})
	p := awsConfigFile(env)
	advisory, _ := os.ReadFile(p)
	env.Config.TierMode = bootstrap.TierEnforced
	d := convergeStep(t, env, AWSConfig{})
	if !strings.Contains(d.Diff, "+credential_process = /usr/local/bin/ccboot credentials elevated") || !strings.Contains(d.Diff, "-credential_source = Ec2InstanceMetadata") {
		t.Errorf("enforced Check's diff:\n%s", d.Diff)
	}
	if got, _ := os.ReadFile(p); string(got) != enforcedTestConfig {
		t.Errorf("enforced run left:\n%s", got)
	}
	env.Config.TierMode = bootstrap.TierAdvisory
	convergeStep(t, env, AWSConfig{})
	if got, _ := os.ReadFile(p); string(got) != string(advisory) {
		t.Errorf("advisory run after enforced left:\n%s", bootstrap.UnifiedDiff(p, advisory, got))
	}
}

// The vet's allow-list follows the mode: in enforced mode credential_process
// only with exactly ccboot's value, and the advisory keys (which would
// chain from IMDS or from the other profile) refused; in advisory mode
// ccboot's own credential_process is as foreign as any other.
func TestVetAWSConfigEnforcedMode(t *testing.T) {
	t.Parallel()
	enforced := profilesOf(enforcedTestSections())
	ro := "[profile claudecode-readonly]"
	withRO := func(from, to string) string {
		return strings.Replace(enforcedTestConfig, from, to, 1)
	}
	const roLine = "credential_process = /usr/local/bin/ccboot credentials readonly\n"
	for _, tc := range []struct{ name, in, want string }{
		{"another program", withRO(roLine, "credential_process = /home/ec2-user/creds.sh\n"),
			"line 5: " + ro + " sets credential_process to a value other than ccboot's"},
		{"ccboot found through PATH", withRO(roLine, "credential_process = ccboot credentials readonly\n"),
			"line 5: " + ro + " sets credential_process to a value other than ccboot's"},
		{"the other tier", withRO(roLine, "credential_process = /usr/local/bin/ccboot credentials elevated\n"),
			"line 5: " + ro + " sets credential_process to a value other than ccboot's"},
		{"ccboot's value with a shell tail", withRO(roLine, "credential_process = /usr/local/bin/ccboot credentials readonly; sh /tmp/x\n"),
			"line 5: " + ro + " sets credential_process to a value other than ccboot's"},
		{"no credential_process", withRO(roLine, ""), "line 4: " + ro + " does not set credential_process"},
		{"advisory role_arn", withRO(roLine, roLine+"role_arn = arn:aws:iam::111122223333:role/claudecode-elevated-demo\n"),
			"line 6: " + ro + " sets role_arn, which ccboot does not allow"},
		{"advisory credential_source", withRO(roLine, roLine+"credential_source = Ec2InstanceMetadata\n"),
			"line 6: " + ro + " sets credential_source, which ccboot does not allow"},
		{"advisory source_profile", withRO(roLine, roLine+"source_profile = claudecode-elevated\n"),
			"line 6: " + ro + " sets source_profile, which ccboot does not allow"},
		{"today's advisory file", mergedTestConfig, "line 5: " + ro + " sets role_arn, which ccboot does not allow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := vetAWSConfig([]byte(tc.in), enforced)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) || !strings.Contains(err.Error(), "fix: ") {
				t.Fatalf("err = %v, want %q and a fix", err, tc.want)
			}
		})
	}
	if err := vetAWSConfig([]byte(enforcedTestConfig), enforced); err != nil {
		t.Errorf("ccboot's enforced file refused: %v", err)
	}
	// Advisory mode refuses the enforced file: credential_process is not
	// among its keys, whatever its value.
	err := vetAWSConfig([]byte(enforcedTestConfig), managedProfiles())
	if err == nil || !strings.HasPrefix(err.Error(), "line 5: "+ro+" sets credential_process, which ccboot does not allow") {
		t.Errorf("advisory vet of the enforced file: %v", err)
	}
	// VetAWSConfigFile picks the sections by the Env's mode.
	env := enforcedAWSEnv(t)
	if err := VetAWSConfigFile(context.Background(), env, []byte(mergedTestConfig)); err == nil {
		t.Error("enforced VetAWSConfigFile accepted the advisory file")
	}
	env.Config.TierMode = bootstrap.TierAdvisory
	if err := VetAWSConfigFile(context.Background(), env, []byte(enforcedTestConfig)); err == nil {
		t.Error("advisory VetAWSConfigFile accepted the enforced file")
	}
}

// The one value with spaces is allowed only as ccboot's constant: the merge
// still refuses any other value that could change the file's structure.
func TestMergeAWSConfigOnlyCCBootsCommandHasSpaces(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"/usr/local/bin/ccboot credentials readonly\nrole_arn = x", "/bin/sh -c id", "/usr/local/bin/ccboot credentials root"} {
		s := []awsSection{{"profile claudecode-readonly", [][2]string{{"credential_process", v}}}}
		if out, err := mergeAWSConfig(nil, s); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("%q: err = %v, out %q", v, err, out)
		}
	}
}
