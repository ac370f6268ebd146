package packaging_test

import (
	"reflect"
	"regexp"
	"strconv"
	"testing"
)

// The optional inventory association gathers this stack's instance with
// custom inventory on, after the first run, no more often than SSM allows
// (30 minutes), and is off unless asked for, like the repair schedule.
func TestTemplateInventoryAssociation(t *testing.T) {
	t.Parallel()
	tpl := loadTemplate(t)
	as := dig(tpl, "Resources", "InventoryAssociation")
	if dig(as, "Type") != "AWS::SSM::Association" || dig(as, "Condition") != "GatherInventory" ||
		dig(as, "Properties", "Name") != "AWS-GatherSoftwareInventory" ||
		!reflect.DeepEqual(dig(as, "Properties", "Parameters"), map[string]any{"customInventory": []any{"Enabled"}}) ||
		!reflect.DeepEqual(dig(as, "Properties", "Targets"), []any{map[string]any{"Key": "InstanceIds", "Values": []any{map[string]any{"Ref": "Instance"}}}}) {
		t.Errorf("InventoryAssociation = %v", as)
	}
	if dig(as, "DependsOn") != "WaitCondition" {
		t.Error("InventoryAssociation must wait for the first run (DependsOn: WaitCondition), so its first gather finds the file")
	}
	sched, _ := dig(as, "Properties", "ScheduleExpression").(string)
	m := regexp.MustCompile(`^rate\(([0-9]+) (minutes|hour|hours|day|days)\)$`).FindStringSubmatch(sched)
	if m == nil {
		t.Fatalf("ScheduleExpression %q: want rate(N unit)", sched)
	}
	if n, _ := strconv.Atoi(m[1]); m[2] == "minutes" && n < 30 {
		t.Errorf("ScheduleExpression %q: inventory gathers at most every 30 minutes", sched)
	}
	if got := dig(tpl, "Conditions", "GatherInventory"); !reflect.DeepEqual(got, map[string]any{"Fn::Equals": []any{map[string]any{"Ref": "EnableInventory"}, "true"}}) {
		t.Errorf("GatherInventory condition = %v", got)
	}
	if got := dig(tpl, "Parameters", "EnableInventory", "Default"); got != "false" {
		t.Errorf("EnableInventory default = %v, want false", got)
	}
	// The agent uploads with the instance role: ssm:PutInventory comes
	// with AmazonSSMManagedInstanceCore.
	found := false
	for _, p := range dig(tpl, "Resources", "Ec2Role", "Properties", "ManagedPolicyArns").([]any) {
		if reflect.DeepEqual(p, map[string]any{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"}) {
			found = true
		}
	}
	if !found {
		t.Error("Ec2Role lacks AmazonSSMManagedInstanceCore (ssm:PutInventory)")
	}
}
