package steps

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/coreos/go-systemd/v22/unit"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
	"github.com/ccboot/ccboot/bootstrap/runner"
	"github.com/ccboot/ccboot/bootstrap/units"
)

// The enforced tiers' packet filter: its own nftables table, the file the
// table is loaded from, and the unit that loads it at every boot.
const (
	imdsFilterTable    = "ccboot_imds" // family inet: one table for IPv4 and IPv6
	imdsFilterChain    = "output"
	imdsFilterPath     = "etc/ccboot/imds-filter.nft"
	imdsFilterUnit     = "ccboot-imds-filter.service"
	imdsFilterUnitPath = "etc/systemd/system/" + imdsFilterUnit
	// imdsFilterWantsLink is what `systemctl enable` makes for
	// WantedBy=sysinit.target; advisory mode removes it without a process.
	imdsFilterWantsLink = "etc/systemd/system/sysinit.target.wants/" + imdsFilterUnit
	// nft is found through PATH like the other tools; the unit names it by
	// its path (/usr/sbin on Debian and Amazon Linux alike), as systemd wants.
	nft        = "nft"
	nftUnitBin = "/usr/sbin/nft"
)

// The metadata service's addresses (EC2 user guide, "Instance metadata
// service": IPv4 169.254.169.254, IPv6 [fd00:ec2::254] on Nitro instances
// where the IPv6 endpoint is enabled). The v6 rule is always loaded: it
// costs nothing where v6 IMDS is off, and nothing is left open when an
// admin turns it on later.
var imdsDefaultTargets = []imdsTarget{
	{netip.MustParseAddr("169.254.169.254"), 80},
	{netip.MustParseAddr("fd00:ec2::254"), 80},
}

// IMDSFilter lets only uid 0 reach the instance metadata service in
// [tiers] mode = enforced, so the instance role's credentials (from which
// both tiers are assumed) are root's alone. In advisory mode it does
// nothing, and removes what an earlier enforced run left (see Check).
//
// The rule follows AWS's EC2 user guide, "Limit access to the Instance
// Metadata Service": "you can consider only allowing access to particular
// users or groups, by using allow rules. Allow rules might be easier to
// manage from a security perspective, because they require you to make a
// decision about what software needs access to instance metadata." Its
// example is iptables' owner match, `--match owner ! --uid-owner ...
// --jump REJECT` in OUTPUT; nftables' `meta skuid` is the same match (the
// socket owner's uid) and nft is what both Debian 12 and Amazon Linux 2023
// ship for packet filtering.
type IMDSFilter struct{}

// Name implements bootstrap.Step.
func (IMDSFilter) Name() string { return "imds-filter" }

// Needs implements bootstrap.Step: nft comes from the nftables package; an
// image without it gets it through [packages] install.
func (IMDSFilter) Needs() []string { return []string{"packages"} }

// Scope implements bootstrap.Step: the rules file and the enabled unit
// belong in an image, so a baked image has the filter up at its first boot,
// before any login; loading it into the running kernel is the boot's job.
func (IMDSFilter) Scope() bootstrap.Scope { return bootstrap.ScopeImage }

// Check implements bootstrap.Step.
func (s IMDSFilter) Check(ctx context.Context, env *bootstrap.Env) (bootstrap.Drift, error) {
	return s.check(ctx, env, hostOf(env))
}

// Apply implements bootstrap.Step.
func (s IMDSFilter) Apply(ctx context.Context, env *bootstrap.Env) error {
	return s.apply(ctx, env, hostOf(env))
}

// imdsFilterPlan is what enforced mode converges: the rules file, the
// unit, and the targets the rules cover.
type imdsFilterPlan struct {
	rules, unit managedFile
	targets     []imdsTarget
}

func planIMDSFilter(env *bootstrap.Env) (imdsFilterPlan, error) {
	targets, err := imdsTargets(env.Config.IMDSEndpoint)
	if err != nil {
		return imdsFilterPlan{}, fmt.Errorf("imds-filter: %w", err)
	}
	spec := fsroot.FileSpec{Mode: 0o644, UID: 0, GID: 0}
	return imdsFilterPlan{
		rules:   managedFile{tree: env.Sys, name: imdsFilterPath, want: renderIMDSFilter(targets), spec: spec},
		unit:    managedFile{tree: env.Sys, name: imdsFilterUnitPath, want: IMDSFilterUnitFile(), spec: spec},
		targets: targets,
	}, nil
}

