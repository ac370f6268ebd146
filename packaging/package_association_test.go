package packaging_test

import (
	"reflect"
	"testing"

	"github.com/ccboot/ccboot/packaging/cfn"
)

// TestCcbootPackageAssociation: the AWS-ConfigureAWSPackage association
// exists only when CcbootPackageName is set; it installs that package in
// place (never "Uninstall and reinstall", which would remove ccboot's
// units first), daily, on the stack's instance, after the first run; the
// version is passed only when pinned (empty: the package's default).
func TestCcbootPackageAssociation(t *testing.T) {
	tpl := loadTemplate(t)
	st := testStacks()[0]
	resolve := func(given map[string]string) map[string]any {
		t.Helper()
		res, err := cfn.Resolve(tpl, cfnStack(st, given))
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if _, ok := resolve(nil)["CcbootPackageAssociation"]; ok {
		t.Error("CcbootPackageAssociation exists without CcbootPackageName")
	}
	for _, c := range []struct {
		version string
		want    map[string]any
	}{
		{"", map[string]any{"action": []any{"Install"}, "installationType": []any{"In-place update"}, "name": []any{"ccboot"}}},
		{"v1.2.0", map[string]any{"action": []any{"Install"}, "installationType": []any{"In-place update"}, "name": []any{"ccboot"}, "version": []any{"v1.2.0"}}},
	} {
		as, ok := resolve(map[string]string{"CcbootPackageName": "ccboot", "CcbootPackageVersion": c.version})["CcbootPackageAssociation"]
		if !ok {
			t.Fatalf("version %q: no CcbootPackageAssociation with CcbootPackageName set", c.version)
		}
		if dig(as, "Type") != "AWS::SSM::Association" || dig(as, "Properties", "Name") != "AWS-ConfigureAWSPackage" ||
			dig(as, "Properties", "ScheduleExpression") != "rate(1 day)" || dig(as, "DependsOn") != "WaitCondition" {
			t.Errorf("version %q: CcbootPackageAssociation = %v", c.version, as)
		}
		if got := dig(as, "Properties", "Parameters"); !reflect.DeepEqual(got, c.want) {
			t.Errorf("version %q: parameters %v, want %v", c.version, got, c.want)
		}
		if got := dig(as, "Properties", "Targets"); !reflect.DeepEqual(got, []any{map[string]any{"Key": "InstanceIds", "Values": []any{instanceID}}}) {
			t.Errorf("version %q: targets %v, want the stack's instance", c.version, got)
		}
	}
}
