package bootstrap

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// StepLine renders one finished step as one readable line, e.g.
// "swap          changed   1.2s  create /swapfile (512 MiB)". Errors and
// notes can quote a user's files: control characters are escaped.
func StepLine(s StepReport) string {
	detail := strings.Join(s.Changes, "; ")
	if s.Error != "" {
		detail = s.Error
	}
	if detail == "" && len(s.Notes) > 0 {
		detail = s.Notes[0]
	}
	line := fmt.Sprintf("%-13s %-8s %6s", s.Name, s.Result, formatMS(s.DurationMS))
	if detail != "" {
		line += "  " + detail
	}
	return Printable(line)
}

func formatMS(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	if d < time.Second {
		return fmt.Sprintf("%dms", ms)
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}

// PrintReport writes a human-readable report: one line per step, notes and
// diffs when asked, and a summary.
func PrintReport(w io.Writer, r *Report, withDiffs bool) {
	for _, s := range r.Steps {
		fmt.Fprintln(w, StepLine(s))
		for i, n := range s.Notes {
			if i == 0 && len(s.Changes) == 0 && s.Error == "" {
				continue // already on the step line
			}
			fmt.Fprintf(w, "%14s note: %s\n", "", Printable(n))
		}
		if withDiffs && s.Diff != "" {
			for _, l := range strings.Split(strings.TrimRight(s.Diff, "\n"), "\n") {
				fmt.Fprintf(w, "%14s %s\n", "", Printable(l))
			}
		}
	}
	fmt.Fprintln(w, Printable(Summary(r)))
}

// PrintStatus writes `ccboot status` for a person.
func PrintStatus(w io.Writer, r *Report) {
	// The state file is root's, but print it as carefully as the rest.
	fmt.Fprintln(w, Printable(fmt.Sprintf("ccboot %s, last %s on instance %s", r.Version, r.Mode, orDash(r.InstanceID))))
	if !r.Started.IsZero() {
		took := "not finished"
		if !r.Finished.IsZero() {
			took = "took " + r.Finished.Sub(r.Started).Round(time.Millisecond).String()
		}
		fmt.Fprintf(w, "started %s, %s\n", r.Started.Local().Format(time.RFC3339), took)
	}
	PrintReport(w, r, false)
	if r.LogFile != "" {
		fmt.Fprintf(w, "log: %s (JSON lines); under systemd also `journalctl -u ccboot`\n", Printable(r.LogFile))
	}
}

// TiersLine is status's line for [tiers] mode; mode is "" when the config
// has errors (its defaults say nothing of this instance).
func TiersLine(mode string) string {
	switch mode {
	case "":
		return "tiers: unknown (the config has errors, listed below)"
	case TierEnforced:
		return "tiers: enforced (only root reaches IMDS; Elevated only in a session `sudo ccboot elevate` approved)"
	}
	return "tiers: " + Printable(mode)
}

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// FailedSteps names the steps that failed or were blocked, in the engine's
// order (names only: their errors can quote a user's file).
func (r *Report) FailedSteps() []string {
	var names []string
	for _, s := range r.Steps {
		if s.Result == ResultFailed || s.Result == ResultBlocked {
			names = append(names, s.Name)
		}
	}
	return names
}
