package jobs

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/internal/config"
)

func TestDecodeSupplyKeys(t *testing.T) {
	j := mustParse(t, head+"cuts: [{after_block: 3}, none]\ncut: {brownout: {to: 1700mV, for: 20ms}}\nsample: 10ms\n")
	if j.Brownout == nil || *j.Brownout != (bench.Brownout{To: 1.7, For: 20 * time.Millisecond}) {
		t.Errorf("brownout %+v", j.Brownout)
	}
	if j.SampleFor() != 10*time.Millisecond {
		t.Errorf("sample %v", j.SampleFor())
	}
	cs, err := j.Cycles(16)
	if err != nil {
		t.Fatal(err)
	}
	if cs[0].Desc != "after_block 3, brownout to 1.7V for 20ms" || cs[1].Desc != "none" {
		t.Errorf("plan %q, %q", cs[0].Desc, cs[1].Desc)
	}

	def := mustParse(t, head+"cuts: [none]\ncut: off\n")
	if def.Brownout != nil || def.SampleFor() != bench.DefaultSample {
		t.Errorf("defaults: brownout %+v, sample %v", def.Brownout, def.SampleFor())
	}
	if off := mustParse(t, head+"cuts: [none]\nsample: off\n"); off.SampleFor() != 0 {
		t.Errorf("sample off: %v", off.SampleFor())
	}

	for _, tc := range []struct{ src, want string }{
		{"cut: hard\n", `4:6: cut "hard": want off`},
		{"cut: {brownout: {to: 1.7V}}\n", "4:17: cut.brownout: want both to:"},
		{"cut: {brownout: {to: 1.7A, for: 20ms}}\n", `4:22: cut.brownout.to: "1.7A": want a number of volts`},
		{"cut: {brownout: {to: 99V, for: 20ms}}\n", "4:22: cut.brownout.to 99V: want 0V to 60V"},
		{"cut: {brownout: {to: 1.7V, for: 100us}}\n", "4:33: cut.brownout.for 100µs: want at least 1ms"},
		{"cut: {brownout: {to: 1.7V, for: 20ms, at: 3}}\n", "4:39: cut.brownout: unknown key \"at\""},
		{"cut: {sag: 1}\n", "4:7: cut: unknown key"},
		{"sample: 1ms\n", "4:9: sample 1ms: want at least 5ms, or off"},
	} {
		_, err := Parse("dir/test.yaml", []byte(head+"cuts: [none]\n"+tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, config.ErrConfig) {
			t.Errorf("%q: %v, want %q", tc.src, err, tc.want)
		}
	}
}
