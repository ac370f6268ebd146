package steps

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/fsroot"
	"github.com/ccboot/ccboot/bootstrap/metadata"
	"github.com/ccboot/ccboot/bootstrap/runner"
)

// testUID/testGID own the target user's files in test roots. Tests run as
// root in CI, so chown works; they are not the caller's IDs on purpose.
const testUID, testGID = 1000, 1000

// newTestEnv builds an Env over a fresh temp root that looks like a Debian
// machine with user ec2-user, a fake command runner and fixed metadata.
func newTestEnv(t *testing.T) (*bootstrap.Env, *runner.Fake) {
	t.Helper()
	root := t.TempDir()
	writeTestFile(t, root, "etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n", 0o644)
	writeTestFile(t, root, "etc/passwd", "root:x:0:0:root:/root:/bin/bash\nec2-user:x:1000:1000::/home/ec2-user:/bin/bash\n", 0o644)
	writeTestFile(t, root, "etc/group", "root:x:0:\nec2-user:x:1000:\n", 0o644)
	if err := os.MkdirAll(filepath.Join(root, "home/ec2-user"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(root, "home/ec2-user"), testUID, testGID); err != nil {
		t.Fatal(err)
	}
	sys, err := fsroot.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sys.Close() })
	fake := &runner.Fake{}
	env := &bootstrap.Env{
		Root:   root,
		Sys:    sys,
		Run:    fake,
		Meta:   testMetadata(),
		Log:    zap.NewNop(),
		Config: bootstrap.DefaultConfig(),
		Progress: func(string) {
		},
	}
	return env, fake
}

func testMetadata() metadata.Static {
	return metadata.Static{
		RegionValue:     "eu-west-1",
		AccountValue:    "111122223333",
		PartitionValue:  "aws",
		InstanceIDValue: "i-0123456789abcdef0",
		ProfileARNValue: "arn:aws:iam::111122223333:instance-profile/claudecode-ec2-demo",
	}
}

func writeTestFile(t *testing.T, root, name, content string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// advisoryStep is the host-parameterised Check and Apply an enforced-only
// step has.
type advisoryStep interface {
	check(context.Context, *bootstrap.Env, host) (bootstrap.Drift, error)
	apply(context.Context, *bootstrap.Env, host) error
}

// assertAdvisoryNoOp: in advisory mode (env's default) the step's Check is
// in sync with one note saying "advisory: not enforced", its Apply runs no
// command, and none of paths exists afterwards.
func assertAdvisoryNoOp(t *testing.T, env *bootstrap.Env, fake *runner.Fake, step advisoryStep, paths ...string) {
	t.Helper()
	ctx := context.Background()
	d, err := step.check(ctx, env, imdsLiveHost)
	if err != nil || !d.InSync() || len(d.Notes) != 1 || !strings.Contains(d.Notes[0], "advisory: not enforced") {
		t.Fatalf("advisory Check: %v %q %q", err, d.Changes, d.Notes)
	}
	if err := step.apply(ctx, env, imdsLiveHost); err != nil {
		t.Fatal(err)
	}
	if calls := fake.Calls(); len(calls) != 0 {
		t.Errorf("advisory ran %q", calls)
	}
	for _, name := range paths {
		if ok, _ := env.Sys.Exists(name); ok {
			t.Errorf("advisory wrote %s", name)
		}
	}
}
