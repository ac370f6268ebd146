//go:build e2e

package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ccboot/ccboot/bootstrap/inventory"
)

// statusForInventory is what `ccboot status --format json` says that the
// inventory must agree with.
type statusForInventory struct {
	Version       string    `json:"ccboot_version"`
	Mode          string    `json:"mode"`
	InstanceID    string    `json:"instance_id"`
	Finished      time.Time `json:"finished"`
	Tiers         string    `json:"tiers"`
	InventoryFile string    `json:"inventory_file"`
	Steps         []struct {
		Name   string `json:"name"`
		Result string `json:"result"`
	} `json:"steps"`
}

// checkInventory: the guest's Custom:ccboot file (probe inventory_probe
// NAME) is in the SSM agent's folder for this instance, is what the agent
// accepts, and agrees with status (statusFile) on versions, mode, result,
// time and failed steps.
func checkInventory(t *testing.T, g guest, name, statusFile, wantResult string) map[string]string {
	t.Helper()
	var st statusForInventory
	if err := json.Unmarshal([]byte(g.file(statusFile)), &st); err != nil {
		t.Fatalf("%s: %v", statusFile, err)
	}
	wantFile := "/var/lib/amazon/ssm/" + st.InstanceID + "/inventory/custom/ccboot.json"
	if st.InstanceID == "" || st.InventoryFile != wantFile {
		t.Errorf("status inventory_file %q, want %q", st.InventoryFile, wantFile)
	}
	data := []byte(g.file("inventory-" + name + ".json"))
	if err := inventory.Validate(data); err != nil {
		t.Fatalf("inventory-%s.json: the SSM agent would drop it: %v\n%s", name, err, data)
	}
	var it inventory.Item
	if err := json.Unmarshal(data, &it); err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, s := range st.Steps {
		if s.Result == "failed" || s.Result == "blocked" {
			failed = append(failed, s.Name)
		}
	}
	want := map[string]string{
		"CcbootVersion": st.Version, "TierMode": st.Tiers, "LastRunMode": st.Mode, "LastRunResult": wantResult,
		"LastRunTime": st.Finished.UTC().Format(inventory.TimeLayout), "FailedSteps": strings.Join(failed, ","),
		"DoctorResult": "not-run",
	}
	for k, v := range want {
		if it.Content[k] != v {
			t.Errorf("inventory-%s: %s = %q, want %q (status: %s)", name, k, it.Content[k], v, g.file(statusFile))
		}
	}
	if it.TypeName != "Custom:ccboot" || !inventory.ValidTime(it.Content["LastRunTime"]) {
		t.Errorf("inventory-%s: TypeName %q, LastRunTime %q", name, it.TypeName, it.Content["LastRunTime"])
	}
	// Only ccboot.json (no temp file) in a folder tree root's alone.
	if ls := strings.Fields(g.file("inventory-ls-" + name + ".txt")); strings.Join(ls, " ") != ". .. ccboot.json" {
		t.Errorf("the agent's custom folder holds %v, want ccboot.json only", ls)
	}
	modes := g.file("inventory-modes-" + name + ".txt")
	for _, w := range []string{"/var/lib/amazon 700 root:root", "/var/lib/amazon/ssm/" + st.InstanceID + "/inventory/custom 700 root:root", wantFile + " 600 root:root"} {
		if !strings.Contains(modes, w+"\n") {
			t.Errorf("want %q in\n%s", w, modes)
		}
	}
	return it.Content
}
