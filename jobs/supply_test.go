package jobs

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/internal/config"
)

func TestDecodeSupplyKeys(t *testing.T) {
	j := mustParse(t, head+"cuts: [{after_block: 3}, none]\ncut: {brownout: {to: 1700mV, for: 20ms}}\nsample: 10ms\n")
	if len(j.Brownouts) != 1 || j.Brownouts[0] != (bench.Brownout{To: 1.7, For: 20 * time.Millisecond}) {
		t.Errorf("brownouts %+v", j.Brownouts)
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
	if def.Brownouts != nil || def.SampleFor() != bench.DefaultSample {
		t.Errorf("defaults: brownouts %+v, sample %v", def.Brownouts, def.SampleFor())
	}
	// A list of levels: each a pass over the entries with cuts; none once.
	sweep := mustParse(t, head+"cuts: [none, {after_block: {from: 0, to: 1}}]\ncut: {brownout: {to: [1.5V, 2.1V], for: 10ms}}\n")
	cs, err = sweep.Cycles(16)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"none", "after_block 0, brownout to 1.5V for 10ms", "after_block 1, brownout to 1.5V for 10ms",
		"after_block 0, brownout to 2.1V for 10ms", "after_block 1, brownout to 2.1V for 10ms"}
	if got := descs(cs); !slices.Equal(got, want) {
		t.Errorf("sweep plan %q, want %q", got, want)
	}
	if cs[0].Brownout != nil || cs[3].Brownout == nil || cs[3].Brownout.To != 2.1 {
		t.Errorf("sweep brownouts %+v, %+v", cs[0].Brownout, cs[3].Brownout)
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
		{"cut: {brownout: {to: [], for: 20ms}}\n", "4:22: cut.brownout.to: empty list"},
	} {
		_, err := Parse("dir/test.yaml", []byte(head+"cuts: [none]\n"+tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, config.ErrConfig) {
			t.Errorf("%q: %v, want %q", tc.src, err, tc.want)
		}
	}
}

func TestBrownoutRefusesDeviceWork(t *testing.T) {
	for _, cuts := range []string{"[{device_work: 50%}]", "[{random: {count: 3, kind: device_work}}]"} {
		_, err := Parse("dir/test.yaml", []byte(head+"cut: {brownout: {to: 2V, for: 20ms}}\ncuts: "+cuts+"\n"))
		if err == nil || !strings.Contains(err.Error(), "dir/test.yaml:4:8: cuts[0].") || !strings.Contains(err.Error(), ": device_work cuts are made by the device's own power input") || !strings.Contains(err.Error(), "(cut: at line 3)") {
			t.Errorf("%s: %v", cuts, err)
		}
	}
}
