package results

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"
)

// A cycle's security findings, its secured recovery and the device
// nonces it first saw survive the database, count in the summary as
// device failures whatever the outcome, and reach JUnit and the table.
func TestSecurityFindingsRecorded(t *testing.T) {
	d, _ := openTestDB(t)
	run := testRun("sec")
	if err := d.BeginRun(run); err != nil {
		t.Fatal(err)
	}
	sr := &SecureRecovery{Profile: "oscore", Echo: 1, FirstBlock: 12 * time.Millisecond, Bytes: 4321, Replay: "rejected",
		Handshakes: []Handshake{{Kind: "none"}}}
	clean := Cycle{Run: run.ID, Board: "b", Cycle: 1, Plan: "after_block 3", Outcome: Updated, Accepted: true, Secure: sr,
		Nonces: []NonceUse{{Proto: "oscore", Key: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Nonce: []byte{9, 9}, CT: 77, Cycle: 1}}}
	reuse := Cycle{Run: run.ID, Board: "b", Cycle: 2, Plan: "after_block 4", Outcome: Updated, Accepted: true,
		Findings: []Finding{{Kind: FindingNonceReuse, Detail: "oscore nonce 0909 used again"}},
		Nonces: []NonceUse{
			// The same nonce again is not stored twice: the first use stays.
			{Proto: "oscore", Key: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Nonce: []byte{9, 9}, CT: 78, Cycle: 2},
			{Proto: "dtls", Key: []byte{8}, Nonce: []byte{0, 1, 0, 0, 0, 0, 0, 5}, CT: 5, Cycle: 2},
		}}
	for _, c := range []Cycle{clean, reuse} {
		if err := d.RecordCycle(c); err != nil {
			t.Fatal(err)
		}
	}
	cs, err := d.Cycles(run.ID)
	if err != nil || len(cs) != 2 {
		t.Fatalf("cycles %d, %v", len(cs), err)
	}
	if !reflect.DeepEqual(cs[0].Secure, sr) || cs[0].Findings != nil {
		t.Errorf("clean cycle read back: secure %+v findings %v", cs[0].Secure, cs[0].Findings)
	}
	if !reflect.DeepEqual(cs[1].Findings, reuse.Findings) || cs[1].Secure != nil {
		t.Errorf("reuse cycle read back: %+v", cs[1])
	}
	ns, err := d.Nonces(run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 2 || ns[0].CT != 77 || ns[0].Cycle != 1 || ns[0].Board != "b" || ns[1].Proto != "dtls" {
		t.Fatalf("nonces %+v", ns)
	}

	s := Summarize(run, cs)
	if s.Verdict != VerdictFail || s.Findings[FindingNonceReuse] != 1 || len(s.Failures) != 1 || s.Failures[0].Cycle != 2 {
		t.Fatalf("summary: verdict %s findings %v failures %+v", s.Verdict, s.Findings, s.Failures)
	}
	var table bytes.Buffer
	if err := WriteTable(&table, s); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "SECURITY nonce-reuse") || !strings.Contains(table.String(), "security findings: 1") {
		t.Errorf("table does not show the finding:\n%s", table.String())
	}
	doc := BuildJUnit(s, cs)
	out, err := MarshalJUnit(doc)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `type="nonce-reuse"`) || doc.Failures != 1 {
		t.Errorf("JUnit: failures %d\n%s", doc.Failures, out)
	}
}
