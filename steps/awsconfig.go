package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strings"
	"unicode"

	"gopkg.in/ini.v1"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/broker"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
	"github.com/ccboot/ccboot/bootstrap/metadata"
	"github.com/ccboot/ccboot/bootstrap/sysuser"
)

// AWSConfig writes the two role profiles (and the default region) into the
// target user's ~/.aws/config, keeping everything else the user wrote.
type AWSConfig struct{}

const (
	awsDir        = ".aws"
	awsConfigPath = ".aws/config"
)

func (AWSConfig) Name() string    { return "aws-config" }
func (AWSConfig) Needs() []string { return nil }

// Scope implements bootstrap.Step: it holds the instance's Region and role ARNs.
func (AWSConfig) Scope() bootstrap.Scope { return bootstrap.ScopeInstance }

func (s AWSConfig) Check(ctx context.Context, env *bootstrap.Env) (bootstrap.Drift, error) {
	var d bootstrap.Drift
	p, err := s.plan(ctx, env)
	if err != nil {
		return d, err
	}
	display := p.home.Path(awsDir)
	switch {
	case !p.dirExists:
		d.Differ("create %s (0700, %s)", display, p.user.Name)
	case p.dirFix != "":
		d.Differ("%s %s", p.dirFix, display)
	}
	if err := p.file.drift(&d); err != nil {
		return d, fmt.Errorf("aws-config: %w", err)
	}
	return d, nil
}

func (s AWSConfig) Apply(ctx context.Context, env *bootstrap.Env) error {
	p, err := s.plan(ctx, env)
	if err != nil {
		return err
	}
	// Both calls go through the guarded home tree: a link, a hard link or
	// another owner's entry swapped in after plan() is refused by fsroot,
	// and nothing can resolve outside the home.
	if _, err := p.home.EnsureDirWith(awsDir, fsroot.FileSpec{Mode: 0o700, UID: p.user.UID, GID: p.user.GID}, p.dirHooks); err != nil {
		return fmt.Errorf("aws-config: %w", err)
	}
	if err := p.file.write(); err != nil {
		return fmt.Errorf("aws-config: %w", err)
	}
	return nil
}

// awsPlan is the read-only analysis Check reports and Apply carries out.
type awsPlan struct {
	home      *fsroot.Tree
	user      sysuser.User
	dirExists bool
	dirFix    string // "chown ..."/"chmod ..." when ~/.aws exists but differs
	dirHooks  fsroot.DirHooks
	file      managedFile
}

