package bootstrap

import "context"

// Step is one piece of the machine ccboot converges. Steps are values built
// from the config; everything they touch comes in through the Env.
type Step interface {
	// Name is the step's stable identifier (used by --skip, --only, state).
	Name() string
	// Needs lists steps that must have succeeded before this one starts.
	Needs() []string
	// Scope says whether the step's result belongs in an image, shared by
	// every instance launched from it (`ccboot bake` converges it), or to
	// one instance (converged at boot).
	Scope() Scope
	// Check inspects the system without changing it and says what differs.
	Check(ctx context.Context, env *Env) (Drift, error)
	// Apply converges the system. The engine calls Check again afterwards
	// to verify, so Apply does not need to re-verify its own work.
	Apply(ctx context.Context, env *Env) error
}

// Drift is what Check found.
type Drift struct {
	// Changes are the differences, one short line each ("create /swapfile
	// (512 MiB)"); none means in sync.
	Changes []string
	// Diff is a unified diff of rendered files, shown by plan.
	Diff string
	// Notes are facts worth reporting even when in sync, e.g. that no
	// Node.js satisfying Claude Code's engines field is available.
	Notes []string
}

// InSync reports whether nothing differs.
func (d Drift) InSync() bool { return len(d.Changes) == 0 }

// Differ records one difference.
func (d *Drift) Differ(format string, args ...any) {
	d.Changes = append(d.Changes, sprintf(format, args...))
}

// Note records a fact for the report.
func (d *Drift) Note(format string, args ...any) {
	d.Notes = append(d.Notes, sprintf(format, args...))
}

// Scope is where a step's result belongs.
type Scope string

const (
	// ScopeImage: the same on every instance of an image (packages, Claude
	// Code, the docker group); `ccboot bake` converges it into the image.
	ScopeImage Scope = "image"
	// ScopeInstance: depends on the instance (its Region, role ARNs, the
	// user's home, its own swap file); converged at boot, never baked.
	ScopeInstance Scope = "instance"
)
