package steps

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/runner"
)

// minNodeMajor is @anthropic-ai/claude-code's engines.node (>=22).
const minNodeMajor = 22

// Packages installs the seed packages (unzip git jq nodejs docker by
// default) under the distribution's names, missing ones only, in one
// transaction. Real apt and dnf transactions are exercised by the e2e
// harness in booted guests; the unit tests drive a fake runner.
type Packages struct {
	// sleep waits between dnf lock retries; nil means a real timer.
	// Tests set it so they do not wait.
	sleep func(context.Context, time.Duration) error
}

// Name implements bootstrap.Step.
func (Packages) Name() string { return "packages" }

// Needs implements bootstrap.Step.
func (Packages) Needs() []string { return nil }

// Scope implements bootstrap.Step: the packages are the same on every instance of an image.
func (Packages) Scope() bootstrap.Scope { return bootstrap.ScopeImage }

// Check implements bootstrap.Step: one read of the package database (dpkg's
// status file directly on apt, one rpm query on dnf) decides what is missing.
func (p Packages) Check(ctx context.Context, env *bootstrap.Env) (bootstrap.Drift, error) {
	var d bootstrap.Drift
	pl, err := p.plan(ctx, env)
	if err != nil {
		return d, err
	}
	d.Notes = pl.notes
	if len(pl.interrupted) > 0 {
		d.Differ("finish an interrupted dpkg run (dpkg --configure -a): %s", summarize(pl.interrupted, 5))
	}
	if len(pl.install) > 0 {
		d.Differ("install %s (%s)", strings.Join(pl.install, ", "), pl.family)
	}
	if pl.nodeAlt != "" && (len(pl.install) > 0 || pl.altMissing) {
		d.Differ("point node and npm at %s (alternatives --set node %s)", pl.nodeAlt, pl.nodeAlt)
	}
	return d, nil
}

// Apply implements bootstrap.Step.
func (p Packages) Apply(ctx context.Context, env *bootstrap.Env) error {
	pl, err := p.plan(ctx, env)
	if err != nil {
		return err
	}
	if len(pl.interrupted) > 0 {
		// A run killed inside dpkg (power loss, OOM, systemctl kill) leaves
		// packages unpacked but not configured; apt refuses every install
		// until dpkg has finished them.
		if err := dpkgFinish(ctx, env); err != nil {
			return err
		}
	}
	if len(pl.install) > 0 {
		env.Progress("installing " + strings.Join(pl.install, ", "))
		switch pl.family {
		case familyApt:
			err = aptInstall(ctx, env, pl.install, pl.optional)
		default:
			err = p.dnfInstall(ctx, env, pl.install)
		}
		if err != nil {
			return err
		}
	}
	if pl.nodeAlt != "" && (len(pl.install) > 0 || pl.altMissing) {
		// AL2023's node/npm are alternatives links; with equal priorities the
		// first Node.js installed wins, which may be an older one. Pin ours.
		c := env.InRoot(runner.Cmd{Name: "alternatives", Args: []string{"--set", "node", pl.nodeAlt}})
		if _, err := env.Run.Run(ctx, c); err != nil {
			return fmt.Errorf("packages: %w; run `alternatives --config node` and pick %s", err, pl.nodeAlt)
		}
	}
	return nil
}

const (
	familyApt = "apt"
	familyDnf = "dnf"
)

// pkgPlan is what Check found and Apply acts on.
type pkgPlan struct {
	family  string
	install []string // distro package names, seed order, no duplicates
	// optional: names in install that the repositories may lack (the
	// rootless-docker step's tools): apt not knowing them drops them
	// from the transaction instead of failing it.
	optional   []string
	notes      []string
	nodeAlt    string // namespaced node to select with alternatives ("" none)
	altMissing bool   // nodeAlt's package is installed but node/npm do not resolve
	// interrupted: dpkg was killed mid-run (packages half-installed or
	// pending status updates); apt refuses to install until it is finished.
	interrupted []string
}

// addOptional adds names that the repositories may lack (pkgPlan.optional).
func (pl *pkgPlan) addOptional(names ...string) {
	for _, n := range names {
		if !slices.Contains(pl.install, n) {
			pl.install = append(pl.install, n)
			pl.optional = append(pl.optional, n)
		}
	}
}

