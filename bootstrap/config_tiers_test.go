package bootstrap

import (
	"strings"
	"testing"
)

// [tiers] mode: advisory by default (today's behaviour), enforced when
// asked, anything else one line naming the allowed values.
func TestConfigTierMode(t *testing.T) {
	t.Parallel()
	if c := DefaultConfig(); c.TierMode != TierAdvisory || c.Enforced() {
		t.Errorf("default mode %q, enforced %v", c.TierMode, c.Enforced())
	}
	c, errs := loadFromSets(t, "[tiers]\nmode = enforced\n", nil)
	if len(errs) != 0 || !c.Enforced() {
		t.Errorf("mode = enforced: %v, enforced %v", errs, c.Enforced())
	}
	got := problems(t, "[tiers]\nmode = Enforced\n", "tiers.mode=strict")
	want := []string{
		`/etc/ccboot/ccboot.conf: [tiers] mode = "Enforced": must be advisory or enforced`,
		`--set tiers.mode="strict": must be advisory or enforced`,
	}
	if len(got) != len(want) {
		t.Fatalf("problems %q, want %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d: %q, want %q", i, got[i], want[i])
		}
	}
}
