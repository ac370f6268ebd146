// Command ccboot prepares an EC2 instance for Claude Code on Amazon Bedrock:
// packages, Claude Code, docker group, swap, profile.d, ~/.aws/config and
// aliases, each converged idempotently. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/broker"
	"github.com/ccboot/ccboot/bootstrap/doctor"
	"github.com/ccboot/ccboot/steps"
)

// Stamped at release build time (-ldflags -X).
var (
	version = "dev"
	commit  = "unknown"
)

// Exit codes. status uses 0/1/2 the same way as the converging commands.
const (
	exitOK      = 0
	exitFailed  = 1
	exitPending = 2 // drift found, changes pending, or no finished run yet
	exitUsage   = 3 // bad flags or config: nothing was run
)

const usage = `ccboot prepares this instance for Claude Code on Amazon Bedrock.

Usage: ccboot <command> [flags]

Commands:
  run       converge every step (steps already converged on this instance are left alone)
  repair    converge every step, re-checking all of them (for SSM Run Command)
  plan      show what run would change; exit 2 when changes are pending
  status    show the last run; --check also looks for drift; --wait blocks until a run finished
  doctor    check live that Claude Code can work here: IMDS credentials, both profiles via STS, the model
  install   install ccboot as a systemd unit and run it (UserData)
  bake      build an image: converge the image steps and install ccboot, no IMDS, nothing of the instance
  elevate   approve Elevated for one session and start it (root; enforced tiers)
  credentials  print a tier's credentials from the credential broker (credential_process)
  broker    serve the credential broker (ccboot-broker.service)
  version   print the version

Run 'ccboot <command> --help' for the flags of a command.
Exit codes: 0 ok, 1 failed (doctor: a check failed), 2 drift or pending, 3 bad flags or config.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	// Errors and diffs can quote users' files: no raw control character
	// reaches the terminal, whichever path a message takes.
	stdout, stderr = bootstrap.PrintableWriter(stdout), bootstrap.PrintableWriter(stderr)
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		return converge(ctx, bootstrap.ModeRun, rest, stdout, stderr)
	case "repair":
		return converge(ctx, bootstrap.ModeRepair, rest, stdout, stderr)
	case "plan":
		return converge(ctx, bootstrap.ModePlan, rest, stdout, stderr)
	case "status":
		return status(ctx, rest, stdout, stderr)
	case "doctor":
		return doctorCmd(ctx, rest, stdout, stderr)
	case "install":
		return install(ctx, rest, stdout, stderr)
	case "bake":
		return bake(ctx, rest, stdout, stderr)
	case "elevate":
		return elevate(ctx, rest, stdout, stderr)
	case "credentials":
		return credentialsCmd(ctx, rest, stdout, stderr)
	case "broker":
		return brokerCmd(ctx, rest, stdout, stderr)
	case doctor.ProbeCommand: // hidden: doctor's child as the target user
		return doctor.ProbeMain(ctx, rest, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "ccboot %s (commit %s, %s %s/%s)\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "ccboot: unknown command %q; run 'ccboot help' for the list\n", cmd)
		return exitUsage
	}
}

// commonFlags are the flags every command that reads the config takes.
type commonFlags struct {
	root, config      string
	sets              multiFlag
	skip, only        string
	imds, user, model string
	region, swapSize  string
	verbose           bool
	readOnly          bool // plan, status: no log file, nothing written
	bake              bool // bake: no IMDS, no log file, image steps only
	verify            bool // repair --verify
	fs                *flag.FlagSet
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func newFlags(name, summary string, stderr io.Writer) *commonFlags {
	c := &commonFlags{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	fs := c.fs
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: ccboot %s [flags]\n\n%s\n\nFlags:\n", name, summary)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.root, "root", "/", "bootstrap the system in `DIR` instead of this one (offline image mode: nothing is activated)")
	fs.StringVar(&c.config, "config", bootstrap.DefaultConfigPath, "config `file`, inside --root")
	fs.Var(&c.sets, "set", "override a config key, `section.key=value` (repeatable)")
	fs.StringVar(&c.skip, "skip", "", "comma-separated `steps` not to run")
	fs.StringVar(&c.only, "only", "", "comma-separated `steps` to run, no others")
	fs.StringVar(&c.imds, "imds-endpoint", "", "IMDS endpoint `URL` (same as --set ccboot.imds_endpoint=URL)")
	fs.StringVar(&c.user, "user", "", "target `user` (same as --set ccboot.user=...)")
	fs.StringVar(&c.model, "model", "", "Bedrock model `ID` (same as --set bedrock.model=...)")
	fs.StringVar(&c.region, "region", "", "AWS `region` instead of the instance's (same as --set aws.region=...)")
	fs.StringVar(&c.swapSize, "swap-size", "", "swap file `size`, e.g. 512M, or off (same as --set swap.size=...)")
	fs.BoolVar(&c.verbose, "v", false, "debug logging in the log file")
	return c
}

// parse reads args; ok is false with the exit code to use when it did not parse.
func (c *commonFlags) parse(args []string) (code int, ok bool) {
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if c.fs.NArg() > 0 {
		fmt.Fprintf(c.fs.Output(), "ccboot %s: unexpected argument %q; flags go before nothing else\n", c.fs.Name(), c.fs.Arg(0))
		return exitUsage, false
	}
	return 0, true
}

func (c *commonFlags) options(stdout io.Writer) bootstrap.Options {
	// The shortcuts are --set under another name: the config loader checks
	// them with the rest, and a key given by both is an error.
	sets := append([]string(nil), c.sets...)
	for _, f := range []struct{ key, v string }{
		{"ccboot.imds_endpoint", c.imds}, {"ccboot.user", c.user}, {"bedrock.model", c.model},
		{"aws.region", c.region}, {"swap.size", c.swapSize},
	} {
		if f.v != "" {
			sets = append(sets, f.key+"="+f.v)
		}
	}
	// Under systemd (ccboot.service), stdout is the journal: log JSON lines
	// there. A child of some other service (SSM agent, cloud-init) prints
	// its report like in a terminal.
	underSystemd := stdoutIsJournal(os.Stdout, os.Getenv("JOURNAL_STREAM"))
	return bootstrap.Options{
		Root: c.root, ConfigPath: c.config, Sets: sets,
		Skip: splitCSV(c.skip), Only: splitCSV(c.only),
		Steps: steps.All(), Version: version,
		Journal: underSystemd, Verbose: c.verbose, Stdout: stdout, ReadOnly: c.readOnly, Verify: c.verify,
		Notify: systemdStatus, Bake: c.bake,
	}
}

// printErr writes err one line at a time (a config error holds one line
// per problem), each with the prefix.
func printErr(w io.Writer, prefix string, err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(w, "%s: %s\n", prefix, line)
	}
}

// systemdStatus shows progress in `systemctl status ccboot`. Without
// NOTIFY_SOCKET (not under systemd) SdNotify does nothing. One line: a
// newline would start another assignment.
func systemdStatus(msg string) {
	_, _ = daemon.SdNotify(false, "STATUS="+strings.ReplaceAll(bootstrap.Printable(msg), "\n", " "))
}

func splitCSV(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// start parses args and opens a session; on failure it returns nil and the
// exit code (0 for --help).
func start(c *commonFlags, args []string, stdout, stderr io.Writer) (*bootstrap.Session, int) {
	if code, ok := c.parse(args); !ok {
		return nil, code
	}
	return openSession(c.options(stdout), stderr)
}

func openSession(opts bootstrap.Options, stderr io.Writer) (*bootstrap.Session, int) {
	s, err := bootstrap.Open(opts)
	if err != nil {
		printErr(stderr, "ccboot", err)
		var ce *bootstrap.ConfigError
		if errors.As(err, &ce) {
			return nil, exitUsage
		}
		return nil, exitFailed
	}
	return s, exitOK
}

func converge(ctx context.Context, mode bootstrap.Mode, args []string, stdout, stderr io.Writer) int {
	summaries := map[bootstrap.Mode]string{
		bootstrap.ModeRun:    "Converge every step. Steps that already converged on this instance with the same config are not re-checked (use repair for that).",
		bootstrap.ModeRepair: "Check every step and converge what differs. Prints what changed; exit 0 ok, 1 failed.",
		bootstrap.ModePlan:   "Check every step and print what run would change, with diffs of rendered files. Exit 0 in sync, 2 changes pending.",
	}
	c := newFlags(string(mode), summaries[mode], stderr)
	c.readOnly = mode == bootstrap.ModePlan
	if mode == bootstrap.ModeRepair {
		c.fs.BoolVar(&c.verify, "verify", false, "re-hash the installed Claude Code executable instead of trusting its recorded size and mtime")
	}
	s, code := start(c, args, stdout, stderr)
	if s == nil {
		return code
	}
	defer s.Close()
	// Under systemd the journal gets JSON lines from the logger instead.
	human := !s.Journal()
	var finished func(bootstrap.StepReport)
	if human && mode != bootstrap.ModePlan {
		finished = func(sr bootstrap.StepReport) { fmt.Fprintln(stdout, bootstrap.StepLine(sr)) }
	}
	onWait := func(holder int) {
		fmt.Fprintf(stderr, "ccboot: waiting for %s that holds the run lock\n", bootstrap.HolderName(holder))
	}
	report, err := s.Converge(ctx, mode, finished, onWait)
	if err != nil {
		fmt.Fprintf(stderr, "ccboot: %v\n", err)
		return exitFailed
	}
	switch {
	case mode == bootstrap.ModePlan:
		bootstrap.PrintReport(stdout, &report, true)
	case human:
		fmt.Fprintln(stdout, bootstrap.Summary(&report))
		if report.Failed() {
			fmt.Fprintf(stdout, "details: ccboot status; log: %s\n", s.LogFile())
		}
	}
	if mode != bootstrap.ModePlan {
		writeInventory(s.Env, report.InstanceID, stderr)
		if err := s.SignalWaitCondition(ctx, &report); err != nil {
			fmt.Fprintf(stderr, "ccboot: %v\n", err)
		}
	}
	switch {
	case report.Failed():
		return exitFailed
	case report.Count(bootstrap.ResultDrift) > 0:
		return exitPending
	}
	return exitOK
}

func status(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newFlags("status", "Show the last run: each step's result, timing and error, and where the logs are.\nExit 0 ok, 1 failed, 2 drift or no finished run.", stderr)
	format := c.fs.String("format", "text", "output `format`: text or json")
	check := c.fs.Bool("check", false, "also run every step's read-only check and report drift")
	wait := c.fs.Bool("wait", false, "block until a run has finished (like cloud-init status --wait)")
	timeout := c.fs.Duration("timeout", 0, "with --wait: give up after this `duration` (0: wait forever)")
	c.readOnly = true
	if code, ok := c.parse(args); !ok {
		return code
	}
	// Checked before the session opens (and creates the log): bad input
	// writes nothing.
	if *format != "text" && *format != "json" {
		fmt.Fprintf(stderr, "ccboot status: --format %q: use text or json\n", *format)
		return exitUsage
	}
	// The state file's place does not depend on the config: a broken
	// config (when people reach for status) still shows the last run.
	opts := c.options(stdout)
	opts.BadConfigOK = true
	s, code := openSession(opts, stderr)
	if s == nil {
		return code
	}
	defer s.Close()
	configErrs := s.ConfigErr().Lines()
	if *check && len(configErrs) > 0 {
		fmt.Fprintf(stderr, "ccboot status: --check needs a valid config, and this one has %d problem(s), listed with the last run; showing the last run without the check\n", len(configErrs))
		*check = false
	}
	if *wait {
		var err error
		if len(configErrs) > 0 {
			// No run can finish with this config: wait only for one under way.
			err = bootstrap.WaitWhileRunning(ctx, s.Env.Sys, *timeout)
		} else {
			_, err = bootstrap.WaitForRun(ctx, s.Env.Sys, *timeout)
		}
		if err != nil {
			fmt.Fprintf(stderr, "ccboot status: %v\n", err)
			return exitPending
		}
	}
	report, err := s.Status(ctx, *check)
	if err != nil {
		fmt.Fprintf(stderr, "ccboot status: %v\n", err)
		return exitFailed
	}
	if configErrs == nil {
		configErrs = []string{} // JSON: an empty list, never null
	}
	tiers := s.Env.Config.TierMode
	if len(configErrs) > 0 {
		tiers = "" // the defaults stand in for a broken config
	}
	invFile, invWhy := inventoryStatus(s.Env, report)
	switch {
	case *format == "json" && report == nil:
		windows, werr := elevatedWindows(s.Env)
		out := map[string]any{"complete": false, "steps": []any{}, "config_errors": configErrs, "tiers": tiers, "elevated_windows": windows, "inventory_file": invFile, "inventory_error": invWhy}
		if werr != "" {
			out["elevated_error"] = werr
		}
		_ = bootstrap.WriteJSON(stdout, out)
	case *format == "json":
		out := statusOutput{Report: report, ConfigErrors: configErrs, Tiers: tiers, InventoryFile: invFile, InventoryError: invWhy}
		out.ElevatedWindows, out.ElevatedError = elevatedWindows(s.Env)
		_ = bootstrap.WriteJSON(stdout, out)
	case report == nil:
		fmt.Fprintln(stdout, "ccboot has not run on this machine yet (no state file); run `ccboot run` or check the ccboot.service unit")
	default:
		bootstrap.PrintStatus(stdout, report)
	}
	if *format == "text" {
		fmt.Fprintln(stdout, bootstrap.TiersLine(tiers))
		fmt.Fprintln(stdout, inventoryLine(invFile, invWhy))
		printElevatedWindows(stdout, s.Env)
		for _, e := range configErrs {
			fmt.Fprintf(stdout, "config error: %s\n", e)
		}
		if len(configErrs) > 0 {
			fmt.Fprintln(stdout, "the next run will stop at these config errors; fix them, then `ccboot plan` shows what it would do")
		}
	}
	switch {
	case len(configErrs) > 0 || report != nil && report.Failed():
		return exitFailed
	case report == nil || report.Count(bootstrap.ResultDrift) > 0 || !report.Complete || report.Count(bootstrap.ResultPending) > 0:
		return exitPending
	}
	return exitOK
}

// statusOutput is `status --format json`: the last run's report and the
// config's problems (an empty list when it is valid).
type statusOutput struct {
	*bootstrap.Report
	ConfigErrors []string `json:"config_errors"`
	// Tiers is [tiers] mode ("" with config errors); ElevatedWindows the
	// active approvals (an empty list when none, or ElevatedError when
	// they cannot be read: they are root's).
	Tiers           string            `json:"tiers"`
	ElevatedWindows []broker.Approval `json:"elevated_windows"`
	ElevatedError   string            `json:"elevated_error,omitempty"`
	// InventoryFile is where the Custom:ccboot inventory was written ("" when
	// it was not; InventoryError says why).
	InventoryFile  string `json:"inventory_file"`
	InventoryError string `json:"inventory_error,omitempty"`
}

// elevatedWindows are the active approvals for `status --format json`.
func elevatedWindows(env *bootstrap.Env) ([]broker.Approval, string) {
	store := broker.OpenApprovals(env.Sys, broker.DefaultApprovalsDir, env.Log)
	active, err := store.Active(time.Now())
	switch {
	case err != nil && os.Geteuid() != 0:
		return []broker.Approval{}, "approvals are root's; run `sudo ccboot status` to see them"
	case err != nil:
		return []broker.Approval{}, err.Error()
	case active == nil:
		return []broker.Approval{}, ""
	}
	return active, ""
}