func (pl *pkgPlan) add(names ...string) {
	for _, n := range names {
		if !slices.Contains(pl.install, n) {
			pl.install = append(pl.install, n)
		}
	}
}

func (p Packages) plan(ctx context.Context, env *bootstrap.Env) (pkgPlan, error) {
	osr, err := readOSRelease(env)
	if err != nil {
		return pkgPlan{}, err
	}
	family, err := osr.family()
	if err != nil {
		return pkgPlan{}, err
	}
	if family == familyApt {
		return planApt(ctx, env)
	}
	return planDnf(ctx, env, osr)
}

// osRelease is the part of /etc/os-release that picks the package manager.
type osRelease struct {
	ID        string
	IDLike    []string
	VersionID string
}

func readOSRelease(env *bootstrap.Env) (osRelease, error) {
	// Debian and Amazon Linux ship it as a link to ../usr/lib/os-release.
	data, err := env.Sys.ReadInfo("etc/os-release")
	if errors.Is(err, fs.ErrNotExist) {
		data, err = env.Sys.ReadInfo("usr/lib/os-release")
	}
	if err != nil {
		return osRelease{}, fmt.Errorf("packages: cannot tell the distribution: read %s: %w; set [steps] skip = packages to manage packages yourself", env.Sys.Path("etc/os-release"), err)
	}
	return parseOSRelease(data), nil
}

func parseOSRelease(data []byte) osRelease {
	var r osRelease
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		v = strings.Trim(v, `"'`)
		switch k {
		case "ID":
			r.ID = strings.ToLower(v)
		case "ID_LIKE":
			r.IDLike = strings.Fields(strings.ToLower(v))
		case "VERSION_ID":
			r.VersionID = v
		}
	}
	return r
}

var distroFamilies = map[string]string{
	"debian": familyApt, "ubuntu": familyApt,
	"amzn": familyDnf, "fedora": familyDnf, "rhel": familyDnf, "centos": familyDnf, "rocky": familyDnf, "almalinux": familyDnf,
}

// family picks apt or dnf from ID, then from ID_LIKE in order.
func (r osRelease) family() (string, error) {
	if r.ID == "amzn" && r.VersionID == "2" {
		return "", errors.New("packages: Amazon Linux 2 uses yum, which ccboot does not drive; use Amazon Linux 2023, or install the packages yourself and set [steps] skip = packages")
	}
	for _, id := range append([]string{r.ID}, r.IDLike...) {
		if f, ok := distroFamilies[id]; ok {
			return f, nil
		}
	}
	return "", fmt.Errorf("packages: unsupported distribution ID %q (ID_LIKE %q): ccboot drives apt (debian, ubuntu) and dnf (amzn, fedora, rhel, centos, rocky, almalinux); install the packages yourself and set [steps] skip = packages", r.ID, strings.Join(r.IDLike, " "))
}

// ---- apt ----

// dpkgPkg is one stanza of /var/lib/dpkg/status.
type dpkgPkg struct {
	Version   string
	Installed bool // Status: install ok installed
}

// dpkgDB is what is installed, including virtual packages installed ones provide.
type dpkgDB struct {
	pkgs     map[string]dpkgPkg
	provided map[string]bool
	// interrupted lists packages dpkg left in the middle of an install
	// (unpacked, half-installed, half-configured, triggers not run).
	interrupted []string
}

// dpkgMidway are the states (third word of Status) of a package whose
// install was started and not finished.
var dpkgMidway = map[string]bool{"half-installed": true, "unpacked": true, "half-configured": true, "triggers-awaited": true, "triggers-pending": true}

func (db dpkgDB) has(name string) bool { return db.pkgs[name].Installed || db.provided[name] }

