package steps

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/ccboot/ccboot/bootstrap"
)

// In enforced mode docker-group still creates the group and enables the
// daemon, but never adds the user (group docker grants root), and says so.
func TestDockerGroupEnforcedDoesNotAddTheUser(t *testing.T) {
	t.Parallel()
	env, fake := dockerEnv(t)
	env.Config.TierMode = bootstrap.TierEnforced
	sys := &fakeSystem{root: env.Root}
	sys.install(t, fake)
	ctx := context.Background()
	d, err := DockerGroup{}.Check(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"create group docker", "enable docker.service"}; !slices.Equal(d.Changes, want) {
		t.Fatalf("changes %q, want %q", d.Changes, want)
	}
	if len(d.Notes) != 1 || !strings.Contains(d.Notes[0], "enforced tiers: ec2-user is not added to group docker, which grants root") {
		t.Fatalf("notes %q", d.Notes)
	}
	if err := (DockerGroup{}).Apply(ctx, env); err != nil {
		t.Fatal(err)
	}
	if n := fake.CallsWithPrefix("usermod"); n != 0 {
		t.Fatalf("enforced mode ran usermod: %q", fake.Calls())
	}
	if d, err := (DockerGroup{}).Check(ctx, env); err != nil || !d.InSync() {
		t.Fatalf("after Apply: %v %q", err, d.Changes)
	}
}
