package stm32uart_test

import (
	"strings"
	"testing"

	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/probes/stm32uart"
)

func TestOpenSettings(t *testing.T) {
	tests := []struct {
		name     string
		s        probes.MapSettings
		wantErr  string
		wantName string
	}{
		{name: "minimal", s: probes.MapSettings{"port": "/dev/ttyUSB0"}, wantName: "stm32uart:/dev/ttyUSB0"},
		{
			name:     "all",
			s:        probes.MapSettings{"port": "/dev/pts/3", "baud": 57600, "parity": "none", "timeout": "2s", "erase": "0x44", "page_size": 2048},
			wantName: "stm32uart:/dev/pts/3",
		},
		{name: "erase auto", s: probes.MapSettings{"port": "p", "erase": "auto"}, wantName: "stm32uart:p"},
		{name: "no port", s: probes.MapSettings{}, wantErr: "port: required"},
		{name: "bad parity", s: probes.MapSettings{"port": "p", "parity": "odd"}, wantErr: `parity: "odd"`},
		{name: "bad erase", s: probes.MapSettings{"port": "p", "erase": "mass"}, wantErr: `erase: "mass"`},
		{name: "bad timeout", s: probes.MapSettings{"port": "p", "timeout": "soon"}, wantErr: "timeout"},
		{name: "zero timeout", s: probes.MapSettings{"port": "p", "timeout": "0s"}, wantErr: "must be positive"},
		{name: "negative baud", s: probes.MapSettings{"port": "p", "baud": -1}, wantErr: "baud: -1"},
		{name: "odd page size", s: probes.MapSettings{"port": "p", "page_size": 1000}, wantErr: "not a power of two"},
		{name: "negative page size", s: probes.MapSettings{"port": "p", "page_size": -1}, wantErr: "page_size: -1"},
		{name: "unknown key", s: probes.MapSettings{"port": "p", "boot0_reset": "dtr"}, wantErr: `unknown key "boot0_reset"`},
		{name: "baud as text", s: probes.MapSettings{"port": "p", "baud": "fast"}, wantErr: "settings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := probes.Open(stm32uart.Driver, tt.s)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.String() != tt.wantName {
				t.Errorf("String() = %q, want %q", f, tt.wantName)
			}
			if _, ok := f.(probes.Eraser); !ok {
				t.Error("not an Eraser")
			}
			if _, ok := f.(probes.Reader); !ok {
				t.Error("not a Reader")
			}
		})
	}
}

// TestOpenMissingPort: the port is opened on first use, and its absence
// is an error that names it.
func TestOpenMissingPort(t *testing.T) {
	p := newProbe(t, stm32uart.Config{Port: "/dev/nonexistent-stm32uart"})
	err := p.Reset(t.Context())
	if err == nil || !strings.HasPrefix(err.Error(), "stm32uart:/dev/nonexistent-stm32uart: open: ") {
		t.Fatalf("err %v", err)
	}
}
