package gdbrsp_test

import (
	"strings"
	"testing"

	"github.com/goccy/go-yaml/ast"

	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/probes/gdbrsp"
)

func TestOpenSettings(t *testing.T) {
	tests := []struct {
		name     string
		s        probes.MapSettings
		wantErr  string
		wantName string
	}{
		{name: "minimal", s: probes.MapSettings{"address": "127.0.0.1:3333"}, wantName: "gdbrsp:127.0.0.1:3333"},
		{name: "all", s: probes.MapSettings{"address": "[::1]:2331", "reset": "system_reset", "halt": "halt", "timeout": "30s", "verify": "read"}, wantName: "gdbrsp:[::1]:2331"},
		{name: "no address", s: probes.MapSettings{}, wantErr: "address: required"},
		{name: "no port", s: probes.MapSettings{"address": "localhost"}, wantErr: "no host:port"},
		{name: "bad timeout", s: probes.MapSettings{"address": "h:1", "timeout": "soon"}, wantErr: "timeout"},
		{name: "zero timeout", s: probes.MapSettings{"address": "h:1", "timeout": "0s"}, wantErr: "must be positive"},
		{name: "bad verify", s: probes.MapSettings{"address": "h:1", "verify": "sha"}, wantErr: `verify: "sha"`},
		{name: "erased 0x00", s: probes.MapSettings{"address": "h:1", "erased": 0x00}, wantName: "gdbrsp:h:1"},
		{name: "erased 0xff", s: probes.MapSettings{"address": "h:1", "erased": 0xff}, wantName: "gdbrsp:h:1"},
		{name: "bad erased", s: probes.MapSettings{"address": "h:1", "erased": 0x0f}, wantErr: "erased: 0xf (want 0xff or 0x00)"},
		{name: "erased as text", s: probes.MapSettings{"address": "h:1", "erased": "0xff"}, wantErr: "cannot unmarshal string"},
		{name: "unknown key", s: probes.MapSettings{"address": "h:1", "adress": "x"}, wantErr: `unknown key "adress"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := probes.Open(gdbrsp.Driver, tt.s)
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
			for _, ok := range []bool{isEraser(f), isReader(f), isHalter(f)} {
				if !ok {
					t.Error("gdbrsp lacks an optional ability")
				}
			}
		})
	}
}

// TestOpenYAML: the settings as a bench file holds them, where 0xff and
// 0x00 are YAML integers.
func TestOpenYAML(t *testing.T) {
	tests := []struct {
		doc     string
		wantErr string
	}{
		{doc: "{address: h:1, erased: 0xff}"},
		{doc: "{address: h:1, erased: 0x00}"},
		{doc: "{address: h:1, erased: 0x80}", wantErr: "erased: 0x80 (want 0xff or 0x00)"},
		{doc: "{address: h:1, erased: -1}", wantErr: "erased: -0x1"},
		{doc: "{address: h:1, erased: yes}", wantErr: "bench.yaml:1:24"},
	}
	for _, tt := range tests {
		t.Run(tt.doc, func(t *testing.T) {
			d, n, err := config.Parse("bench.yaml", []byte(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			f, err := probes.Open(gdbrsp.Driver, yamlSettings{d, n})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
		})
	}
}

// yamlSettings is a probe's section of a bench file.
type yamlSettings struct {
	d *config.Decoder
	n ast.Node
}

func (s yamlSettings) Decode(v any) error { return s.d.DecodeNode(s.n, v) }

func isEraser(f probes.Flasher) bool { _, ok := f.(probes.Eraser); return ok }
func isReader(f probes.Flasher) bool { _, ok := f.(probes.Reader); return ok }
func isHalter(f probes.Flasher) bool { _, ok := f.(probes.Halter); return ok }
