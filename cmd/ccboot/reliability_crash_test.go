//go:build reliability

package main

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
)

// crashRoot is a fresh root in which every step has work to do, including
// packages and claude-code (through the fake apt-get and npm).
func crashRoot(t *testing.T) string {
	root := newRoot(t)
	withFakePM(t, root)
	return root
}

// crashFlags keep the swap file small: the suite builds it 50 times.
func crashFlags(root, imds string) []string {
	return []string{"--root", root, "--imds-endpoint", imds, "--set", "swap.size=16M"}
}

// stepOfPoint says which step (or "engine") a crash point belongs to, from
// the file or command it names.
func stepOfPoint(label string) string {
	for _, m := range []struct{ needle, step string }{
		{" packages#", "packages"}, {"apt-get", "packages"}, {"apt-cache", "packages"}, {"var/lib/dpkg", "packages"},
		{" claude-code#", "claude-code"}, {"lib/claude-code", "claude-code"}, {"bin/claude", "claude-code"},
		{" docker-group#", "docker-group"}, {"groupadd", "docker-group"}, {"usermod", "docker-group"}, {"systemctl", "docker-group"},
		{" swap#", "swap"}, {"etc/fstab", "swap"}, {"mkswap", "swap"},
		{" profile-env#", "profile-env"}, {"etc/profile.d", "profile-env"},
		{" claude-settings#", "claude-settings"}, {"etc/claude-code", "claude-settings"},
		{" aws-config#", "aws-config"}, {".aws", "aws-config"},
		{" aliases#", "aliases"}, {".bashrc", "aliases"},
	} {
		if strings.Contains(label, m.needle) {
			return m.step
		}
	}
	return "engine"
}

// pickPoints chooses n distinct points round-robin over the steps, so
// every step gets its share and the engine's own points (state saves,
// directories) are included.
func pickPoints(labels []string, n int) []string {
	byStep := map[string][]string{}
	var steps []string
	for _, l := range labels {
		s := stepOfPoint(l)
		if _, ok := byStep[s]; !ok {
			steps = append(steps, s)
		}
		byStep[s] = append(byStep[s], l)
	}
	sort.Strings(steps)
	var out []string
	for len(out) < n {
		progress := false
		for _, s := range steps {
			if len(byStep[s]) > 0 && len(out) < n {
				out = append(out, byStep[s][0])
				byStep[s] = byStep[s][1:]
				progress = true
			}
		}
		if !progress {
			break
		}
	}
	return out
}

// TestReliabilityCrashConsistency kills `ccboot run` with SIGKILL at 50
// distinct points (the crash hook, not timing), runs it again, and requires
// the tree an uninterrupted run leaves: same files, contents, modes and
// owners, no temp files, no zero-length managed file, no duplicated lines.
func TestReliabilityCrashConsistency(t *testing.T) {
	t.Parallel()
	const goal = 50
	bin := crashBinary(t)
	imds := aemmtest.Start(t, aemmtest.Default())

	// The uninterrupted run: the reference tree and the list of points.
	ref := crashRoot(t)
	pointsFile := filepath.Join(t.TempDir(), "points")
	r := runBin(t, bin, []string{"CCBOOT_CRASH_LOG=" + pointsFile}, append([]string{"run"}, crashFlags(ref, imds)...)...)
	if r.code != 0 {
		t.Fatalf("uninterrupted run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	want := snapshot(t, ref)
	if l := leftovers(t, ref); len(l) > 0 {
		t.Fatalf("uninterrupted run left: %v", l)
	}
	data, err := os.ReadFile(pointsFile)
	if err != nil {
		t.Fatal(err)
	}
	labels := strings.Split(strings.TrimSpace(string(data)), "\n")
	points := pickPoints(labels, goal)
	covered := map[string]int{}
	for _, p := range points {
		covered[stepOfPoint(p)]++
	}
	t.Logf("%d crash points in an uninterrupted run; chose %d: per step %v", len(labels), len(points), covered)
	for _, s := range []string{"packages", "claude-code", "docker-group", "swap", "profile-env", "claude-settings", "aws-config", "aliases", "engine"} {
		if covered[s] == 0 {
			t.Errorf("no crash point in %s", s)
		}
	}

	var ok atomic.Int32
	t.Cleanup(func() { figure(t, "crash-consistency", int(ok.Load()), goal) })
	for _, point := range points {
		t.Run(point, func(t *testing.T) {
			t.Parallel()
			root := crashRoot(t)
			flags := crashFlags(root, imds)
			killed := runBin(t, bin, []string{"CCBOOT_CRASH_AT=" + point}, append([]string{"run"}, flags...)...)
			if !killed.signaled {
				t.Fatalf("not killed at %q: exit %d\n%s%s", point, killed.code, killed.stdout, killed.stderr)
			}
			again := runBin(t, ccbootBin, nil, append([]string{"run"}, flags...)...)
			if again.code != 0 {
				t.Fatalf("run after the crash: exit %d\n%s%s", again.code, again.stdout, again.stderr)
			}
			if plan := runBin(t, ccbootBin, nil, append([]string{"plan"}, flags...)...); plan.code != 0 {
				t.Fatalf("plan after recovery: exit %d (still differs)\n%s", plan.code, plan.stdout)
			}
			if l := leftovers(t, root); len(l) > 0 {
				t.Fatalf("after crash at %q and rerun: %s", point, strings.Join(l, "; "))
			}
			if d := diffTrees(want, snapshot(t, root)); len(d) > 0 {
				t.Fatalf("after crash at %q and rerun the tree differs from an uninterrupted run:\n%s", point, strings.Join(d, "\n"))
			}
			ok.Add(1)
		})
	}
}
