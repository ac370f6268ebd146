package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap"
	"github.com/ccboot/ccboot/bootstrap/doctor/doctortest"
	"github.com/ccboot/ccboot/bootstrap/inventory"
	"github.com/ccboot/ccboot/bootstrap/metadata/aemmtest"
)

// inventoryFile is where the agent of aemmtest.Default()'s instance looks.
const inventoryFile = "/var/lib/amazon/ssm/i-0123456789abcdef0/inventory/custom/ccboot.json"

func readInventory(t *testing.T, root string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, inventoryFile))
	if err != nil {
		t.Fatalf("inventory file: %v", err)
	}
	if err := inventory.Validate(data); err != nil {
		t.Fatalf("the SSM agent would drop the inventory file: %v\n%s", err, data)
	}
	var it inventory.Item
	if err := json.Unmarshal(data, &it); err != nil {
		t.Fatal(err)
	}
	if it.TypeName != "Custom:ccboot" {
		t.Errorf("TypeName %q", it.TypeName)
	}
	return it.Content
}

// statusInventory is what `status --format json` says of the run and the
// inventory file.
type statusInventory struct {
	Version        string    `json:"ccboot_version"`
	Mode           string    `json:"mode"`
	Finished       time.Time `json:"finished"`
	Complete       bool      `json:"complete"`
	Tiers          string    `json:"tiers"`
	InventoryFile  string    `json:"inventory_file"`
	InventoryError string    `json:"inventory_error"`
}

func statusOfInventory(t *testing.T, flags []string) statusInventory {
	t.Helper()
	r := ccboot(t, append([]string{"status", "--format", "json"}, flags...)...)
	var s statusInventory
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("status json: %v\n%s", err, r.stdout)
	}
	return s
}