// parseDpkgStatus reads dpkg's status file. Only "install ok installed"
// counts: half-installed, unpacked, config-files and deinstall states are
// packages apt still has to (re)install.
func parseDpkgStatus(data []byte) dpkgDB {
	db := dpkgDB{pkgs: map[string]dpkgPkg{}, provided: map[string]bool{}}
	var name, version, status string
	var provides []string
	flush := func() {
		if name != "" {
			installed := strings.Join(strings.Fields(status), " ") == "install ok installed"
			if f := strings.Fields(status); len(f) == 3 && (f[0] == "install" || f[0] == "hold") && dpkgMidway[f[2]] {
				db.interrupted = append(db.interrupted, name)
			}
			// Multi-arch packages appear once per architecture; any installed one counts.
			if prev := db.pkgs[name]; !prev.Installed {
				db.pkgs[name] = dpkgPkg{Version: version, Installed: installed}
			}
			if installed {
				for _, p := range provides {
					db.provided[p] = true
				}
			}
		}
		name, version, status, provides = "", "", "", nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // continuation of a multi-line field (Description, Conffiles)
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Package":
			name = v
		case "Version":
			version = v
		case "Status":
			status = v
		case "Provides":
			for _, f := range strings.Split(v, ",") {
				// "npm (= 10.8.2)" provides npm.
				if fs := strings.Fields(f); len(fs) > 0 {
					provides = append(provides, strings.SplitN(fs[0], ":", 2)[0])
				}
			}
		}
	}
	flush()
	return db
}

// aptWant maps a seed name to Debian's names: accept is the sets of
// packages any one of which satisfies the seed, install what to install.
func aptWant(seed string) (accept [][]string, install []string) {
	switch seed {
	case "docker":
		// docker-ce from Docker's own repository is as good as docker.io.
		return [][]string{{"docker.io"}, {"docker-ce"}}, []string{"docker.io"}
	}
	return [][]string{{seed}}, []string{seed}
}

// seedPackages is [packages] install, plus nftables in enforced mode: the
// imds-filter step loads its table with nft, and an image without it would
// leave IMDS open to the user.
func seedPackages(env *bootstrap.Env) []string {
	seeds := env.Config.Packages
	if env.Config.Enforced() && !slices.Contains(seeds, "nftables") {
		seeds = append(slices.Clone(seeds), "nftables")
	}
	return seeds
}

func planApt(ctx context.Context, env *bootstrap.Env) (pkgPlan, error) {
	pl := pkgPlan{family: familyApt}
	data, err := env.Sys.ReadInfo("var/lib/dpkg/status")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return pl, fmt.Errorf("packages: read %s: %w", env.Sys.Path("var/lib/dpkg/status"), err)
	}
	db := parseDpkgStatus(data)
	pl.interrupted = db.interrupted
	if len(pl.interrupted) == 0 && dpkgUpdatesPending(env) {
		pl.interrupted = []string{"pending status updates in /var/lib/dpkg/updates"}
	}
	for _, seed := range seedPackages(env) {
		accept, install := aptWant(seed)
		if !anySetInstalled(accept, db.has) {
			for _, n := range install {
				if !db.has(n) {
					pl.add(n)
				}
			}
		}
		if seed == "nodejs" {
			pl.notes = append(pl.notes, aptNodeNote(ctx, env, db)...)
		}
		if seed == "docker" && env.Config.Enforced() {
			pl.addOptional(aptOffered(ctx, env, db, rootlessAptPackages)...)
		}
	}
	return pl, nil
}

func anySetInstalled(sets [][]string, has func(string) bool) bool {
	for _, set := range sets {
		all := true
		for _, n := range set {
			all = all && has(n)
		}
		if all {
			return true
		}
	}
	return false
}

// aptNodeNote says when the Node.js apt installs (or installed) is older than
// Claude Code's engines.node. It is only a note: claude-code 2.x ships a
// native binary and installs with an EBADENGINE warning.
func aptNodeNote(ctx context.Context, env *bootstrap.Env, db dpkgDB) []string {
	version, what := db.pkgs["nodejs"].Version, "installed"
	if !db.pkgs["nodejs"].Installed {
		// Only asked when nodejs is about to be installed, so a no-op
		// Check spawns no process.
		// Empty cache file names keep apt-cache from writing its binary
		// caches: Check (and so plan) must not write into the root.
		res, err := env.Run.Run(ctx, env.InRoot(runner.Cmd{Name: "apt-cache", Args: []string{"-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=", "policy", "nodejs"}}))
		if err != nil {
			return nil
		}
		version, what = aptCandidate(res.Stdout), "apt candidate"
	}
	major, ok := debMajor(version)
	if !ok || major >= minNodeMajor {
		return nil
	}
	return []string{fmt.Sprintf("Node.js %s (%s) is older than %d; MCP servers started with npx may need a newer one", version, what, minNodeMajor)}
}