func (IMDSFilter) check(ctx context.Context, env *bootstrap.Env, h host) (bootstrap.Drift, error) {
	var d bootstrap.Drift
	if !env.Config.Enforced() {
		return d, checkAdvisoryLeftovers(env, &d)
	}
	p, err := planIMDSFilter(env)
	if err != nil {
		return d, err
	}
	for _, f := range []managedFile{p.rules, p.unit} {
		if err := f.drift(&d); err != nil {
			return d, fmt.Errorf("imds-filter: %w", err)
		}
	}
	mgr := units.New(h.root(env), env.Run)
	enabled, err := mgr.IsEnabled(ctx, imdsFilterUnit)
	switch {
	case errors.Is(err, units.ErrNoUnit):
		// Not written yet: the create above says so; enabling follows it.
		d.Differ("enable %s", imdsFilterUnit)
	case err != nil:
		return d, fmt.Errorf("imds-filter: %w", err)
	case !enabled:
		d.Differ("enable %s (it loads the filter at every boot)", imdsFilterUnit)
	}
	if !h.live || env.Baking {
		d.Note("the filter is loaded at boot by %s, before network-pre.target", imdsFilterUnit)
		return d, nil
	}
	live, err := liveIMDSFilter(ctx, env.Run)
	if err != nil {
		return d, fmt.Errorf("imds-filter: %w", err)
	}
	for _, line := range live.differences(p.targets) {
		d.Differ("%s", line)
	}
	return d, nil
}

func (IMDSFilter) apply(ctx context.Context, env *bootstrap.Env, h host) error {
	if !env.Config.Enforced() {
		return removeAdvisoryLeftovers(ctx, env, h)
	}
	p, err := planIMDSFilter(env)
	if err != nil {
		return err
	}
	dirSpec := fsroot.FileSpec{Mode: 0o755, UID: 0, GID: 0}
	for _, dir := range []string{"etc/ccboot", "etc/systemd/system"} {
		if _, err := env.Sys.EnsureDir(dir, dirSpec); err != nil {
			return fmt.Errorf("imds-filter: %w", err)
		}
	}
	if err := p.rules.write(); err != nil {
		return fmt.Errorf("imds-filter: %w", err)
	}
	unitChanged, err := env.Sys.WriteFile(p.unit.name, p.unit.want, p.unit.spec)
	if err != nil {
		return fmt.Errorf("imds-filter: %w", err)
	}
	mgr := units.New(h.root(env), env.Run)
	if unitChanged && h.live {
		if err := mgr.DaemonReload(ctx); err != nil {
			return fmt.Errorf("imds-filter: %w", err)
		}
	}
	if enabled, err := mgr.IsEnabled(ctx, imdsFilterUnit); err != nil || !enabled {
		if err := mgr.Enable(ctx, imdsFilterUnit); err != nil {
			return fmt.Errorf("imds-filter: enable %s: %w", imdsFilterUnit, err)
		}
	}
	if !h.live || env.Baking {
		return nil
	}
	// The same bytes the unit loads at boot, through stdin: what is loaded
	// is what was rendered, and nft replaces the table in one transaction.
	if err := loadIMDSFilter(ctx, env.Run, p.rules.want); err != nil {
		return fmt.Errorf("imds-filter: %w", err)
	}
	return nil
}

