package openocd_test

import (
	"strings"
	"testing"

	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/probes/openocd"
)

func TestOpenSettings(t *testing.T) {
	tests := []struct {
		name     string
		s        probes.MapSettings
		wantErr  string
		wantName string
	}{
		{name: "defaults", s: probes.MapSettings{}, wantName: "openocd:127.0.0.1:6666"},
		{name: "all", s: probes.MapSettings{
			"address": "[::1]:7777", "timeout": "2m", "program": "preverify verify",
			"reset": "reset halt; resume", "halt": "halt", "temp_dir": "/tmp",
		}, wantName: "openocd:[::1]:7777"},
		{name: "no port", s: probes.MapSettings{"address": "localhost"}, wantErr: "no host:port"},
		{name: "bad timeout", s: probes.MapSettings{"timeout": "soon"}, wantErr: "timeout"},
		{name: "zero timeout", s: probes.MapSettings{"timeout": "0s"}, wantErr: "must be positive"},
		{name: "program exit", s: probes.MapSettings{"program": "verify exit"}, wantErr: `"exit" is not allowed`},
		{name: "program reset", s: probes.MapSettings{"program": "reset"}, wantErr: `"reset" is not allowed`},
		{name: "program odd word", s: probes.MapSettings{"program": "verify;shutdown"}, wantErr: "only letters"},
		{name: "reset unbalanced", s: probes.MapSettings{"reset": "reset run }"}, wantErr: "unmatched close brace"},
		{name: "halt terminator", s: probes.MapSettings{"halt": "halt\x1a"}, wantErr: "0x1a"},
		{name: "temp_dir brace", s: probes.MapSettings{"temp_dir": "/tmp/{x}"}, wantErr: "temp_dir"},
		{name: "unknown key", s: probes.MapSettings{"adress": "x"}, wantErr: `unknown key "adress"`},
		{name: "wrong kind", s: probes.MapSettings{"timeout": 60}, wantErr: "settings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := probes.Open(openocd.Driver, tt.s)
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
			_, e := f.(probes.Eraser)
			_, r := f.(probes.Reader)
			_, h := f.(probes.Halter)
			if !e || !r || !h {
				t.Errorf("abilities: eraser %v, reader %v, halter %v; want all", e, r, h)
			}
		})
	}
}