// aptOffered returns the names of want that are not installed and that
// apt may install: all of them when there are no package lists yet (the
// first install refreshes them and drops what is still unknown), else those
// with a candidate. So a repository without them (the e2e image's, a
// trimmed mirror) neither fails the transaction nor shows as drift at
// every repair; the rootless-docker step then says what is missing.
func aptOffered(ctx context.Context, env *bootstrap.Env, db dpkgDB, want []string) []string {
	var missing []string
	for _, n := range want {
		if !db.has(n) {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 || !aptListsPresent(env) {
		return missing
	}
	args := append([]string{"-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=", "policy"}, missing...)
	res, err := env.Run.Run(ctx, env.InRoot(runner.Cmd{Name: "apt-cache", Args: args}))
	if err != nil {
		return nil
	}
	candidates := aptCandidates(res.Stdout)
	var offered []string
	for _, n := range missing {
		if candidates[n] {
			offered = append(offered, n)
		}
	}
	return offered
}

// aptCandidates reads which packages of an `apt-cache policy A B ...`
// answer have a candidate: each block starts with "NAME:" unindented.
func aptCandidates(out []byte) map[string]bool {
	has, name := map[string]bool{}, ""
	for _, line := range strings.Split(string(out), "\n") {
		if line != "" && line[0] != ' ' && strings.HasSuffix(line, ":") {
			name = strings.TrimSuffix(line, ":")
			continue
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Candidate:"); ok && name != "" {
			has[name] = strings.TrimSpace(v) != "(none)"
		}
	}
	return has
}

// aptCandidate reads "Candidate: X" from apt-cache policy output.
func aptCandidate(out []byte) string {
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Candidate:"); ok {
			if v = strings.TrimSpace(v); v != "(none)" {
				return v
			}
		}
	}
	return ""
}

var leadingDigits = regexp.MustCompile(`^[0-9]+`)

// debMajor is the major version of a Debian or RPM version string
// ("1:18.19.0+dfsg-6~deb12u2" -> 18).
func debMajor(v string) (int, bool) {
	if _, rest, ok := strings.Cut(v, ":"); ok {
		v = rest
	}
	n, err := strconv.Atoi(leadingDigits.FindString(v))
	return n, err == nil
}

// aptLockOpt makes apt wait for dpkg's frontend lock instead of failing.
func aptLockOpt(env *bootstrap.Env) []string {
	secs := int(env.Config.PackageLockTimeout / time.Second)
	return []string{"-o", "DPkg::Lock::Timeout=" + strconv.Itoa(secs)}
}

var aptEnv = []string{"DEBIAN_FRONTEND=noninteractive"}