// A run, doctor and a repair each leave the Custom:ccboot item in the
// agent's folder, matching `ccboot status --format json`; doctor's result
// survives the next repair; status says where the file is.
func TestBlackboxInventory(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	imds := aemmtest.Start(t, aemmtest.Default())
	flags := []string{"--root", root, "--imds-endpoint", imds}
	if r := ccboot(t, append([]string{"run"}, flags...)...); r.code != 0 || strings.Contains(r.stderr, "inventory") {
		t.Fatalf("run exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	st := statusOfInventory(t, flags)
	inv := readInventory(t, root)
	want := map[string]string{
		"CcbootVersion": st.Version, "ClaudeCodeVersion": bootstrap.DefaultClaudeCodeVersion, "TierMode": st.Tiers,
		"LastRunMode": st.Mode, "LastRunResult": "ok", "LastRunTime": st.Finished.UTC().Format(inventory.TimeLayout),
		"FailedSteps": "", "DoctorResult": "not-run", "DoctorTime": "", "DoctorFailedChecks": "",
	}
	for k, v := range want {
		if inv[k] != v {
			t.Errorf("after run: %s = %q, want %q (status: %+v)", k, inv[k], v, st)
		}
	}
	if st.Mode != "run" || st.Tiers != "advisory" || st.Version != "dev" || !st.Complete {
		t.Errorf("status %+v", st)
	}
	if st.InventoryFile != inventoryFile || st.InventoryError != "" {
		t.Errorf("status json: inventory_file %q, inventory_error %q", st.InventoryFile, st.InventoryError)
	}
	text := ccboot(t, append([]string{"status"}, flags...)...)
	if !strings.Contains(text.stdout, "\ninventory: "+inventoryFile+" (Custom:ccboot") {
		t.Errorf("status text does not name the inventory file:\n%s", text.stdout)
	}
	fi, err := os.Lstat(filepath.Join(root, inventoryFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("inventory file %v %v, want 0600", fi, err)
	}

	fake := doctortest.New(t, "111122223333", "eu-west-1")
	shell := doctorShell(t, fake.URL)
	if r := ccbootEnv(t, shell, append([]string{"doctor"}, flags...)...); r.code != 0 || r.stderr != "" {
		t.Fatalf("doctor exit %d, stderr %q", r.code, r.stderr)
	}
	if inv := readInventory(t, root); inv["DoctorResult"] != "ok" || !inventory.ValidTime(inv["DoctorTime"]) || inv["DoctorFailedChecks"] != "" || inv["LastRunTime"] != want["LastRunTime"] {
		t.Errorf("after doctor: %v", inv)
	}
	fake.Set(func(f *doctortest.Fake) { delete(f.Trust, "claudecode-readonly-demo") })
	if r := ccbootEnv(t, shell, append([]string{"doctor"}, flags...)...); r.code != 1 {
		t.Fatalf("doctor with the trust broken: exit %d", r.code)
	}
	failed := readInventory(t, root)
	if failed["DoctorResult"] != "failed" || failed["DoctorFailedChecks"] != "readonly-profile" {
		t.Errorf("after a failed doctor: %v", failed)
	}
	if strings.Contains(strings.Join(values(failed), " "), "AccessDenied") {
		t.Errorf("doctor's detail reached the inventory: %v", failed)
	}

	if r := ccboot(t, append([]string{"repair"}, flags...)...); r.code != 0 {
		t.Fatalf("repair exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	st = statusOfInventory(t, flags)
	inv = readInventory(t, root)
	if inv["LastRunMode"] != "repair" || inv["LastRunTime"] != st.Finished.UTC().Format(inventory.TimeLayout) {
		t.Errorf("after repair: %v (status %+v)", inv, st)
	}
	if inv["DoctorResult"] != "failed" || inv["DoctorTime"] != failed["DoctorTime"] || inv["DoctorFailedChecks"] != "readonly-profile" {
		t.Errorf("doctor's result did not survive the repair: %v", inv)
	}
}

func values(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// A failing step whose error quotes the user's file (here the target of a
// planted ~/.aws/config link, text the user chose) shows in the inventory
// by its name only.
func TestBlackboxInventoryHoldsNoUserText(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	imds := aemmtest.Start(t, aemmtest.Default())
	flags := []string{"--root", root, "--imds-endpoint", imds}
	const userText = "AKIAUSERTEXT-secret-0123"
	aws := filepath.Join(root, "home/ec2-user/.aws")
	if err := os.Mkdir(aws, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/tmp/"+userText, filepath.Join(aws, "config")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{aws, filepath.Join(aws, "config")} {
		if err := os.Lchown(p, 1000, 1000); err != nil {
			t.Fatal(err)
		}
	}
	if r := ccboot(t, append([]string{"run"}, flags...)...); r.code != 1 {
		t.Fatalf("run exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	rep, _ := statusJSON(t, flags...)
	if st, _ := rep.Step("aws-config"); st.Result != bootstrap.ResultFailed || !strings.Contains(st.Error, userText) {
		t.Fatalf("precondition: aws-config %+v should fail quoting the link's target", st)
	}
	data, err := os.ReadFile(filepath.Join(root, inventoryFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "AKIAUSERTEXT") || strings.Contains(string(data), "/tmp/") {
		t.Errorf("the inventory quotes the user's file:\n%s", data)
	}
	inv := readInventory(t, root)
	if inv["LastRunResult"] != "failed" || inv["FailedSteps"] != strings.Join(rep.FailedSteps(), ",") || !strings.Contains(inv["FailedSteps"], "aws-config") {
		t.Errorf("inventory %v, want the failed run with aws-config (status: %v)", inv, rep.FailedSteps())
	}
}

// Without IMDS there is no instance ID and so no agent folder: the run
// writes no inventory, and status says why.
func TestBlackboxInventoryWithoutInstanceID(t *testing.T) {
	t.Parallel()
	root := newRoot(t)
	flags := []string{"--root", root, "--imds-endpoint", "http://127.0.0.1:9", "--set", "ccboot.imds_timeout=1s"}
	r := ccboot(t, append([]string{"run"}, flags...)...)
	if r.code != 1 || strings.Contains(r.stderr, "inventory") {
		t.Fatalf("run without IMDS: exit %d, want 1 without an inventory warning\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Lstat(filepath.Join(root, "var/lib/amazon")); err == nil {
		t.Error("an agent folder was created without an instance ID")
	}
	st := statusOfInventory(t, flags)
	if st.InventoryFile != "" || !strings.Contains(st.InventoryError, "instance ID unknown") {
		t.Errorf("status: inventory_file %q, inventory_error %q", st.InventoryFile, st.InventoryError)
	}
}
