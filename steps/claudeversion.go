package steps

import "github.com/ccboot/ccboot/bootstrap"

// InstalledClaudeVersion is the Claude Code version ccboot installed and
// that is intact (its record matches, by size and mtime), for the
// inventory; "" when there is none. The version comes from the link's
// target, which must name one of ccboot's version folders (a version
// pattern), so no other text can pass through it.
func InstalledClaudeVersion(env *bootstrap.Env) string {
	env2 := *env
	env2.Verify = false // a stat, not a 400 MB hash
	st, err := ClaudeCode{}.state(&env2)
	if err != nil || st.rec == nil || st.broken != "" {
		return ""
	}
	return st.version
}