// dpkgUpdatesPending reports whether dpkg has status updates it never
// merged (files in /var/lib/dpkg/updates): what makes apt say "dpkg was
// interrupted".
func dpkgUpdatesPending(env *bootstrap.Env) bool {
	f, err := env.Sys.OpenFile("var/lib/dpkg/updates", os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	for _, n := range names {
		if n != "tmp.i" && !strings.HasPrefix(n, ".") {
			return true
		}
	}
	return false
}

// dpkgFinish completes what a killed dpkg left: configure what was
// unpacked, then let apt fix what was only half unpacked.
func dpkgFinish(ctx context.Context, env *bootstrap.Env) error {
	env.Progress("finishing an interrupted dpkg run")
	conf := []string{"--force-confdef", "--force-confold", "--configure", "-a"}
	if _, err := env.Run.Run(ctx, env.InRoot(runner.Cmd{Name: "dpkg", Args: conf, Env: aptEnv})); err != nil {
		return fmt.Errorf("packages: finish the interrupted dpkg run: dpkg --configure -a: %w; run it by hand and read its errors", err)
	}
	args := append([]string{"install", "-y", "--fix-broken", "--no-install-recommends",
		"-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"}, aptLockOpt(env)...)
	if _, err := env.Run.Run(ctx, env.InRoot(runner.Cmd{Name: "apt-get", Args: args, Env: aptEnv})); err != nil {
		return fmt.Errorf("packages: finish the interrupted dpkg run: apt-get install --fix-broken: %w; run `apt-get -f install` by hand", err)
	}
	return nil
}

// summarize lists up to n names and says how many more there are.
func summarize(names []string, n int) string {
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}

func aptInstall(ctx context.Context, env *bootstrap.Env, pkgs, optional []string) error {
	updated := false
	if !aptListsPresent(env) {
		if err := aptUpdate(ctx, env); err != nil {
			return err
		}
		updated = true
	}
	args := append([]string{"install", "-y", "--no-install-recommends",
		"-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"}, aptLockOpt(env)...)
	for {
		install := env.InRoot(runner.Cmd{Name: "apt-get", Args: append(slices.Clone(args), pkgs...), Env: aptEnv})
		res, err := env.Run.Run(ctx, install)
		if err == nil {
			return nil
		}
		out := string(res.Stdout) + "\n" + string(res.Stderr)
		missing := aptUnknown(out)
		if len(missing) > 0 && !updated {
			// Stale lists: refresh once and retry once.
			if err := aptUpdate(ctx, env); err != nil {
				return err
			}
			updated = true
			continue
		}
		if len(missing) > 0 && len(optional) > 0 && !slices.ContainsFunc(missing, func(n string) bool { return !slices.Contains(optional, n) }) {
			// Only optional names are unknown even to fresh lists: go
			// on without them (the step that wanted them says so).
			pkgs = slices.DeleteFunc(pkgs, func(n string) bool { return slices.Contains(missing, n) })
			optional = nil
			if len(pkgs) == 0 {
				return nil
			}
			continue
		}
		if len(missing) > 0 {
			return fmt.Errorf("packages: apt has no package %s; fix [packages] install or the apt sources", strings.Join(missing, ", "))
		}
		if lock := aptLockHeld.FindString(out); lock != "" {
			return fmt.Errorf("packages: %s (waited %s); wait for it to finish or raise [packages] lock_timeout", lock, env.Config.PackageLockTimeout)
		}
		return fmt.Errorf("packages: install %s: %w", strings.Join(pkgs, ", "), err)
	}
}

func aptUpdate(ctx context.Context, env *bootstrap.Env) error {
	env.Progress("refreshing apt package lists")
	c := env.InRoot(runner.Cmd{Name: "apt-get", Args: append([]string{"update"}, aptLockOpt(env)...), Env: aptEnv})
	if res, err := env.Run.Run(ctx, c); err != nil {
		// At first boot the lock is usually cloud-init's or
		// unattended-upgrades' apt: not a network problem.
		if lock := aptLockHeld.FindString(string(res.Stdout) + "\n" + string(res.Stderr)); lock != "" {
			return fmt.Errorf("packages: apt-get update: %s (waited %s); wait for it to finish or raise [packages] lock_timeout", lock, env.Config.PackageLockTimeout)
		}
		return fmt.Errorf("packages: apt-get update: %w; check the network and the apt sources", err)
	}
	return nil
}

var (
	aptUnableToLocate = regexp.MustCompile(`Unable to locate package (\S+)`)
	aptNoCandidate    = regexp.MustCompile(`Package '([^']+)' has no installation candidate`)
	aptLockHeld       = regexp.MustCompile(`Could not get lock [^\n]*`)
)

// aptUnknown lists the package names apt said it cannot find.
func aptUnknown(out string) []string {
	var names []string
	for _, re := range []*regexp.Regexp{aptUnableToLocate, aptNoCandidate} {
		for _, m := range re.FindAllStringSubmatch(out, -1) {
			if !slices.Contains(names, m[1]) {
				names = append(names, m[1])
			}
		}
	}
	return names
}

// aptListsPresent reports whether apt has package lists (a fresh cloud
// image often ships none, so install would find nothing).
func aptListsPresent(env *bootstrap.Env) bool {
	f, err := env.Sys.OpenFile("var/lib/apt/lists", os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	for _, n := range names {
		if strings.Contains(n, "_Packages") {
			return true
		}
	}
	return false
}

// ---- dnf ----

// rpmDB is one rpm query's answer: capabilities nobody provides, and the
// name and version of every package that answered.
type rpmDB struct {
	missing  map[string]bool
	versions map[string]string
}

func (db rpmDB) has(capability string) bool { return !db.missing[capability] }

var rpmNoProvider = regexp.MustCompile(`^no package provides (\S+)$`)

// parseRPMQuery reads `rpm -q --whatprovides --qf '%{NAME} %{VERSION}\n'`.
// rpm exits non-zero when something is missing, so stdout is the answer.
func parseRPMQuery(out []byte) rpmDB {
	db := rpmDB{missing: map[string]bool{}, versions: map[string]string{}}
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if m := rpmNoProvider.FindStringSubmatch(line); m != nil {
			db.missing[m[1]] = true
			continue
		}
		if f := strings.Fields(line); len(f) == 2 {
			db.versions[f[0]] = f[1]
		}
	}
	return db
}

// nodeNamespaced are AL2023's Node.js streams new enough for Claude Code,
// preferred first. They install node-N/npm-N and register alternatives.
var nodeNamespaced = []string{"nodejs22", "nodejs24"}

func planDnf(ctx context.Context, env *bootstrap.Env, osr osRelease) (pkgPlan, error) {
	pl := pkgPlan{family: familyDnf}
	var caps []string
	for _, seed := range seedPackages(env) {
		if seed == "nodejs" {
			// Node.js only: Claude Code needs no npm; add npm to
			// [packages] install for MCP servers started with npx.
			caps = append(caps, "nodejs")
			caps = append(caps, nodeNamespaced...)
			continue
		}
		caps = append(caps, seed)
	}
	args := []string{"-q", "--whatprovides", "--qf", `%{NAME} %{VERSION}\n`}
	if !env.Live() {
		args = append(args, "--root", env.Root)
	}
	res, err := env.Run.Run(ctx, runner.Cmd{Name: "rpm", Args: append(args, caps...)})
	var exit *runner.ExitError
	if err != nil && !errors.As(err, &exit) {
		return pl, fmt.Errorf("packages: query the rpm database: %w", err)
	}
	db := parseRPMQuery(res.Stdout)
	if err != nil && len(db.missing) == 0 {
		return pl, fmt.Errorf("packages: query the rpm database: %w", err)
	}
	for _, seed := range seedPackages(env) {
		if seed != "nodejs" {
			if !db.has(seed) {
				pl.add(seed)
			}
			continue
		}
		if err := planDnfNode(ctx, env, osr, db, &pl); err != nil {
			return pl, err
		}
	}
	return pl, nil
}

// planDnfNode picks a Node.js satisfying Claude Code's engines.node: an
// installed namespaced stream, else nodejs22 when the repositories have it
// (AL2023), else plain nodejs with a note.
func planDnfNode(ctx context.Context, env *bootstrap.Env, osr osRelease, db rpmDB, pl *pkgPlan) error {
	for _, n := range nodeNamespaced {
		if db.has(n) {
			alt := "/usr/bin/node-" + strings.TrimPrefix(n, "nodejs")
			if !nodeResolves(env) {
				pl.nodeAlt, pl.altMissing = alt, true
			}
			return nil
		}
	}
	plainMajor, plainOK := debMajor(db.versions["nodejs"])
	plain := db.has("nodejs")
	if plain && plainOK && plainMajor >= minNodeMajor {
		return nil
	}
	if osr.ID == "amzn" {
		avail, err := dnfAvailable(ctx, env, "nodejs22")
		if err != nil {
			return err
		}
		if avail["nodejs22"] {
			if !db.has("nodejs22") {
				pl.add("nodejs22")
			}
			pl.nodeAlt = "/usr/bin/node-22"
			return nil
		}
	}
	if !plain {
		pl.add("nodejs")
	}
	if v := db.versions["nodejs"]; v != "" {
		pl.notes = append(pl.notes, fmt.Sprintf("no Node.js >= %d available from the configured repositories; installed nodejs %s", minNodeMajor, v))
	} else {
		pl.notes = append(pl.notes, fmt.Sprintf("no Node.js >= %d available from the configured repositories; installing plain nodejs (Claude Code warns EBADENGINE)", minNodeMajor))
	}
	return nil
}

// nodeResolves reports whether /usr/bin/node exists (on
// AL2023 they are alternatives links, absent until a stream is selected).
func nodeResolves(env *bootstrap.Env) bool {
	ok, _ := env.Sys.Exists("usr/bin/node")
	return ok
}

// dnfAvailable asks the repositories, in one query, which of names they offer.
func dnfAvailable(ctx context.Context, env *bootstrap.Env, names ...string) (map[string]bool, error) {
	args := dnfGlobalArgs(env)
	args = append(args, "repoquery", "--quiet", "--qf", `%{name}\n`)
	res, err := env.Run.Run(ctx, runner.Cmd{Name: "dnf", Args: append(args, names...)})
	if err != nil {
		return nil, fmt.Errorf("packages: ask the dnf repositories for %s: %w; check the network and /etc/yum.repos.d", strings.Join(names, ", "), err)
	}
	avail := map[string]bool{}
	for _, f := range strings.Fields(string(res.Stdout)) {
		avail[f] = true
	}
	return avail, nil
}

func dnfGlobalArgs(env *bootstrap.Env) []string {
	if env.Live() {
		return nil
	}
	return []string{"--installroot", env.Root}
}

var (
	dnfNoMatch = regexp.MustCompile(`No match for argument: (\S+)`)
	// dnf4 with exit_on_lock: "RPMDB already locked by 1234"; dnf5 fails
	// with "Failed to obtain rpm transaction lock".
	dnfLocked = regexp.MustCompile(`(\S+) already locked by (\d+)|Failed to obtain rpm transaction lock|another copy is running as pid (\d+)`)
)

func (p Packages) dnfInstall(ctx context.Context, env *bootstrap.Env, pkgs []string) error {
	args := dnfGlobalArgs(env)
	args = append(args, "install", "-y", "--setopt=install_weak_deps=False")
	if ok, _ := env.Sys.Exists("usr/bin/dnf5"); !ok {
		// dnf4 otherwise waits for its lock forever; ccboot bounds the wait
		// itself with [packages] lock_timeout. dnf5 has no such option (it
		// fails at once on a held lock) and rejects unknown ones.
		args = append(args, "--setopt=exit_on_lock=True")
	}
	cmd := runner.Cmd{Name: "dnf", Args: append(args, pkgs...)}
	// The bound counts time spent waiting, not wall time, so the install
	// itself (minutes on a slow mirror) never counts against it.
	var waited time.Duration
	wait := time.Second
	for {
		res, err := env.Run.Run(ctx, cmd)
		if err == nil {
			return nil
		}
		out := string(res.Stdout) + "\n" + string(res.Stderr)
		var missing []string
		for _, m := range dnfNoMatch.FindAllStringSubmatch(out, -1) {
			if !slices.Contains(missing, m[1]) {
				missing = append(missing, m[1])
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("packages: dnf has no package %s; fix [packages] install or the repositories in /etc/yum.repos.d", strings.Join(missing, ", "))
		}
		m := dnfLocked.FindStringSubmatch(out)
		if m == nil {
			return fmt.Errorf("packages: install %s: %w", strings.Join(pkgs, ", "), err)
		}
		if waited+wait > env.Config.PackageLockTimeout {
			return fmt.Errorf("packages: the dnf/rpm lock is still held%s after %s; wait for it to finish or raise [packages] lock_timeout", lockHolder(m), env.Config.PackageLockTimeout)
		}
		env.Progress("waiting for the package manager lock" + lockHolder(m))
		if err := p.wait(ctx, wait); err != nil {
			return fmt.Errorf("packages: waiting for the dnf lock: %w", err)
		}
		waited += wait
		wait = min(wait*2, 30*time.Second)
	}
}

func lockHolder(m []string) string {
	for _, pid := range []string{m[2], m[3]} {
		if pid != "" {
			return " by process " + pid
		}
	}
	return ""
}

func (p Packages) wait(ctx context.Context, d time.Duration) error {
	if p.sleep != nil {
		return p.sleep(ctx, d)
	}
	return sleepCtx(ctx, d)
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
