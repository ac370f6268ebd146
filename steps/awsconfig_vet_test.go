package steps

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/config"
)

// managedProfiles are testSections without [default]: what
// VetAWSConfigFile checks.
func managedProfiles() []awsSection { return profilesOf(testSections()) }

func profilesOf(sections []awsSection) []awsSection {
	var out []awsSection
	for _, s := range sections {
		if strings.HasPrefix(s.name, "profile ") {
			out = append(out, s)
		}
	}
	return out
}

// sdkProfile is profile as aws-sdk-go-v2 (the loader root's doctor uses)
// reads it from data, with no credentials file.
func sdkProfile(t testing.TB, data []byte, profile string) (config.SharedConfig, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return loadSDKProfile(p, profile)
}

func loadSDKProfile(path, profile string) (config.SharedConfig, error) {
	return config.LoadSharedConfigProfile(context.Background(), profile, func(o *config.LoadSharedConfigOptions) {
		o.ConfigFiles = []string{path}
		o.CredentialsFiles = []string{}
	})
}

// canonicalSDKProfiles is how the SDK reads the managed profiles of the
// file ccboot writes (mergedTestConfig), loaded once: the fuzz target's
// oracle compares every merge with it. canonicalEnforcedSDKProfiles is the
// same for the enforced shape (enforcedTestConfig).
var (
	canonicalSDKProfiles = sync.OnceValues(func() (map[string]config.SharedConfig, error) {
		return loadCanonicalProfiles(mergedTestConfig, managedProfiles())
	})
	canonicalEnforcedSDKProfiles = sync.OnceValues(func() (map[string]config.SharedConfig, error) {
		return loadCanonicalProfiles(enforcedTestConfig, profilesOf(enforcedTestSections()))
	})
)

func loadCanonicalProfiles(file string, profiles []awsSection) (map[string]config.SharedConfig, error) {
	dir, err := os.MkdirTemp("", "ccboot-sdk-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "config")
	if err := os.WriteFile(p, []byte(file), 0o600); err != nil {
		return nil, err
	}
	out := map[string]config.SharedConfig{}
	for _, s := range profiles {
		profile := strings.TrimPrefix(s.name, "profile ")
		if out[profile], err = loadSDKProfile(p, profile); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// assertSDKSeesCCBoot fails unless the SDK reads both managed profiles from
// data exactly as from the file ccboot writes: the same role, session,
// Region and credential source, and no other field set (no
// credential_process, web identity, SSO, services, endpoints, CA bundle...).
func assertSDKSeesCCBoot(t testing.TB, data []byte) {
	t.Helper()
	assertSDKSees(t, data, canonicalSDKProfiles)
}

// assertSDKSeesEnforced is assertSDKSeesCCBoot for enforced mode: only
// ccboot's credential_process and the Region, no role or source.
func assertSDKSeesEnforced(t testing.TB, data []byte) {
	t.Helper()
	assertSDKSees(t, data, canonicalEnforcedSDKProfiles)
}

func assertSDKSees(t testing.TB, data []byte, canonicalProfiles func() (map[string]config.SharedConfig, error)) {
	t.Helper()
	canonical, err := canonicalProfiles()
	if err != nil {
		t.Fatalf("canonical file: %v", err)
	}
	p := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for profile, want := range canonical {
		got, err := loadSDKProfile(p, profile)
		if err != nil {
			t.Fatalf("the SDK cannot load profile %s from a file ccboot accepted: %v\nfile %q", profile, err, data)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("the SDK reads profile %s differently from ccboot's:\ngot  %+v\nwant %+v\nfile %q", profile, got, want, data)
		}
	}
}

// managedTestBody is the canonical file with extra lines appended to
// [profile claudecode-readonly] (the last lines before its blank line).
func withReadOnlyLines(extra string) string {
	const at = "region = eu-west-1\n\n[profile claudecode-elevated]"
	return strings.Replace(mergedTestConfig, at, "region = eu-west-1\n"+extra+"\n[profile claudecode-elevated]", 1)
}

func TestVetAWSConfigAccepts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in string }{
		{"ccboot's file", mergedTestConfig},
		{"CRLF", strings.ReplaceAll(mergedTestConfig, "\n", "\r\n")},
		{"no spaces around =", strings.ReplaceAll(mergedTestConfig, " = ", "=")},
		{"presentation keys and comments", withReadOnlyLines("output = json\ncli_pager =\n# a comment\n; another\n")},
		{"the user's own profiles may hold anything",
			mergedTestConfig + "\n[profile work]\ncredential_process = /bin/creds\nservices = mine\n  s3 =\n[services mine]\nsts =\n  endpoint_url = http://127.0.0.1:1\n"},
		{"a header comment ends the section for every reader", withReadOnlyLines("") + "[profile other] # mine\nsso_session = x\n"},
		{"a final CR", mergedTestConfig + "\r"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := vetAWSConfig([]byte(tc.in), managedProfiles()); err != nil {
				t.Fatalf("refused: %v\nfile %q", err, tc.in)
			}
			assertSDKSeesCCBoot(t, []byte(tc.in))
		})
	}
}

