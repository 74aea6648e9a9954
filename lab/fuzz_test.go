package lab

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/results"
)

// FuzzDecodeMessage: whatever an agent sends on the events stream, the
// coordinator decodes it or refuses it with an error, and a decoded
// message carries the subject's run and agent, never the body's.
func FuzzDecodeMessage(f *testing.F) {
	good := func(m Message) []byte {
		b, _ := json.Marshal(m)
		return b
	}
	f.Add("events.r1.pi1", good(Message{Kind: MsgStart, Attempt: 1, Info: &results.RunInfo{ID: "x", Boards: []string{"a"}}}))
	f.Add("events.r1.pi1", good(Message{Kind: MsgEvents, Attempt: 2, Run: "other", Agent: "pi2",
		Events: []results.Event{{T: time.Second, Board: "a", Kind: results.BlockSent, Block: 3}}}))
	f.Add("events.r1.pi1", good(Message{Kind: MsgCycle, Attempt: 1, Cycle: &results.Cycle{Board: "a", Cycle: 1, Outcome: results.Updated}}))
	f.Add("events.r1.pi1", good(Message{Kind: MsgEnd, Attempt: 1, End: &End{Status: "pass"}}))
	f.Add("events.r1", []byte(`{}`))
	f.Add("events.r.1.pi1", []byte(`{"kind":"end","attempt":1,"end":{}}`))
	f.Add("events.r1.pi1", []byte(`{"kind":"cycle","attempt":1,"cycle":null}`))
	f.Add("events.r1.pi1", []byte(`{"kind":"events","attempt":1,"events":[{"t":"x"}]}`))
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		m, err := DecodeMessage(subject, data)
		if err != nil {
			return
		}
		parts := strings.Split(subject, ".")
		if m.Run != parts[1] || m.Agent != parts[2] {
			t.Fatalf("decoded run %q agent %q from subject %q", m.Run, m.Agent, subject)
		}
		if m.Attempt < 1 {
			t.Fatalf("attempt %d", m.Attempt)
		}
		switch m.Kind {
		case MsgStart:
			_ = m.Info.Boards
		case MsgCycle:
			_ = m.Cycle.Board
		case MsgEnd:
			_ = m.End.Status
		case MsgEvents:
			if len(m.Events) == 0 {
				t.Fatal("events message without events")
			}
		default:
			t.Fatalf("kind %q", m.Kind)
		}
	})
}

// FuzzParseKeys: the agents' keys file gives keys or an error at its
// line, never a panic, and every key it gives is a valid name and key.
func FuzzParseKeys(f *testing.F) {
	f.Add([]byte("# agents\npi1 UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4\n\n"))
	f.Add([]byte("pi1 UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4 extra\n"))
	f.Add([]byte("pi.1 SUAB\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		agents, err := parseKeys("agents.nkeys", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "agents.nkeys:") {
				t.Fatalf("error without its line: %v", err)
			}
			return
		}
		for name, key := range agents {
			if CheckToken("agent", name) != nil || !strings.HasPrefix(key, "U") {
				t.Fatalf("agent %q key %q", name, key)
			}
		}
	})
}

// FuzzDecodeTask: a queued job's body decodes or is refused.
func FuzzDecodeTask(f *testing.F) {
	b, _ := json.Marshal(Task{Run: "r1", Pool: "default", JobFile: "j.yaml", Job: []byte("name: x\n"), Images: map[string]string{"a.bin": "00"}})
	f.Add(b)
	f.Add([]byte(`{"run":"r1.x","pool":"p"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		task, err := DecodeTask(data)
		if err != nil {
			return
		}
		if CheckToken("run", task.Run) != nil || CheckToken("pool", task.Pool) != nil {
			t.Fatalf("task %+v", task)
		}
	})
}
