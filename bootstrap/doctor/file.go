package doctor

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
	"gopkg.in/ini.v1"
)

// withMemFile hands the SDK, which loads shared config only by path, the
// bytes ccboot read from the user's home without following links: as an
// anonymous in-memory file (/proc/self/fd/N), so nothing is written and a
// link in the home cannot make root's SDK read another file (root's own
// ~/.aws, /etc/shadow) as the user's config.
func withMemFile(data []byte, f func(path string) error) error {
	fd, err := unix.MemfdCreate("ccboot-doctor-aws-config", unix.MFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("memfd_create: %w", err)
	}
	file := os.NewFile(uintptr(fd), "aws-config")
	defer file.Close()
	if _, err := file.Write(data); err != nil {
		return fmt.Errorf("copy ~/.aws/config into memory: %w", err)
	}
	return f(fmt.Sprintf("/proc/self/fd/%d", fd))
}

// refusedKeys make the SDK run a command, read a file or take credentials
// from somewhere other than the chain ccboot writes. doctor runs as root on
// a file the user may edit: it never runs a user's credential_process as
// root, never reads a path the user names, and never lets the operator's
// shell (credential_source = Environment) stand in for the instance role.
var refusedKeys = []string{
	"credential_process", "web_identity_token_file", "login_session", "ca_bundle",
	"sso_session", "sso_start_url", "sso_account_id", "sso_role_name", "sso_region",
}

// vetChain checks profile and its source_profile chain in the user's file
// for refusedKeys and for a credential_source other than the instance's.
func vetChain(data []byte, profile string) error {
	f, err := ini.LoadSources(ini.LoadOptions{
		IgnoreInlineComment:        true,
		AllowNestedValues:          true,
		AllowPythonMultilineValues: true,
		InsensitiveKeys:            true,
		KeyValueDelimiters:         "=:",
	}, data)
	if err != nil {
		return fmt.Errorf("~/.aws/config does not parse: %s", strings.SplitN(err.Error(), ":", 2)[0])
	}
	seen := map[string]bool{}
	for name := profile; name != ""; {
		if seen[name] {
			return fmt.Errorf("[profile %s]: source_profile loops back to %s", profile, name)
		}
		seen[name] = true
		sec, err := f.GetSection("profile " + name)
		if err != nil && name == "default" {
			sec, err = f.GetSection("default")
		}
		if err != nil {
			return nil // a missing profile is the SDK's to report
		}
		for _, k := range refusedKeys {
			if sec.HasKey(k) {
				return fmt.Errorf("[profile %s] sets %s, which ccboot doctor will not use as root", name, k)
			}
		}
		if src := sec.Key("credential_source").String(); src != "" && src != "Ec2InstanceMetadata" {
			return fmt.Errorf("[profile %s] has credential_source = %s; the chain starts at the instance role (Ec2InstanceMetadata)", name, src)
		}
		name = sec.Key("source_profile").String()
	}
	return nil
}
