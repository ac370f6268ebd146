package broker

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestApprovalsAddActiveRemove(t *testing.T) {
	b := newBedNoServer(t)
	a := b.create(t, 1000, 30*time.Minute)
	if a.Unit != "ccboot-elevated-1.scope" {
		t.Fatalf("first unit %q", a.Unit)
	}
	b.approve(t, "ccboot-elevated-4.scope", 1000, time.Minute)
	fi, err := os.Stat(filepath.Join(b.dir, "approvals"))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("approvals dir: %v %v, want mode 0700", fi, err)
	}
	fi, err = os.Stat(filepath.Join(b.dir, "approvals", a.Unit+".json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("approval file: %v %v, want mode 0600", fi, err)
	}
	if next := b.create(t, 1000, time.Minute); next.Unit != "ccboot-elevated-5.scope" {
		t.Errorf("next unit %q, want one past the highest file", next.Unit)
	}
	_ = b.approvals.Remove("ccboot-elevated-5.scope")
	got, err := b.approvals.Active(b.clock.in(2 * time.Minute))
	if err != nil || len(got) != 1 || got[0].Unit != a.Unit || got[0].Approver != "alice" || !got[0].Until.Equal(a.Until) {
		t.Fatalf("Active = %+v, %v; want only the 30m one", got, err)
	}
	if got, _ := b.approvals.Active(b.clock.in(30 * time.Minute)); len(got) != 0 {
		t.Errorf("Active at the window's end = %+v, want none", got)
	}
	if err := b.approvals.Remove(a.Unit); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.approvals.Active(b.clock.Now()); len(got) != 1 {
		t.Errorf("after Remove: %+v", got)
	}
	// A name is never handed out twice, even once its file is gone: a
	// session of that name may still run past its window.
	if again := b.create(t, 1000, time.Minute); again.Unit != "ccboot-elevated-6.scope" {
		t.Errorf("after removing 1 and 5, next unit %q, want ccboot-elevated-6.scope", again.Unit)
	}
	if n, err := b.approvals.RemoveAll(); err != nil || n != 2 {
		t.Errorf("RemoveAll = %d, %v", n, err)
	}
	if err := b.approvals.Add(Approval{Unit: "sshd.service", Created: b.clock.Now(), Until: b.clock.in(time.Minute)}); err == nil {
		t.Error("an approval of a unit elevate does not start was written")
	}
}

// Security: only what root wrote counts. A file owned by another uid, or
// writable by group/other, is ignored and logged; a directory that is not
// root's alone voids every approval.
func TestApprovalsIgnoreWhatRootDidNotWrite(t *testing.T) {
	b := newBedNoServer(t)
	b.approve(t, "ccboot-elevated-1.scope", 1000, 30*time.Minute)
	file := filepath.Join(b.dir, "approvals", "ccboot-elevated-1.scope.json")
	dir := filepath.Join(b.dir, "approvals")
	for _, tc := range []struct {
		name  string
		spoil func() error
		log   string
	}{
		{"file owned by uid 1000", func() error { return os.Chown(file, 1000, 1000) }, "owned by uid 1000, not root"},
		{"file group-writable", func() error { return os.Chmod(file, 0o620) }, "mode 0620 is writable by group or other"},
		{"dir owned by uid 1000", func() error { return os.Chown(dir, 1000, 1000) }, "owned by uid 1000, not root"},
		{"dir world-writable", func() error { return os.Chmod(dir, 0o777) }, "mode 0777 is writable by group or other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				_ = os.Chown(file, 0, 0)
				_ = os.Chmod(file, 0o600)
				_ = os.Chown(dir, 0, 0)
				_ = os.Chmod(dir, 0o700)
			}()
			if got, _ := b.approvals.Active(b.clock.Now()); len(got) != 1 {
				t.Fatalf("intact approval not active: %+v", got)
			}
			if err := tc.spoil(); err != nil {
				t.Fatal(err)
			}
			b.logs.TakeAll()
			got, _ := b.approvals.Active(b.clock.Now())
			if len(got) != 0 {
				t.Errorf("approval counted: %+v", got)
			}
			found := false
			for _, e := range b.logs.All() {
				if strings.Contains(e.Message, "ignoring") && strings.Contains(e.ContextMap()["error"].(string), tc.log) {
					found = true
				}
			}
			if !found {
				t.Errorf("not logged with %q: %v", tc.log, b.logs.All())
			}
		})
	}
}

// A file that is not an approval, or whose unit differs from its name,
// does not count either.
func TestApprovalsIgnoreMalformed(t *testing.T) {
	b := newBedNoServer(t)
	b.approve(t, "ccboot-elevated-1.scope", 1000, 30*time.Minute)
	dir := filepath.Join(b.dir, "approvals")
	data, _ := os.ReadFile(filepath.Join(dir, "ccboot-elevated-1.scope.json"))
	for name, content := range map[string]string{
		"ccboot-elevated-2.scope.json": string(data), // names unit 1
		"ccboot-elevated-3.scope.json": "{not json",
		"ccboot-elevated-4.scope.json": strings.Repeat(" ", 5000) + "{}",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(dir, "ccboot-elevated-1.scope.json"), filepath.Join(dir, "ccboot-elevated-5.scope.json")); err != nil {
		t.Fatal(err)
	}
	got, err := b.approvals.Active(b.clock.Now())
	if err != nil || len(got) != 1 || got[0].Unit != "ccboot-elevated-1.scope" {
		t.Errorf("Active = %+v, %v; want only the real one", got, err)
	}
	if n := len(b.logs.FilterMessage("ignoring approval file").All()); n != 4 {
		t.Errorf("%d files logged as ignored, want 4: %v", n, b.logs.All())
	}
}

// Concurrent elevates get distinct units.
func TestApprovalsCreateConcurrent(t *testing.T) {
	b := newBedNoServer(t)
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			a := b.create(t, 1000, time.Minute)
			mu.Lock()
			defer mu.Unlock()
			if seen[a.Unit] {
				t.Errorf("unit %s handed out twice", a.Unit)
			}
			seen[a.Unit] = true
		})
	}
	wg.Wait()
	if got, _ := b.approvals.Active(b.clock.Now()); len(got) != 16 {
		t.Errorf("%d approvals, want 16", len(got))
	}
}
