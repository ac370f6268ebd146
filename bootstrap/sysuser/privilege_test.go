package sysuser

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ccboot/ccboot/bootstrap/fsroot"
)

func TestGroupsOf(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	groups := "root:x:0:\nec2-user:x:1000:\ndocker:x:998:alice,ec2-user\nwheel:x:10:ec2-userx\nbad:x:nan:ec2-user\n"
	if err := os.WriteFile(filepath.Join(dir, "etc/group"), []byte(groups), 0o644); err != nil {
		t.Fatal(err)
	}
	sys, err := fsroot.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	got, err := GroupsOf(sys, User{Name: "ec2-user", UID: 1000, GID: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range got {
		names = append(names, g.Name)
	}
	if len(names) != 2 || names[0] != "ec2-user" || names[1] != "docker" {
		t.Errorf("GroupsOf = %v, want [ec2-user docker] (a similar name or a malformed gid is not a membership)", names)
	}
}

func TestParseSudoList(t *testing.T) {
	for out, want := range map[string]SudoList{
		"User ec2-user is not allowed to run sudo on ip-10-0-0-1.\n":                                                                                   {None: true},
		"Matching Defaults entries for ec2-user on h:\n    env_reset\n\nUser ec2-user may run the following commands on h:\n    (ALL) NOPASSWD: ALL\n": {Rules: "(ALL) NOPASSWD: ALL"},
	} {
		if got, ok := ParseSudoList(out); !ok || got != want {
			t.Errorf("ParseSudoList(%q) = %+v, %v; want %+v", out, got, ok, want)
		}
	}
	if _, ok := ParseSudoList("sudo: unknown user ec2-user\n"); ok {
		t.Error("an unknown answer was taken for one")
	}
}
