package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/ccboot/ccboot/bootstrap"
)

// bake builds an image (Packer, EC2 Image Builder, or offline with --root):
// the image steps converge, ccboot installs itself with its unit enabled,
// and everything that belongs to an instance is left out, so an instance
// launched from the image only runs the instance steps at boot.
func bake(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newFlags("bake", "Converge the image steps (packages, claude-code, docker group and unit), install this binary\n"+
		"with ccboot.service enabled (not started), record the bake in "+bootstrap.BakeRecordPath+", and remove\n"+
		"instance data (ccboot's state, log and lock; cloud-init's instance records). Needs no IMDS.\n"+
		"With --check: say whether the image is baked and in sync, and with which versions; changes nothing.\n"+
		"Exit 0 baked, 1 a step failed, 2 (--check) not baked or drifted, 3 bad flags or config.", stderr)
	check := c.fs.Bool("check", false, "only check whether the image is baked and in sync (read-only)")
	c.bake = true
	if code, ok := c.parse(args); !ok {
		return code
	}
	c.readOnly = *check
	s, code := openSession(c.options(stdout), stderr)
	if s == nil {
		return code
	}
	defer s.Close()
	if *check {
		return bakeCheck(ctx, s, stdout)
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "ccboot bake: cannot find own binary: %v\n", err)
		return exitFailed
	}
	res, err := s.Bake(ctx, self, func(sr bootstrap.StepReport) { fmt.Fprintln(stdout, bootstrap.StepLine(sr)) })
	if err != nil {
		fmt.Fprintf(stderr, "ccboot bake: %v\n", err)
		return exitFailed
	}
	if res.Record == nil {
		fmt.Fprintf(stdout, "bake failed: %s; nothing installed, image not marked baked\n", bootstrap.Summary(&res.Report))
		return exitFailed
	}
	fmt.Fprintf(stdout, "installed %s (%s) and %s (%s, enabled)\n", s.Env.Sys.Path(bootstrap.InstalledBinary), changedWord(res.Install.BinaryChanged),
		s.Env.Sys.Path(bootstrap.UnitPath), changedWord(res.Install.UnitChanged))
	if len(res.Removed) > 0 {
		fmt.Fprintf(stdout, "removed instance data: %s\n", strings.Join(res.Removed, ", "))
	}
	fmt.Fprintf(stdout, "baked: ccboot %s; record %s\n", res.Record.CcbootVersion, s.Env.Sys.Path(bootstrap.BakeRecordPath))
	return exitOK
}

func bakeCheck(ctx context.Context, s *bootstrap.Session, stdout io.Writer) int {
	c, err := s.CheckBake(ctx)
	if err != nil {
		fmt.Fprintf(stdout, "ccboot bake --check: %v\n", err)
		return exitFailed
	}
	if rec := c.Record; rec != nil {
		fmt.Fprintf(stdout, "baked %s by ccboot %s (this is ccboot %s)\n", rec.BakedAt.Format("2006-01-02 15:04:05Z"), rec.CcbootVersion, c.Report.Version)
		for _, st := range rec.Steps {
			line := fmt.Sprintf("  %-13s %s", st.Name, st.Result)
			if len(st.Notes) > 0 {
				line += ": " + strings.Join(st.Notes, "; ")
			}
			fmt.Fprintln(stdout, bootstrap.Printable(line))
		}
	}
	if len(c.InstanceData) > 0 {
		fmt.Fprintln(stdout, bootstrap.Printable("instance data (expected on a booted instance; before snapshotting an image run `ccboot bake`, which removes it): "+strings.Join(c.InstanceData, ", ")))
	}
	for _, p := range c.Problems {
		fmt.Fprintln(stdout, bootstrap.Printable("problem: "+p))
	}
	if !c.Baked() {
		fmt.Fprintln(stdout, "not baked (or drifted since): run `ccboot bake`")
		return exitPending
	}
	fmt.Fprintln(stdout, "image is baked and in sync")
	return exitOK
}
