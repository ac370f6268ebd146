// Package steps holds the steps ccboot converges, one file each. The order
// below is the order they are reported in; Needs() on each step says what
// must succeed first, and the engine runs steps whose needs are met side by
// side.
package steps

import "github.com/ccboot/ccboot/bootstrap"

// All returns every step in report order.
func All() []bootstrap.Step {
	return []bootstrap.Step{
		Packages{}, // unzip git jq nodejs docker, one transaction
		// Needs only packages (nft comes from nftables, which [packages]
		// install can add), so the engine starts it as soon as packages
		// is done, beside the steps that write the user's profiles.
		IMDSFilter{},  // only root reaches IMDS ([tiers] mode = enforced)
		ClaudeCode{},  // npm install -g @anthropic-ai/claude-code (needs packages: npm)
		DockerGroup{}, // user in group docker, docker.service on (needs packages: docker)
		// After docker-group, which makes the group it then judges.
		UserPrivileges{}, // enforced: no root group, no sudo rule, ptrace_scope >= 1
		// After user-privileges, which takes the user out of group docker: its
		// Check refuses a user who can still drive the root daemon.
		RootlessDocker{}, // enforced tiers: the user's own rootless dockerd or Podman
		Swap{},           // swap file, mkswap, swapon, one fstab line
		ProfileEnv{},     // /etc/profile.d/claude-bedrock.sh
		// Beside profile-env because it writes the same values
		// (claudeCodeEnv) where Claude Code reads them from any kind of
		// shell; it needs nothing (Claude Code reads the file whenever it
		// starts), so it runs alongside the others.
		ClaudeSettings{}, // /etc/claude-code/managed-settings.json (or its drop-in)
		// Before aws-config, whose enforced profiles ask the broker.
		CredentialBroker{}, // enforced: ccboot-broker.socket installed, enabled, listening
		AWSConfig{},        // ~/.aws/config with the two role profiles
		Aliases{},          // claude-ro / claude-el in ~/.bashrc
	}
}
