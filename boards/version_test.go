package boards_test

import (
	"strings"
	"testing"

	"github.com/fudbench/fudbench/boards"
)

func TestVersionCheckDecode(t *testing.T) {
	const head = "boards:\n  - name: d\n    console: {port: /dev/ttyX}\n    coap:\n      address: 127.0.0.1:5683\n      profile: block1\n      "
	for _, tc := range []struct {
		name, yaml, mode, get, text, version string
	}{
		{"none", "version: none", boards.VersionNone, "", "", ""},
		{"lwm2m", "version: lwm2m", boards.VersionCoAP, "/3/0/3", " 1.4.2\n", "1.4.2"},
		{"get", "version: {get: /fw/version}", boards.VersionCoAP, "/fw/version", "2.0.0", "2.0.0"},
		{"match group", `version: {get: /fw, match: '^version (\S+)'}`, boards.VersionCoAP, "/fw", "version 2.1.0\nabc", "2.1.0"},
		{"named group", `version: {get: /v, match: '(app|boot) (?P<version>\S+)'}`, boards.VersionCoAP, "/v", "app 3.0.0", "3.0.0"},
		{"console", `version: {console: 'APP v(\S+) ready'}`, boards.VersionConsole, "", "APP v1.2.3 ready", "1.2.3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv, err := boards.Parse("bench.yaml", []byte(head+tc.yaml+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			v := inv.Boards[0].CoAP.Version
			if v == nil || v.Mode != tc.mode || v.Get != tc.get {
				t.Fatalf("check %+v, want mode %s get %q", v, tc.mode, tc.get)
			}
			if tc.text != "" {
				if got, ok := v.Extract(tc.text); !ok || got != tc.version {
					t.Errorf("Extract(%q) = %q, %v; want %q", tc.text, got, ok, tc.version)
				}
			}
		})
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown", "version: fancy", `bench.yaml:7:16: board d: coap.version: unknown check "fancy"`},
		{"both", "version: {get: /v, console: x}", "give exactly one of get: or console:"},
		{"bad regexp", "version: {get: /v, match: '(x'}", "bench.yaml:7:33: board d: coap.version.match: error parsing regexp"},
		{"two groups", `version: {get: /v, match: '(a)(b)'}`, "the version is the first group, make the others non-capturing"},
		{"match with console", "version: {console: x, match: y}", "match: is for get:"},
		{"relative get", "version: {get: fw}", "want an absolute URI path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := boards.Parse("bench.yaml", []byte(head+tc.yaml+"\n"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	// A resumable device answers GET /fw/version itself; a console check
	// needs a console.
	_, err := boards.Parse("bench.yaml", []byte(strings.Replace(head, "profile: block1", "profile: resumable", 1)+"version: none\n"))
	if err == nil || !strings.Contains(err.Error(), "profile: block1") {
		t.Errorf("resumable: %v", err)
	}
	_, err = boards.Parse("bench.yaml", []byte(strings.Replace(head, "    console: {port: /dev/ttyX}\n", "", 1)+"version: {console: x}\n"))
	if err == nil || !strings.Contains(err.Error(), "has no console") {
		t.Errorf("no console: %v", err)
	}
}