// Advisory mode lets the user reach IMDS: that is how its profiles get
// credentials (credential_source = Ec2InstanceMetadata). A filter left by
// an earlier enforced run would break them, so advisory removes ccboot's
// own files; it looks at files only and spawns nothing, so a default run
// costs what it cost before this step existed (and needs no nft).
func checkAdvisoryLeftovers(env *bootstrap.Env, d *bootstrap.Drift) error {
	found := false
	for _, name := range []string{imdsFilterUnitPath, imdsFilterWantsLink, imdsFilterPath} {
		if _, err := env.Sys.Lstat(name); err == nil {
			found = true
			d.Differ("remove %s (left by [tiers] mode = enforced; advisory lets the user reach IMDS)", env.Sys.Path(name))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("imds-filter: %w", err)
		}
	}
	if !found {
		d.Note("advisory: not enforced (set [tiers] mode = enforced to let only root reach IMDS)")
	}
	return nil
}

func removeAdvisoryLeftovers(ctx context.Context, env *bootstrap.Env, h host) error {
	unitFound := false
	for _, name := range []string{imdsFilterWantsLink, imdsFilterUnitPath, imdsFilterPath} {
		_, err := env.Sys.Lstat(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err == nil:
			err = env.Sys.Remove(name) // the link itself, never what it points to
		}
		if err != nil {
			return fmt.Errorf("imds-filter: remove %s: %w", env.Sys.Path(name), err)
		}
		unitFound = unitFound || name == imdsFilterUnitPath
	}
	if !h.live || !unitFound {
		return nil
	}
	if err := units.New("/", env.Run).DaemonReload(ctx); err != nil {
		return fmt.Errorf("imds-filter: %w", err)
	}
	_, err := env.Run.Run(ctx, runner.Cmd{Name: nft, Args: []string{"delete", "table", "inet", imdsFilterTable}})
	if err != nil && !noSuchTable(err) {
		return fmt.Errorf("imds-filter: unload the filter: %w", err)
	}
	return nil
}

// imdsTarget is one address:port only root may connect to.
type imdsTarget struct {
	addr netip.Addr
	port uint16
}

// imdsTargets are the metadata service's addresses, plus the configured
// [ccboot] imds_endpoint when it points elsewhere (root's own config; the
// tests put IMDS on loopback and prove the filter there).
func imdsTargets(endpoint string) ([]imdsTarget, error) {
	targets := slices.Clone(imdsDefaultTargets)
	if endpoint == "" {
		return targets, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("[ccboot] imds_endpoint %q: %w", endpoint, err)
	}
	addr, err := netip.ParseAddr(u.Hostname())
	if err != nil || addr.Zone() != "" {
		return nil, fmt.Errorf("[ccboot] imds_endpoint %q: the packet filter needs an IP address, not the name %q; give the endpoint as an IP (e.g. http://169.254.169.254) or set [tiers] mode = advisory", endpoint, u.Hostname())
	}
	port := uint16(80)
	if u.Scheme == "https" {
		port = 443
	}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("[ccboot] imds_endpoint %q: port %q is not 1-65535", endpoint, p)
		}
		port = uint16(n)
	}
	t := imdsTarget{addr.Unmap(), port}
	if !slices.Contains(targets, t) {
		targets = append(targets, t)
	}
	return targets, nil
}

// rule is the nft rule text for t; nftRuleText renders the live ruleset's
// JSON in the same words, so the two compare as strings.
func (t imdsTarget) rule() string {
	family := "ip"
	if t.addr.Is6() {
		family = "ip6"
	}
	return fmt.Sprintf("%s daddr %s tcp dport %d meta skuid != 0 reject with tcp reset", family, t.addr, t.port)
}

// renderIMDSFilter is the rules file. "table; delete table; table {...}"
// makes one nft transaction that replaces ccboot's table whether or not it
// was loaded, and touches no other table. A reject in any base chain is
// final in nftables (another table's accept does not undo it). A TCP reset
// gives a refused caller an immediate "connection refused", not a timeout.
func renderIMDSFilter(targets []imdsTarget) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "#!%s -f\n", nftUnitBin)
	b.WriteString("# Written by ccboot (imds-filter, [tiers] mode = enforced); rewritten by it.\n")
	b.WriteString("# Only root may reach the instance metadata service and its credentials.\n")
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\n", imdsFilterTable, imdsFilterTable)
	fmt.Fprintf(&b, "table inet %s {\n\tchain %s {\n\t\ttype filter hook output priority filter; policy accept;\n", imdsFilterTable, imdsFilterChain)
	for _, t := range targets {
		fmt.Fprintf(&b, "\t\t%s\n", t.rule())
	}
	b.WriteString("\t}\n}\n")
	return b.Bytes()
}