// TestVetAWSConfigRefuses: every payload of issue 19's finding 1, and each
// construct the readers disagree on, fails with the line number, the key or
// construct, and a fix; the value (which may be a secret) is never quoted.
func TestVetAWSConfigRefuses(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-value"
	ro := "[profile claudecode-readonly]"
	for _, tc := range []struct{ name, in, want string }{
		{"indented credential_process after a value (issue 19)",
			withReadOnlyLines("output = json\n  credential_process = /home/ec2-user/x.sh " + secret + "\n  credential_source =\n"),
			"line 10: " + ro + " has an indented line"},
		{"indented web identity token file",
			withReadOnlyLines("output = json\n  web_identity_token_file = /etc/shadow\n"), "line 10: " + ro + " has an indented line"},
		{"web_identity_token_file /dev/zero", withReadOnlyLines("web_identity_token_file = /dev/zero\n"), "line 9: " + ro + " sets web_identity_token_file, which"},
		{"credential_process", withReadOnlyLines("credential_process = /bin/" + secret + "\n"), "line 9: " + ro + " sets credential_process, which"},
		{"services and a user's endpoint", withReadOnlyLines("services = mine\n") + "[services mine]\nsts =\n  endpoint_url = http://127.0.0.1:9\n",
			"line 9: " + ro + " sets services, which"},
		{"endpoint_url", withReadOnlyLines("endpoint_url = http://127.0.0.1:9\n"), "sets endpoint_url, which"},
		{"ec2_metadata_service_endpoint", withReadOnlyLines("ec2_metadata_service_endpoint = http://127.0.0.1:9\n"), "sets ec2_metadata_service_endpoint, which"},
		{"ec2_metadata_service_endpoint_mode", withReadOnlyLines("ec2_metadata_service_endpoint_mode = IPv6\n"), "sets ec2_metadata_service_endpoint_mode, which"},
		{"ca_bundle", withReadOnlyLines("ca_bundle = /home/ec2-user/ca.pem\n"), "sets ca_bundle, which"},
		{"duration_seconds", withReadOnlyLines("duration_seconds = 43200\n"), "sets duration_seconds, which"},
		{"mfa_serial", withReadOnlyLines("mfa_serial = arn:aws:iam::1:mfa/x\n"), "sets mfa_serial, which"},
		{"sso", withReadOnlyLines("sso_session = corp\n"), "sets sso_session, which"},
		{"source_profile in the ReadOnly profile", withReadOnlyLines("source_profile = other\n"), "sets source_profile, which"},
		{"upper-case key", withReadOnlyLines("Credential_Process = /bin/x\n"), "line 9: " + ro + " sets credential_process in a way the AWS tools read differently"},
		{"colon delimiter", withReadOnlyLines("credential_process: /bin/x\n"), "sets credential_process in a way"},
		{"a line with no delimiter", withReadOnlyLines(secret + "\n"), "line 9: " + ro + " has a line that is not key = value"},
		{"two spaces in the header (issue 19)", strings.Replace(mergedTestConfig, ro, "[profile  claudecode-readonly]", 1),
			"line 4: a section header names " + ro + " with spacing"},
		{"a tab in the header (issue 19)", strings.Replace(mergedTestConfig, ro, "[profile\tclaudecode-readonly]", 1), "line 4: a section header names"},
		{"spaces inside the brackets", strings.Replace(mergedTestConfig, ro, "[ profile claudecode-readonly ]", 1), "line 4: a section header names"},
		{"quoted name (botocore, JS SDK)", strings.Replace(mergedTestConfig, ro, `[profile "claudecode-readonly"]`, 1), "line 4: a section header names"},
		{"a byte order mark before the header", "\ufeff" + strings.Replace(mergedTestConfig, "[default]\nregion = eu-west-1\n\n", "", 1), "line 1: a section header names"},
		{"indented header variant in another section", mergedTestConfig + "[profile work]\ns3 =\n  [profile claudecode-readonly]\ncredential_process = x\n",
			"line 17: a section header names"},
		{"profile appears twice", mergedTestConfig + "\n" + ro + "\ncredential_process = x\n", "line 16: " + ro + " appears twice (also on line 4)"},
		{"backslash continuation", withReadOnlyLines(`output = json \` + "\n"), "line 9: " + ro + " sets output on a line ending in a backslash"},
		{"CRLF plus indentation", strings.ReplaceAll(withReadOnlyLines("output = json\n  credential_process = /bin/x\n"), "\n", "\r\n"), "line 10: " + ro + " has an indented line"},
		{"tab indentation", withReadOnlyLines("output = json\n\tcredential_process = /bin/x\n"), "has an indented line"},
		{"no-break space indentation", withReadOnlyLines("output = json\n\u00a0credential_process = /bin/x\n"), "has an indented line"},
		{"form feed indentation", withReadOnlyLines("output = json\n\fcredential_process = /bin/x\n"), "has an indented line"},
		{"indented first line", strings.Replace(mergedTestConfig, ro+"\n", ro+"\n  credential_process = /bin/x\n", 1), "line 5: " + ro + " has an indented line"},
		{"a lone carriage return", withReadOnlyLines("output = json\rcredential_process = /bin/x\n"), "line 9: a carriage return without a newline"},
		{"a header only Python sees", withReadOnlyLines("[x]y\ncredential_process = /bin/x\n"), "line 9: " + ro + " has a line the AWS tools disagree on as a section header"},
		{"a header only Go sees ends nothing", withReadOnlyLines("[x]\ufeff\ncredential_process = /bin/x\n"), "line 9: " + ro + " has a line the AWS tools disagree on"},
		{"a header cut by Go's comment rule", withReadOnlyLines("[x#y]\ncredential_process = /bin/x\n"), "line 9: " + ro + " has a line the AWS tools disagree on"},
		{"wrong role", strings.Replace(mergedTestConfig, "role/claudecode-readonly-demo", "role/"+secret, 1), "line 5: " + ro + " sets role_arn to a value other than ccboot's"},
		{"quoted role", strings.Replace(mergedTestConfig, "arn:aws:iam::111122223333:role/claudecode-readonly-demo", `"arn:aws:iam::111122223333:role/claudecode-readonly-demo"`, 1), "line 5: " + ro + " sets role_arn to a value other than ccboot's"},
		{"a value with a trailing comment", strings.Replace(mergedTestConfig, "credential_source = Ec2InstanceMetadata", "credential_source = Ec2InstanceMetadata # imds", 1), "line 6: " + ro + " sets credential_source to a value other"},
		{"white space only some readers trim", strings.Replace(mergedTestConfig, "credential_source = Ec2InstanceMetadata", "credential_source = Ec2InstanceMetadata\u0085", 1), "line 6: " + ro + " sets credential_source to a value other"},
		{"credential_source = Environment", strings.Replace(mergedTestConfig, "credential_source = Ec2InstanceMetadata", "credential_source = Environment", 1), "sets credential_source to a value other"},
		{"managed key twice", withReadOnlyLines("region = eu-west-1\n"), "line 9: " + ro + " sets region twice (also on line 8)"},
		{"missing key", strings.Replace(mergedTestConfig, "role_session_name = claudecode-readonly-session\n", "", 1), "line 4: " + ro + " does not set role_session_name"},
		{"missing profile", "[default]\nregion = eu-west-1\n", "has no " + ro},
		{"a lone quote the Go SDK's parser panics on, in any section", mergedTestConfig + "[profile work]\nk = \"\n", "line 16: a value that is a lone quote"},
		{"a lone single quote, indented, before any section", "  k: '\r\n" + mergedTestConfig, "line 1: a value that is a lone quote"},
		{"[DEFAULT], which the AWS CLI copies into every profile", mergedTestConfig + "[DEFAULT]\ncredential_process = /bin/x\n", "line 15: a [DEFAULT] section"},
		{"Elevated credential_process", mergedTestConfig + "credential_process = /bin/x\n", "line 15: [profile claudecode-elevated] sets credential_process"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := vetAWSConfig([]byte(tc.in), managedProfiles())
			if err == nil {
				t.Fatalf("accepted %q", tc.in)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || !strings.Contains(msg, "; fix: ") || strings.Contains(msg, "\n") || strings.Contains(msg, secret) {
				t.Fatalf("err = %q, want one line containing %q and a fix, without the value", msg, tc.want)
			}
		})
	}
}

func TestVetAWSConfigFile(t *testing.T) {
	t.Parallel()
	env, _ := newTestEnv(t)
	ctx := context.Background()
	if err := VetAWSConfigFile(ctx, env, []byte(mergedTestConfig)); err != nil {
		t.Fatalf("ccboot's own file: %v", err)
	}
	// [default] is the user's profile too: ccboot checks only the two it owns.
	if err := VetAWSConfigFile(ctx, env, []byte(strings.Replace(mergedTestConfig, "region = eu-west-1\n", "region = us-east-1\ncredential_process = x\n", 1))); err != nil {
		t.Fatalf("[default]: %v", err)
	}
	err := VetAWSConfigFile(ctx, env, []byte(withReadOnlyLines("output = json\n  credential_process = /bin/x\n")))
	if want := "~/.aws/config line 10: [profile claudecode-readonly] has an indented line"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err = %v, want %q...", err, want)
	}
	env.Config.ReadOnlyProfile = "other"
	if err := VetAWSConfigFile(ctx, env, []byte(mergedTestConfig)); err == nil || !strings.Contains(err.Error(), "has no [profile other]") {
		t.Fatalf("err = %v, want the configured profile missing", err)
	}
}

// TestVetAWSConfigVariantsReachTheSDK: the payloads above are real, not
// only a vet's opinion: for each, aws-sdk-go-v2 reads something ccboot did
// not write (or no profile), so a vet that let them pass would be wrong.
func TestVetAWSConfigVariantsReachTheSDK(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		withReadOnlyLines("output = json\n  credential_process = /bin/x\n"),
		strings.Replace(withReadOnlyLines("credential_process = /bin/x\n"), "[profile claudecode-readonly]", "[profile  claudecode-readonly]", 1),
		strings.Replace(withReadOnlyLines("credential_process = /bin/x\n"), "[profile claudecode-readonly]", "[profile\tclaudecode-readonly]", 1),
		withReadOnlyLines(`output = json \` + "\ncredential_process = /bin/x\n"),
		withReadOnlyLines("Credential_Process = /bin/x\n"),
		withReadOnlyLines("\u00a0credential_process = /bin/x\n"),
	} {
		got, err := sdkProfile(t, []byte(in), "claudecode-readonly")
		if err == nil && got.CredentialProcess == "" {
			t.Errorf("the SDK does not see the payload in %q: %+v", in, got)
		}
		if vetAWSConfig([]byte(in), managedProfiles()) == nil {
			t.Errorf("vet accepted %q", in)
		}
	}
}

// userPart is data without the managed sections' headers and bodies (as
// findSection bounds them), as line texts: what ccboot must leave as it was.
func userPart(t testing.TB, data []byte) string {
	t.Helper()
	lines, err := parseINILines(string(data))
	if err != nil {
		t.Fatal(err)
	}
	skip := map[int]bool{}
	for _, s := range testSections() {
		start, end, err := findSection(lines, s.name)
		if err != nil {
			t.Fatal(err)
		}
		for i := start; start >= 0 && i < end; i++ {
			skip[i] = true
		}
	}
	var b strings.Builder
	for i, l := range lines {
		if !skip[i] {
			b.WriteString(strings.TrimSuffix(l.text, "\r") + "\n")
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// userSection is the user's own profile the hostile payloads sit next to:
// it must come through every merge byte for byte.
const userSection = "[profile work]\ncredential_process = /bin/creds\noutput = json\n  credential_process = /bin/other\n"

// TestMergeAWSConfigHostile: the aws-config step reads a managed profile as
// aws-sdk-go-v2 does. Each payload of issue 19 is removed by the merge (or
// the file is refused), the result reads in the SDK as ccboot's values only,
// VetAWSConfigFile accepts it, the user's own section is untouched and a
// second merge changes nothing.
func TestMergeAWSConfigHostile(t *testing.T) {
	t.Parallel()
	ro := "[profile claudecode-readonly]"
	for _, tc := range []struct{ name, in string }{
		{"indented credential_process after a value (issue 19)", withReadOnlyLines("output = json\n  credential_process = /home/ec2-user/x.sh\n  credential_source =\n")},
		{"indented web identity file", withReadOnlyLines("output = json\n  web_identity_token_file = /etc/shadow\n")},
		{"web_identity_token_file /dev/zero", withReadOnlyLines("web_identity_token_file = /dev/zero\n")},
		{"services and endpoint", withReadOnlyLines("services = mine\n") + "[services mine]\nsts =\n  endpoint_url = http://127.0.0.1:9\n"},
		{"ec2_metadata_service_endpoint", withReadOnlyLines("ec2_metadata_service_endpoint = http://127.0.0.1:9\nca_bundle = /tmp/ca\n")},
		{"credential_process in Elevated", mergedTestConfig + "credential_process = /bin/x\n"},
		{"two spaces in the header (issue 19)", strings.Replace(withReadOnlyLines("credential_process = /bin/x\n"), ro, "[profile  claudecode-readonly]", 1)},
		{"a tab in the header (issue 19)", strings.Replace(withReadOnlyLines("credential_process = /bin/x\n"), ro, "[profile\tclaudecode-readonly]", 1)},
		{"a header with a comment", strings.Replace(mergedTestConfig, ro, ro+" # mine", 1)},
		{"a quoted header", strings.Replace(mergedTestConfig, ro, `[profile "claudecode-readonly"]`, 1)},
		{"a byte order mark before the header", "\ufeff" + strings.Replace(mergedTestConfig, "[default]\nregion = eu-west-1\n\n", "", 1)},
		{"backslash continuation", withReadOnlyLines(`output = json \` + "\ncredential_process = /bin/x\n")},
		{"CRLF plus indentation", strings.ReplaceAll(withReadOnlyLines("output = json\n  credential_process = /bin/x\n"), "\n", "\r\n")},
		{"no-break space indentation", withReadOnlyLines("output = json\n\u00a0credential_process = /bin/x\n")},
		{"upper-case and colon keys", withReadOnlyLines("Credential_Process = /bin/x\nweb_identity_token_file: /etc/shadow\n")},
		{"indented managed key", withReadOnlyLines("output = json\n  role_arn = arn:aws:iam::1:role/evil\n")},
		{"white space only some readers trim", strings.Replace(mergedTestConfig, "= Ec2InstanceMetadata", "= Ec2InstanceMetadata\u00a0", 1)},
		{"a quoted managed value", strings.Replace(mergedTestConfig, "= Ec2InstanceMetadata", `= "Ec2InstanceMetadata"`, 1)},
		{"the user's section before and after", userSection + "\n" + withReadOnlyLines("  credential_process = /bin/x\n") + userSection},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := []byte(tc.in)
			if vetAWSConfig(in, managedProfiles()) == nil {
				t.Fatalf("the payload passes the vet: %q", in)
			}
			out, err := mergeAWSConfig(in, testSections())
			if err != nil {
				t.Fatalf("merge: %v", err)
			}
			if err := vetAWSConfig(out, testSections()); err != nil {
				t.Fatalf("merged file fails the vet: %v\n%q", err, out)
			}
			assertSDKSeesCCBoot(t, out)
			if a, b := userPart(t, in), userPart(t, out); a != b {
				t.Fatalf("the user's part changed:\n%q\n%q", a, b)
			}
			if strings.Contains(tc.in, userSection) && strings.Count(string(out), userSection) != strings.Count(tc.in, userSection) {
				t.Fatalf("the user's own section changed:\n%q", out)
			}
			again, err := mergeAWSConfig(out, testSections())
			if err != nil || string(again) != string(out) {
				t.Fatalf("second merge changed it (err %v):\n%q\n%q", err, out, again)
			}
		})
	}
}

// TestMergeAWSConfigRefusesAmbiguous: what ccboot cannot converge without
// guessing is refused with the line and a fix, and nothing is written.
func TestMergeAWSConfigRefusesAmbiguous(t *testing.T) {
	t.Parallel()
	ro := "[profile claudecode-readonly]"
	for _, tc := range []struct{ name, in, want string }{
		{"a lone carriage return", withReadOnlyLines("output = json\rcredential_process = /bin/x\n"), "line 9: a carriage return without a newline"},
		{"a header only Python sees", withReadOnlyLines("[x]y\ncredential_process = /bin/x\n"), "line 9: " + ro + " has a line the AWS tools disagree on as a section header"},
		{"a header Go cuts at #", withReadOnlyLines("[x#y]\ncredential_process = /bin/x\n"), "line 9: " + ro + " has a line the AWS tools disagree on"},
		{"a header variant and the header", mergedTestConfig + "[profile  claudecode-readonly]\ncredential_process = x\n", "line 15: section " + ro + " appears twice (also on line 4)"},
		{"an indented header in another section", "[default]\nregion = eu-west-1\n[profile work]\ns3 =\n  [profile claudecode-elevated]\ncredential_process = x\n", "line 5: an indented line names section [profile claudecode-elevated]"},
		{"a lone quote the Go SDK's parser panics on", mergedTestConfig + "[profile work]\nk = ' # c\n", "line 16: a value that is a lone quote"},
		{"[DEFAULT], which the AWS CLI copies into every profile", "[DEFAULT] ; x\ncredential_process = /bin/x\n" + mergedTestConfig, "line 1: a [DEFAULT] section"},
		{"a managed key twice", withReadOnlyLines("region = us-east-1\n"), "line 9: [profile claudecode-readonly] region is set twice (also on line 8)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := mergeAWSConfig([]byte(tc.in), testSections())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasSuffix(err.Error(), "; fix or move it away and rerun") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line with %q and the fix", err, tc.want)
			}
		})
	}
}

// TestAWSConfigRepairsIssue19Payload: the step itself (Check, Apply, Check)
// reports issue 19's payload as drift and removes it, so `repair` never
// says aws-config ok while the SDK sees a credential_process.
func TestAWSConfigRepairsIssue19Payload(t *testing.T) {
	t.Parallel()
	env, _ := newTestEnv(t)
	p := awsConfigFile(env)
	convergeStep(t, env, AWSConfig{}) // ccboot's own file first
	in := withReadOnlyLines("output = json\n  credential_process = /home/ec2-user/x.sh\n  credential_source =\n")
	if err := os.WriteFile(p, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	d := convergeStep(t, env, AWSConfig{})
	if d.InSync() || !strings.Contains(d.Diff, "-  credential_process = /home/ec2-user/x.sh") {
		t.Fatalf("Check did not report the payload: %q\n%s", d.Changes, d.Diff)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := VetAWSConfigFile(context.Background(), env, got); err != nil {
		t.Fatalf("doctor's vet refuses what repair wrote: %v", err)
	}
	assertSDKSeesCCBoot(t, got)
	if !strings.Contains(string(got), "\noutput = json\n") {
		t.Errorf("the harmless key was lost:\n%s", got)
	}
	assertSecondApplyIsNoop(t, env, AWSConfig{}, p)
}

// TestSDKParserPanicsOnLoneQuote: the reason for sdkCrashLine. Root's
// doctor loads the user's file with aws-sdk-go-v2, which panics on a value
// that is a lone quote anywhere in the file; when an SDK update fixes that,
// this test fails and the rule can go.
func TestSDKParserPanicsOnLoneQuote(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"[profile work]\nk = \"\n", "[profile work]\n  k: '\r\n", "k = ' # c\n"} {
		if sdkCrashLine(in) == 0 {
			t.Errorf("sdkCrashLine misses %q", in)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("aws-sdk-go-v2 no longer panics on %q: sdkCrashLine can go", in)
				}
			}()
			_, _ = sdkProfile(t, []byte(mergedTestConfig+in), "claudecode-readonly")
		}()
	}
	for _, in := range []string{"[profile work]\nk = \"x\"\n", "k = \" x\n", "  k = \" #c\n", "# k = \"\n", "[k = \"]\n"} {
		if n := sdkCrashLine(in); n != 0 {
			t.Errorf("sdkCrashLine flags %q (line %d), which the SDK reads", in, n)
		}
		if _, err := sdkProfile(t, []byte(mergedTestConfig+in), "claudecode-readonly"); err != nil {
			t.Errorf("%q: %v", in, err)
		}
	}
}

// botocoreProfiles reads each file as the AWS CLI (botocore's
// raw_config_parse and build_profile_map) does: Python's RawConfigParser
// with universal newlines, "profile X" headers split with shlex, nested
// values (starting with a newline) kept apart. It prints one JSON object of
// profiles per file, or {"error": ...}.
const botocoreProfiles = `
import configparser, json, shlex, sys
for path in sys.argv[1:]:
    cp = configparser.RawConfigParser()
    try:
        cp.read([path], encoding="utf-8")
    except Exception as e:
        print(json.dumps({"error": type(e).__name__}))
        continue
    profiles = {}
    for section in cp.sections():
        vals = {}
        for option in cp.options(section):
            v = cp.get(section, option)
            vals[option] = "(nested)" if v.startswith("\n") else v
        if section.startswith("profile"):
            try:
                parts = shlex.split(section)
            except ValueError:
                continue
            if len(parts) == 2:
                profiles[parts[1]] = vals
        elif section == "default":
            profiles[section] = vals
    print(json.dumps(profiles))
`

// TestAWSConfigAgreesWithTheAWSCLI: what the vet accepts and what the
// merge writes reads, in the AWS CLI's parser too, as ccboot's values plus
// presentation keys in both managed profiles. Skipped where python3 is not
// installed (the Go SDK oracle above runs everywhere).
func TestAWSConfigAgreesWithTheAWSCLI(t *testing.T) {
	t.Parallel()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	var files []string
	var inputs []string
	add := func(data string) {
		p := filepath.Join(t.TempDir(), "config")
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		files, inputs = append(files, p), append(inputs, data)
	}
	for _, in := range []string{
		mergedTestConfig,
		strings.ReplaceAll(mergedTestConfig, "\n", "\r\n"),
		withReadOnlyLines("output = json\ncli_pager =\n# c\n"),
		withReadOnlyLines("") + "[profile other] # mine\nsso_session = x\n",
	} {
		if err := vetAWSConfig([]byte(in), managedProfiles()); err != nil {
			t.Fatal(err)
		}
		add(in)
	}
	for _, in := range []string{
		withReadOnlyLines("output = json\n  credential_process = /home/ec2-user/x.sh\n  credential_source =\n"),
		strings.Replace(withReadOnlyLines("credential_process = /bin/x\n"), "[profile claudecode-readonly]", "[profile  claudecode-readonly]", 1),
		strings.Replace(mergedTestConfig, "[profile claudecode-readonly]", `[profile "claudecode-readonly"]`, 1),
		strings.ReplaceAll(withReadOnlyLines("output = json\n  credential_process = /bin/x\n"), "\n", "\r\n"),
		withReadOnlyLines(`output = json \` + "\ncredential_process = /bin/x\n"),
		"[default]\n  REGION : us-east-1\n",
	} {
		out, err := mergeAWSConfig([]byte(in), testSections())
		if err != nil {
			t.Fatal(err)
		}
		add(string(out))
	}
	cmd := exec.Command(python, append([]string{"-c", botocoreProfiles}, files...)...)
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	results := strings.Split(strings.TrimSpace(string(stdout)), "\n")
	if len(results) != len(files) {
		t.Fatalf("python3 printed %d results for %d files:\n%s", len(results), len(files), stdout)
	}
	for i, r := range results {
		var profiles map[string]map[string]string
		if err := json.Unmarshal([]byte(r), &profiles); err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		for _, s := range testSections() {
			name := strings.TrimPrefix(s.name, "profile ")
			got := profiles[name]
			for _, kv := range s.keys {
				if got[kv[0]] != kv[1] {
					t.Errorf("the AWS CLI reads [%s] %s = %q, want %q\nfile %q", s.name, kv[0], got[kv[0]], kv[1], inputs[i])
				}
			}
			if !strings.HasPrefix(s.name, "profile ") {
				continue
			}
			for k := range got {
				if !sectionSets(s, k) && !harmlessProfileKeys[k] {
					t.Errorf("the AWS CLI reads [%s] %s, which ccboot does not allow\nfile %q", s.name, k, inputs[i])
				}
			}
		}
	}
}

func sectionSets(s awsSection, key string) bool {
	for _, kv := range s.keys {
		if kv[0] == key {
			return true
		}
	}
	return false
}