// plan inspects ~/.aws and ~/.aws/config and renders the merged file. It
// refuses anything in the home that a root process must not follow or
// adopt: links, files with other hard links, oversized files, and entries
// not owned by the user (root's included) that ccboot did not create.
func (AWSConfig) plan(ctx context.Context, env *bootstrap.Env) (awsPlan, error) {
	sections, err := awsSections(ctx, env)
	if err != nil {
		return awsPlan{}, err
	}
	home, u, err := userHome(env)
	if err != nil {
		return awsPlan{}, fmt.Errorf("aws-config: %w", err)
	}
	p := awsPlan{home: home, user: u}
	// inRoot is a home path as the record of created entries names it.
	inRoot := func(name string) string { return path.Join(u.Home, name) }
	adopt := func(name string, fi fs.FileInfo) bool {
		uid, _ := fsroot.Owner(fi)
		return uid == 0 && bootstrap.CreatedByCCBoot(env.Sys, inRoot(name), fi)
	}
	p.dirHooks = fsroot.DirHooks{
		Created: func(name string, fi fs.FileInfo) error { return bootstrap.RecordCreated(env.Sys, inRoot(name), fi) },
		Adopt:   adopt,
	}
	dirDisplay := home.Path(awsDir)
	fi, err := home.Lstat(awsDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return p, fmt.Errorf("aws-config: %w", err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return p, fmt.Errorf("aws-config: refusing %s: it %w; ccboot runs as root and never writes through links in a user's home (remove the link and rerun)", dirDisplay, fsroot.ErrSymlink)
	case !fi.IsDir():
		return p, fmt.Errorf("aws-config: %s is not a directory; move it away and rerun", dirDisplay)
	default:
		p.dirExists = true
		// Only an empty directory is adopted (fsroot asks Adopt about
		// nothing else): a run killed between mkdir and chown leaves one.
		empty, _ := home.EmptyDir(awsDir)
		if err := ownedByUser(dirDisplay, fi, u, empty && adopt(awsDir, fi)); err != nil {
			return p, fmt.Errorf("aws-config: %w", err)
		}
		if uid, gid := fsroot.Owner(fi); uid != u.UID || gid != u.GID {
			p.dirFix = fmt.Sprintf("chown %d:%d (is %d:%d)", u.UID, u.GID, uid, gid)
		} else if fi.Mode().Perm() != 0o700 {
			p.dirFix = fmt.Sprintf("chmod 0700 (is %04o)", fi.Mode().Perm())
		}
	}

	var old []byte
	if p.dirExists {
		old, err = readUserFile(home, awsConfigPath, u)
		if err != nil {
			return p, fmt.Errorf("aws-config: %w", err)
		}
	}
	merged, err := mergeAWSConfig(old, sections)
	if err != nil {
		return p, fmt.Errorf("aws-config: %s: %w", home.Path(awsConfigPath), err)
	}
	p.file = managedFile{tree: home, name: awsConfigPath, want: merged, spec: fsroot.FileSpec{Mode: 0o600, UID: u.UID, GID: u.GID}}
	return p, nil
}

// readUserFile reads a file in the home that ccboot will rewrite as the
// user's: missing gives nil; links, FIFOs, hard-linked or oversized files
// (fsroot) and files not owned by the user are refused, all on the one
// descriptor the bytes are read from. ccboot never leaves a file of its
// own there owned by root (it chowns the temp file before the rename), so
// no exception for files it created is needed.
func readUserFile(home *fsroot.Tree, name string, u sysuser.User) ([]byte, error) {
	data, _, err := home.ReadFileCheck(name, func(fi fs.FileInfo) error {
		return ownedByUser(home.Path(name), fi, u, false)
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

// ownedByUser refuses an entry in the user's home owned by anyone else,
// root included, unless adopted (ccboot created it): taking it over (chown
// to the user) would hand the user someone else's file, e.g. root's
// credentials left by `sudo aws configure`.
func ownedByUser(display string, fi fs.FileInfo, u sysuser.User, adopted bool) error {
	uid, _ := fsroot.Owner(fi)
	if uid == u.UID || adopted {
		return nil
	}
	return fmt.Errorf("refusing %s: it is owned by uid %d, not %s (uid %d), and ccboot did not create it; it may hold that owner's secrets: check it, then chown it to %s (chown -R %s: %s) or move it away, and rerun",
		display, uid, u.Name, u.UID, u.Name, u.Name, display)
}

// awsSection is one [section] ccboot manages and the keys it sets there, in
// the order they are written when missing.
type awsSection struct {
	name string
	keys [][2]string
}

func awsSections(ctx context.Context, env *bootstrap.Env) ([]awsSection, error) {
	c := env.Config
	region, err := env.Region(ctx)
	if err != nil {
		return nil, fmt.Errorf("aws-config: region: %w", err)
	}
	if c.Enforced() {
		// The broker assumes the roles (only root reaches IMDS): the
		// profiles name no role, source or chain, only the program the
		// SDKs ask, and refresh through, by its Expiration.
		return []awsSection{
			{"default", [][2]string{{"region", region}}},
			{"profile " + c.ReadOnlyProfile, [][2]string{
				{"credential_process", BrokerCredentialProcess(broker.ReadOnly)},
				{"region", region},
			}},
			{"profile " + c.ElevatedProfile, [][2]string{
				{"credential_process", BrokerCredentialProcess(broker.Elevated)},
				{"region", region},
			}},
		}, nil
	}
	ro, el, err := roleARNs(ctx, env)
	if err != nil {
		return nil, err
	}
	return []awsSection{
		{"default", [][2]string{{"region", region}}},
		{"profile " + c.ReadOnlyProfile, [][2]string{
			{"role_arn", ro},
			{"credential_source", "Ec2InstanceMetadata"},
			{"role_session_name", c.ReadOnlySessionName},
			{"region", region},
		}},
		{"profile " + c.ElevatedProfile, [][2]string{
			{"role_arn", el},
			{"source_profile", c.ReadOnlyProfile},
			{"role_session_name", c.ElevatedSessionName},
			{"region", region},
		}},
	}, nil
}

// BrokerCredentialProcess is the credential_process of tier's profile in
// enforced mode: the installed binary by its absolute path (the user's
// PATH is the user's to change), asking the broker for tier.
func BrokerCredentialProcess(tier string) string {
	return bootstrap.InstalledBinary + " credentials " + tier
}

// isBrokerCredentialProcess: the one value with a space ccboot writes. It
// is ccboot's own constant, never configuration, so it cannot change the
// file's structure either.
func isBrokerCredentialProcess(key, value string) bool {
	return key == "credential_process" && (value == BrokerCredentialProcess(broker.ReadOnly) || value == BrokerCredentialProcess(broker.Elevated))
}

// instanceProfilePattern is the CloudFormation template's naming convention:
// instance profile claudecode-ec2-STACK (any path) pairs with roles
// claudecode-readonly-STACK and claudecode-elevated-STACK.
var instanceProfilePattern = regexp.MustCompile(`^arn:([a-z-]+):iam::([0-9]{12}):instance-profile/(?:[\w+=,.@-]+/)*claudecode-ec2-([\w+=,.@-]+)$`)

// roleARNs returns the configured role ARNs, or derives them from the
// instance profile. Partition and account always come from IMDS, so the
// same binary works in aws-cn and aws-us-gov.
func roleARNs(ctx context.Context, env *bootstrap.Env) (ro, el string, err error) {
	c := env.Config
	if c.ReadOnlyRoleARN != "" && c.ElevatedRoleARN != "" {
		// Offline (--root) runs may have no IMDS; only a known partition is compared.
		if partition, perr := env.Meta.Partition(ctx); perr == nil {
			for _, k := range []struct{ key, arn string }{{"readonly_role_arn", c.ReadOnlyRoleARN}, {"elevated_role_arn", c.ElevatedRoleARN}} {
				if got := arnPartition(k.arn); got != partition {
					return "", "", fmt.Errorf("aws-config: [aws] %s %s is in partition %q but this instance is in partition %q; fix it in %s",
						k.key, k.arn, got, partition, bootstrap.DefaultConfigPath)
				}
			}
		}
		return c.ReadOnlyRoleARN, c.ElevatedRoleARN, nil
	}
	ro, el, err = deriveRoleARNs(ctx, env.Meta)
	if err != nil {
		return "", "", fmt.Errorf("aws-config: cannot derive role ARNs: %v; set [aws] readonly_role_arn and [aws] elevated_role_arn in %s", err, bootstrap.DefaultConfigPath)
	}
	return ro, el, nil
}

// RoleARNs are the ReadOnly and Elevated role ARNs the aws-config step
// writes, for `ccboot doctor` to expect.
func RoleARNs(ctx context.Context, env *bootstrap.Env) (ro, el string, err error) {
	return roleARNs(ctx, env)
}

func deriveRoleARNs(ctx context.Context, meta metadata.Source) (ro, el string, err error) {
	profile, err := meta.InstanceProfileARN(ctx)
	if errors.Is(err, metadata.ErrNoInstanceProfile) {
		return "", "", metadata.ErrNoInstanceProfile
	}
	if err != nil {
		return "", "", err
	}
	partition, err := meta.Partition(ctx)
	if err != nil {
		return "", "", err
	}
	account, err := meta.AccountID(ctx)
	if err != nil {
		return "", "", err
	}
	m := instanceProfilePattern.FindStringSubmatch(profile)
	if m == nil {
		return "", "", fmt.Errorf("instance profile %s does not follow the naming convention arn:PARTITION:iam::ACCOUNT:instance-profile/claudecode-ec2-STACK", profile)
	}
	if m[1] != partition {
		return "", "", fmt.Errorf("instance profile %s is in partition %q but IMDS reports partition %q", profile, m[1], partition)
	}
	if m[2] != account {
		return "", "", fmt.Errorf("instance profile %s is in account %s but IMDS reports account %s", profile, m[2], account)
	}
	stack := m[3]
	ro = fmt.Sprintf("arn:%s:iam::%s:role/claudecode-readonly-%s", partition, account, stack)
	el = fmt.Sprintf("arn:%s:iam::%s:role/claudecode-elevated-%s", partition, account, stack)
	// IAM role names are at most 64 characters; instance profile names 128.
	if len("claudecode-elevated-"+stack) > 64 {
		return "", "", fmt.Errorf("stack name %q from instance profile %s is too long for the role names claudecode-readonly/elevated-STACK (64 characters at most)", stack, profile)
	}
	return ro, el, nil
}

func arnPartition(arn string) string {
	if m := bootstrap.RoleARNPattern.FindStringSubmatch(arn); m != nil {
		return m[1]
	}
	return ""
}

// iniLoadOptions parse ~/.aws/config roughly the way the AWS CLI reads it:
// "#" and ";" inside a value are part of the value, every key has a value,
// indented lines continue a value (nested s3 settings), and key names are
// case-insensitive. ini.v1 only validates and verifies here, as one more
// reader that must agree (vetAWSConfig reads as the SDKs do). It never
// writes the file: its writer reformats lines and wraps values containing
// "#" in backquotes, which the AWS tools would read literally.
var iniLoadOptions = ini.LoadOptions{
	IgnoreInlineComment:        true,
	AllowNestedValues:          true,
	AllowPythonMultilineValues: true,
	InsensitiveKeys:            true,
	PreserveSurroundedQuote:    true,
	KeyValueDelimiters:         "=:",
}

// safeINIValue is what ccboot itself writes into the file: names, ARNs,
// regions. Anything else could change the file's structure.
var safeINIValue = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:/@+=,-]*$`)

// mergeAWSConfig edits content line by line so that every managed key holds
// its value, and leaves every other byte as it was: other sections, comments,
// blank lines, extra keys, their order and spelling. Managed keys are
// rewritten in place (keeping the "key = " prefix as written), missing keys
// are added after the section's last key, missing sections are appended.
// Unchanged input comes back byte-identical.
func mergeAWSConfig(content []byte, sections []awsSection) ([]byte, error) {
	for _, s := range sections {
		if !safeINIValue.MatchString(strings.TrimPrefix(s.name, "profile ")) {
			return nil, fmt.Errorf("refusing to write section [%s]: not a plain profile name", s.name)
		}
		for _, kv := range s.keys {
			if !safeINIValue.MatchString(kv[0]) || !safeINIValue.MatchString(kv[1]) && !isBrokerCredentialProcess(kv[0], kv[1]) {
				return nil, fmt.Errorf("refusing to write [%s] %s = %q: not a plain value", s.name, kv[0], kv[1])
			}
		}
	}
	if problem, _ := wholeFileProblem(string(content)); problem != "" {
		return nil, fmt.Errorf("%s; fix or move it away and rerun", problem)
	}
	// Our own pass first: it knows line numbers.
	lines, err := parseINILines(string(content))
	if err != nil {
		return nil, fmt.Errorf("%v; fix or move it away and rerun", err)
	}
	if _, err := ini.LoadSources(iniLoadOptions, content); err != nil {
		return nil, fmt.Errorf("cannot parse it (%s); fix or move it away and rerun", iniErrorText(err, lines))
	}
	eol := "\n"
	if len(lines) > 0 && lines[0].eol == "\r\n" {
		eol = "\r\n"
	}

	replace := map[int]string{}
	drop := map[int]bool{}
	insertAfter := map[int][]string{}
	insertBefore := map[int][]string{}
	var appendSections []awsSection
	for _, s := range sections {
		start, end, err := findSection(lines, s.name)
		if err != nil {
			return nil, fmt.Errorf("%v; fix or move it away and rerun", err)
		}
		if start < 0 {
			appendSections = append(appendSections, s)
			continue
		}
		if canonical := "[" + s.name + "]"; lines[start].text != canonical {
			replace[start] = canonical // [profile  X], [ profile X ], a comment after it...
		}
		found, err := editSectionBody(lines, start, end, s, drop)
		if err != nil {
			return nil, fmt.Errorf("%v; fix or move it away and rerun", err)
		}
		last := start // insertion point: the section's last key or continuation we keep
		for i := start + 1; i < end; i++ {
			if (lines[i].kind == lineKey || lines[i].kind == lineCont) && !drop[i] {
				last = i
			}
		}
		for k, kv := range s.keys {
			at, ok := found[kv[0]]
			if !ok {
				// Before the next of ccboot's keys the section keeps, so
				// the keys stand in ccboot's order and switching
				// [tiers] mode there and back gives the same bytes.
				if next, ok := nextFoundKey(s.keys[k+1:], found); ok {
					insertBefore[next] = append(insertBefore[next], kv[0]+" = "+kv[1])
				} else {
					insertAfter[last] = append(insertAfter[last], kv[0]+" = "+kv[1])
				}
				continue
			}
			l := lines[at]
			conts := 0
			for i := at + 1; i < end && lines[i].kind == lineCont; i++ {
				conts++
			}
			plain := plainKeyLine.MatchString(l.text)
			if plain && strings.TrimRight(l.text[l.valueAt:], " \t") == kv[1] && conts == 0 {
				continue
			}
			if plain {
				replace[at] = l.withValue(kv[1])
			} else {
				// "  REGION : x" reads as region only for some of the
				// AWS tools (the JS SDK folds no case and knows no ":").
				replace[at] = kv[0] + " = " + kv[1]
			}
			for i := at + 1; i <= at+conts; i++ {
				drop[i] = true
			}
		}
	}

	var b strings.Builder
	for i, l := range lines {
		if drop[i] {
			continue
		}
		for _, s := range insertBefore[i] {
			b.WriteString(s + eol)
		}
		text, ok := replace[i]
		if !ok {
			text = l.text
		}
		b.WriteString(text)
		ins := insertAfter[i]
		if len(ins) > 0 && l.eol == "" {
			b.WriteString(lineEnd(text, eol))
		} else {
			b.WriteString(l.eol)
		}
		for _, s := range ins {
			b.WriteString(s + eol)
		}
	}
	if len(appendSections) > 0 {
		out := b.String()
		if out != "" && !strings.HasSuffix(out, "\n") {
			end := lineEnd(out, eol)
			b.WriteString(end)
			out += end
		}
		if strings.TrimSpace(out) != "" && !strings.HasSuffix(out, "\n\n") && !strings.HasSuffix(out, "\n\r\n") {
			b.WriteString(eol) // a blank line between the user's text and ours
		}
		for i, s := range appendSections {
			if i > 0 {
				b.WriteString(eol)
			}
			b.WriteString("[" + s.name + "]" + eol)
			for _, kv := range s.keys {
				b.WriteString(kv[0] + " = " + kv[1] + eol)
			}
		}
	}
	out := []byte(b.String())
	if err := verifyAWSConfig(out, sections); err != nil {
		return nil, err
	}
	// The result must be what the SDKs read: ccboot never calls a file in
	// sync that VetAWSConfigFile (doctor) refuses.
	if err := vetAWSConfig(out, sections); err != nil {
		msg, _, _ := strings.Cut(err.Error(), "; fix: ")
		return nil, fmt.Errorf("cannot edit it safely (the edited file would still read differently in the AWS tools, at its %s); fix or move it away and rerun", msg)
	}
	return out, nil
}

// nextFoundKey is the line of the first of keys that found holds.
func nextFoundKey(keys [][2]string, found map[string]int) (int, bool) {
	for _, kv := range keys {
		if at, ok := found[kv[0]]; ok {
			return at, true
		}
	}
	return 0, false
}

// editSectionBody walks the body of managed section s (lines start+1 to
// end) the way aws-sdk-go-v2 reads it: an indented key = value line is a
// key of its own, not a continuation. It returns the line of each of
// ccboot's keys, and marks in drop what must go: in a profile ccboot owns,
// every line but ccboot's keys, harmlessProfileKeys, comments and blank
// lines; in [default] (the user's profile too), indented lines that some
// tool would read as one of ccboot's keys. A line that only some tools read
// as a section header is refused: ccboot cannot tell whose keys follow it.
func editSectionBody(lines []iniLine, start, end int, s awsSection, drop map[int]bool) (map[string]int, error) {
	want := map[string]bool{}
	for _, kv := range s.keys {
		want[kv[0]] = true
	}
	strict := strings.HasPrefix(s.name, "profile ")
	found := map[string]int{}
	for i := start + 1; i < end; i++ {
		l := lines[i]
		t := l.text
		trimmed := strings.TrimFunc(t, isINISpace)
		switch {
		case trimmed == "" || t[0] == '#' || t[0] == ';':
			continue
		case strings.HasPrefix(trimmed, "["):
			return nil, fmt.Errorf("line %d: [%s] has a line the AWS tools disagree on as a section header (write headers as [name] at the start of a line)", i+1, s.name)
		}
		if l.kind == lineKey && want[l.name] {
			if at, dup := found[l.name]; dup {
				return nil, fmt.Errorf("line %d: [%s] %s is set twice (also on line %d), which the AWS CLI rejects", i+1, s.name, l.name, at+1)
			}
			found[l.name] = i
			continue
		}
		indented := isINISpace([]rune(t)[0])
		switch {
		case !strict:
			if indented && want[goKeyName(t)] {
				drop[i] = true
			}
		case indented:
			drop[i] = true // a key for the SDKs, a value's next line for the CLI
		default:
			m := plainKeyLine.FindStringSubmatch(t)
			if m == nil || !harmlessProfileKeys[m[1]] || strings.HasSuffix(strings.TrimRightFunc(t, isINISpace), `\`) {
				drop[i] = true
			}
		}
	}
	return found, nil
}

// verifyAWSConfig reads the result back with ini.v1: if the file uses syntax
// the line editor did not anticipate (a value continued with a backslash, a
// """ quote), the values would not read back and nothing is written.
func verifyAWSConfig(out []byte, sections []awsSection) error {
	f, err := ini.LoadSources(iniLoadOptions, out)
	if err != nil {
		return fmt.Errorf("cannot edit it safely (the edited file would not parse: %s); fix or move it away and rerun", iniErrorText(err, nil))
	}
	for _, s := range sections {
		sec, err := f.GetSection(s.name)
		if err != nil {
			return fmt.Errorf("cannot edit it safely ([%s] would not read back); fix or move it away and rerun", s.name)
		}
		for _, kv := range s.keys {
			// What it reads back as is left out: it may be the user's text.
			if sec.Key(kv[0]).String() != kv[1] {
				return fmt.Errorf("cannot edit it safely ([%s] %s would not read back as written); fix or move it away and rerun", s.name, kv[0])
			}
		}
	}
	return nil
}

type lineKind int

const (
	lineBlank lineKind = iota
	lineComment
	lineSection
	lineKey
	lineCont // indented line continuing the previous key's value
)

type iniLine struct {
	text     string // without the line ending
	eol      string // "\n", "\r\n" or "" for a last line without one
	kind     lineKind
	name     string // section name; key name lowercased
	valueAt  int    // offset of the value in text; -1 for a key without "="
	delimEnd int    // offset just past the delimiter
}

// withValue rewrites the line with a new value, keeping "key =" as written.
func (l iniLine) withValue(v string) string {
	if l.valueAt < 0 {
		return strings.TrimRightFunc(l.text, unicode.IsSpace) + " = " + v
	}
	prefix := l.text[:l.valueAt]
	if l.valueAt == l.delimEnd && l.delimEnd >= 2 && l.text[l.delimEnd-2] == ' ' {
		prefix += " " // "region =" had no value: keep the spacing symmetric
	}
	return prefix + v
}

// iniErrorText is an ini.v1 error without the text of the user's file:
// ini.v1 quotes the offending line, and in ~/.aws/config that line can be
// a secret key (a malformed aws_secret_access_key line), which must not
// reach the state file, status output or a CloudFormation event. It keeps
// ini.v1's description (the part before the quoted text) and adds the line
// number when the quoted line can be found in lines.
func iniErrorText(err error, lines []iniLine) string {
	var quoted string
	switch e := err.(type) {
	case ini.ErrDelimiterNotFound:
		quoted = e.Line
	case ini.ErrEmptyKeyName:
		quoted = e.Line
	}
	// ini.v1's messages are "description: line" or "description from
	// %q to %q"; keep the description only.
	kind := err.Error()
	if i := strings.IndexAny(kind, ":\"\n"); i >= 0 {
		kind = kind[:i]
	}
	kind = escapeControl(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kind), " from")))
	if quoted != "" {
		q := strings.TrimSpace(quoted)
		for i, l := range lines {
			if strings.TrimSpace(l.text) == q {
				return fmt.Sprintf("line %d: %s", i+1, kind)
			}
		}
	}
	return kind
}

// escapeControl writes control characters as Go escapes, so no text from a
// file can move root's terminal cursor or retitle it.
func escapeControl(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// lineEnd is what ends a last line that had no line ending. A text ending
// in a bare CR gets only "\n": appending "\r\n" would make "\r\r\n", which
// the AWS CLI (universal newlines) reads as an extra, blank line, changing a
// multiline value it ends.
func lineEnd(text, eol string) string {
	if strings.HasSuffix(text, "\r") {
		return "\n"
	}
	return eol
}

// parseINILines classifies each line the way the AWS CLI's parser
// (Python's configparser) does, keeping the exact text so unchanged lines
// are written back as they were. The SDKs read indented lines differently;
// editSectionBody handles that inside the sections ccboot manages.
func parseINILines(s string) ([]iniLine, error) {
	if s == "" {
		return nil, nil
	}
	raw := strings.SplitAfter(s, "\n")
	if raw[len(raw)-1] == "" {
		raw = raw[:len(raw)-1]
	}
	lines := make([]iniLine, 0, len(raw))
	prev := lineBlank
	inSection := false
	for i, r := range raw {
		l := iniLine{text: r, valueAt: -1}
		if strings.HasSuffix(r, "\r\n") {
			l.text, l.eol = r[:len(r)-2], "\r\n"
		} else if strings.HasSuffix(r, "\n") {
			l.text, l.eol = r[:len(r)-1], "\n"
		}
		t := l.text
		if i == 0 {
			t = strings.TrimPrefix(t, "\ufeff")
		}
		trimmed := strings.TrimLeftFunc(t, unicode.IsSpace)
		indent := len(l.text) - len(trimmed)
		indented := t != "" && (t[0] == ' ' || t[0] == '\t' || t[0] == '\f')
		switch {
		case indented && (prev == lineKey || prev == lineCont):
			// Like Python's configparser (and ini.v1's multiline mode): an
			// indented line after a key, even a comment or blank-looking
			// one, continues that key's value.
			l.kind = lineCont
		case trimmed == "":
			l.kind = lineBlank
		case trimmed[0] == '#' || trimmed[0] == ';':
			l.kind = lineComment
		case trimmed[0] == '[':
			end := strings.LastIndexByte(trimmed, ']')
			if end < 0 {
				return nil, fmt.Errorf("line %d: a section header has no closing ]", i+1)
			}
			if end == 1 {
				return nil, fmt.Errorf("line %d: empty section name []", i+1)
			}
			l.kind, l.name = lineSection, trimmed[1:end]
			inSection = true
		case !inSection:
			// Python's configparser, which the AWS CLI uses, rejects a key
			// before the first section header (MissingSectionHeaderError).
			return nil, fmt.Errorf("line %d: a key stands before any [section], which the AWS CLI rejects", i+1)
		default:
			l.kind = lineKey
			d := strings.IndexAny(trimmed, "=:")
			if d == 0 {
				return nil, fmt.Errorf("line %d: a key = value line has no key name", i+1)
			}
			if d < 0 {
				// configparser (allow_no_value off, as the AWS CLI uses it)
				// rejects a key without a value; ini.v1 would read it, and
				// an indented line after it, in ways the CLI never does.
				return nil, fmt.Errorf("line %d: a line has no = or : (key = value), which the AWS CLI rejects", i+1)
			}
			l.name = strings.ToLower(strings.TrimSpace(trimmed[:d]))
			l.delimEnd = indent + d + 1
			l.valueAt = l.delimEnd
			for l.valueAt < len(l.text) && (l.text[l.valueAt] == ' ' || l.text[l.valueAt] == '\t') {
				l.valueAt++
			}
		}
		prev = l.kind
		lines = append(lines, l)
	}
	return lines, nil
}

// findSection returns the header line of section name and the index where
// its body ends; start is -1 when it is absent. Every header any of the
// AWS tools could read as name counts ([profile  X], [ profile X ],
// [profile "X"]...), and the body ends only at a header they all agree on.
// A managed section named twice is an error: the AWS CLI rejects such files,
// the SDKs merge them, and ccboot would have to guess which one counts.
func findSection(lines []iniLine, name string) (start, end int, err error) {
	start, end = -1, len(lines)
	for i, l := range lines {
		if !headerNames(l.text, name) {
			continue
		}
		if start >= 0 {
			return 0, 0, fmt.Errorf("line %d: section [%s] appears twice (also on line %d), which the AWS CLI rejects", i+1, name, start+1)
		}
		if l.kind != lineSection {
			return 0, 0, fmt.Errorf("line %d: an indented line names section [%s], which the AWS SDKs read as a section header and the AWS CLI as part of a value", i+1, name)
		}
		start = i
	}
	if start < 0 {
		return -1, end, nil
	}
	for i := start + 1; i < len(lines); i++ {
		if isAgreedHeader(lines[i].text) {
			return start, i, nil
		}
	}
	return start, end, nil
}