// IMDSFilterUnitFile renders ccboot-imds-filter.service; the checked-in
// packaging/systemd copy must equal it (TestIMDSFilterUnitFileMatches).
//
// Ordering follows Debian's and Fedora's own nftables.service: no default
// dependencies (they would order it after sysinit.target, too late),
// Before= and Wants= network-pre.target so no interface is configured
// before the filter is in, and WantedBy=sysinit.target so every boot
// target, rescue too, pulls it in; logins (systemd-user-sessions.service,
// after network.target) come later still. Never after
// network-online.target: that is what ccboot.service waits for. After
// nftables.service because that unit starts with `flush ruleset`, which
// would drop ccboot's table if it ran second. No ExecStop: stopping the
// unit must not open the door; ccboot's advisory mode removes the table.
func IMDSFilterUnitFile() []byte {
	opts := []*unit.UnitOption{
		unit.NewUnitOption("Unit", "Description", "ccboot: only root reaches the instance metadata service (enforced tiers)"),
		unit.NewUnitOption("Unit", "Documentation", "https://github.com/ccboot/ccboot"),
		unit.NewUnitOption("Unit", "DefaultDependencies", "no"),
		unit.NewUnitOption("Unit", "Wants", "network-pre.target"),
		unit.NewUnitOption("Unit", "Before", "network-pre.target shutdown.target"),
		unit.NewUnitOption("Unit", "After", "local-fs.target nftables.service"),
		unit.NewUnitOption("Unit", "Conflicts", "shutdown.target"),
		unit.NewUnitOption("Service", "Type", "oneshot"),
		unit.NewUnitOption("Service", "RemainAfterExit", "yes"),
		unit.NewUnitOption("Service", "ExecStart", nftUnitBin+" -f /"+imdsFilterPath),
		unit.NewUnitOption("Install", "WantedBy", "sysinit.target"),
	}
	var b bytes.Buffer
	b.WriteString("# Written by ccboot ([tiers] mode = enforced); rewritten by it.\n")
	_, _ = io.Copy(&b, unit.Serialize(opts))
	return b.Bytes()
}

// loadIMDSFilter loads rules into the running kernel (nft -f - reads stdin).
func loadIMDSFilter(ctx context.Context, run runner.Runner, rules []byte) error {
	if _, err := run.Run(ctx, runner.Cmd{Name: nft, Args: []string{"-f", "-"}, Stdin: rules}); err != nil {
		return fmt.Errorf("load the filter: %w%s", err, nftMissingHint(err))
	}
	return nil
}

// nftMissingHint is the fix when nft itself is missing.
func nftMissingHint(err error) string {
	var exit *runner.ExitError
	if errors.As(err, &exit) {
		return ""
	}
	return "; enforced tiers need nftables: add nftables to [packages] install, or set [tiers] mode = advisory"
}

// noSuchTable: nft's answer for a table that is not loaded.
func noSuchTable(err error) bool {
	var exit *runner.ExitError
	return errors.As(err, &exit) && strings.Contains(exit.Stderr, "No such file or directory")
}

// liveFilter is ccboot's table as the running kernel has it.
type liveFilter struct {
	loaded bool
	chain  *nftChain // nil: no chain named output
	rules  []string  // nftRuleText of each rule in the chain
}

// liveIMDSFilter reads ccboot's table with `nft -j`, whose JSON (libnftables'
// documented schema, nft's own -j output) is parsed, not grepped.
func liveIMDSFilter(ctx context.Context, run runner.Runner) (liveFilter, error) {
	res, err := run.Run(ctx, runner.Cmd{Name: nft, Args: []string{"-j", "list", "table", "inet", imdsFilterTable}})
	switch {
	case noSuchTable(err):
		return liveFilter{}, nil
	case err != nil:
		return liveFilter{}, fmt.Errorf("read the loaded filter: %w%s", err, nftMissingHint(err))
	}
	return parseNftTable(res.Stdout)
}

type nftChain struct {
	Family string `json:"family"`
	Table  string `json:"table"`
	Name   string `json:"name"`
	Type   string `json:"type"`
	Hook   string `json:"hook"`
	Prio   int    `json:"prio"`
	Policy string `json:"policy"`
}

type nftRule struct {
	Family string            `json:"family"`
	Table  string            `json:"table"`
	Chain  string            `json:"chain"`
	Expr   []json.RawMessage `json:"expr"`
}

func parseNftTable(data []byte) (liveFilter, error) {
	var doc struct {
		Nftables []struct {
			Table *struct{ Name string } `json:"table"`
			Chain *nftChain              `json:"chain"`
			Rule  *nftRule               `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return liveFilter{}, fmt.Errorf("read the loaded filter: nft -j printed something that is not its JSON: %w", err)
	}
	var f liveFilter
	for _, o := range doc.Nftables {
		switch {
		case o.Table != nil && o.Table.Name == imdsFilterTable:
			f.loaded = true
		case o.Chain != nil && o.Chain.Table == imdsFilterTable && o.Chain.Name == imdsFilterChain:
			f.chain = o.Chain
		case o.Rule != nil && o.Rule.Table == imdsFilterTable && o.Rule.Chain == imdsFilterChain:
			f.rules = append(f.rules, nftRuleText(o.Rule.Expr))
		}
	}
	return f, nil
}

// nftRuleText renders a rule's JSON expressions in the words of
// imdsTarget.rule, for the one shape ccboot writes (address, port, owner,
// reject); anything else comes back as "unrecognised rule", which no
// wanted rule equals.
func nftRuleText(exprs []json.RawMessage) string {
	type match struct {
		Op   string `json:"op"`
		Left struct {
			Payload *struct{ Protocol, Field string } `json:"payload"`
			Meta    *struct{ Key string }             `json:"meta"`
		} `json:"left"`
		Right json.RawMessage `json:"right"`
	}
	var words []string
	for _, raw := range exprs {
		var e struct {
			Match  *match                 `json:"match"`
			Reject *struct{ Type string } `json:"reject"`
		}
		if err := json.Unmarshal(raw, &e); err != nil {
			return "unrecognised rule"
		}
		var right any
		switch {
		case e.Match != nil && json.Unmarshal(e.Match.Right, &right) == nil:
			op := ""
			if e.Match.Op != "==" {
				op = e.Match.Op + " "
			}
			switch l := e.Match.Left; {
			case l.Payload != nil:
				words = append(words, fmt.Sprintf("%s %s %s%v", l.Payload.Protocol, l.Payload.Field, op, right))
			case l.Meta != nil:
				words = append(words, fmt.Sprintf("meta %s %s%v", l.Meta.Key, op, right))
			default:
				return "unrecognised rule"
			}
		case e.Reject != nil:
			words = append(words, "reject with "+e.Reject.Type)
		default:
			return "unrecognised rule"
		}
	}
	return strings.Join(words, " ")
}

// differences says how the loaded filter differs from the wanted one, one
// line each; Apply reloads the whole table for any of them.
func (f liveFilter) differences(targets []imdsTarget) []string {
	if !f.loaded {
		return []string{fmt.Sprintf("load the filter (table inet %s is not loaded: every user can reach IMDS)", imdsFilterTable)}
	}
	var out []string
	c := f.chain
	if c == nil || c.Type != "filter" || c.Hook != "output" || c.Policy != "accept" {
		out = append(out, fmt.Sprintf("reload the filter (chain %s of table inet %s is not a filter chain on the output hook)", imdsFilterChain, imdsFilterTable))
	}
	want := make([]string, len(targets))
	for i, t := range targets {
		want[i] = t.rule()
		if !slices.Contains(f.rules, want[i]) {
			out = append(out, fmt.Sprintf("reload the filter (rule missing: %s)", want[i]))
		}
	}
	for _, r := range f.rules {
		if !slices.Contains(want, r) {
			out = append(out, fmt.Sprintf("reload the filter (rule not ccboot's: %s)", r))
		}
	}
	return out
}
