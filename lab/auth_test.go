package lab

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/fudbench/fudbench/jobs"
	"github.com/fudbench/fudbench/results"
)

// TestAgentPermissions: on the embedded server, only enrolled keys
// connect, and an agent writes only its own subjects.
func TestAgentPermissions(t *testing.T) {
	dir := t.TempDir()
	keys, err := LoadKeys(filepath.Join(dir, "agents.nkeys"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := StartServer(ServerOptions{Dir: dir, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	ctx := ctxT(t, time.Minute)

	// The coordinator connects with its own key and sets the lab up.
	nc, err := nats.Connect(s.ClientURL(), keys.CoordinatorOption())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cjs, _ := jetstream.New(nc)
	db, err := results.OpenDB(filepath.Join(dir, "results.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := NewCoordinator(ctx, cjs, CoordinatorOptions{DB: db}); err != nil {
		t.Fatal(err)
	}

	pi1, _ := AgentKey(filepath.Join(dir, "pi1.nk"))
	pi2, _ := AgentKey(filepath.Join(dir, "pi2.nk"))
	stranger, _ := nkeys.CreateUser()
	if _, err := nats.Connect(s.ClientURL()); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("connect without a key: %v, want an authorization error", err)
	}
	if _, err := nats.Connect(s.ClientURL(), NkeyOption(pi1)); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("connect with a key not enrolled: %v, want an authorization error", err)
	}
	for name, kp := range map[string]nkeys.KeyPair{"pi1": pi1, "pi2": pi2} {
		pub, _ := kp.PublicKey()
		if err := keys.Enroll(name, pub); err != nil {
			t.Fatal(err)
		}
	}
	// Enrolled: the server took the key without a restart.
	anc, err := nats.Connect(s.ClientURL(), NkeyOption(pi1), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatalf("connect after enrolling: %v", err)
	}
	defer anc.Close()
	ajs, _ := jetstream.New(anc)
	spub, _ := stranger.PublicKey()
	if err := keys.Enroll("pi1", spub); !errors.Is(err, ErrKeyConflict) {
		t.Errorf("pi1 enrolled again with another key: %v", err)
	}
	if err := keys.Enroll("pi1.x", spub); !errors.Is(err, ErrInvalid) {
		t.Errorf("a bad agent name enrolled: %v", err)
	}

	pub := func(subj string) error {
		c, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := ajs.Publish(c, subj, []byte("{}"))
		return err
	}
	for _, subj := range []string{"events.r1.pi1", "$KV." + AgentsBucket + ".pi1"} {
		if err := pub(subj); err != nil {
			t.Errorf("pi1 publishing on its own %s: %v", subj, err)
		}
	}
	for _, subj := range []string{"events.r1.pi2", "events.r1.pi1x", "$KV." + LeasesBucket + ".pi2.sim-safe",
		"$KV." + AgentsBucket + ".pi2", "$KV." + RunsBucket + ".r1", "jobs.default"} {
		if err := pub(subj); err == nil {
			t.Errorf("pi1 published on %s", subj)
		}
	}
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := ajs.DeleteStream(c, JobsStream); err == nil {
		t.Error("pi1 deleted the jobs stream")
	}
	// What an agent needs works under its permissions: leases of its own
	// boards, the runs it watches, the job queue.
	a, err := NewAgent(ctx, ajs, AgentOptions{Name: "pi1"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := agentLocker{a.leases, "pi1"}.Acquire(ctx, "sim-safe", testHolder("r1"))
	if err != nil {
		t.Fatalf("pi1 leasing its board: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Errorf("pi1 releasing its board: %v", err)
	}
	if _, err := (agentLocker{a.leases, "pi2"}).Acquire(c, "sim-safe", testHolder("r1")); err == nil {
		t.Error("pi1 leased pi2's board")
	}
	if _, _, err := getRun(ctx, a.runs, "nope"); !errors.Is(err, ErrNoRun) {
		t.Errorf("pi1 reading a run: %v", err)
	}
	if _, err := a.queue.Pool(ctx, "default", 1); err != nil {
		t.Errorf("pi1 opening its pool: %v", err)
	}

	// The enrolment is kept.
	again, err := LoadKeys(filepath.Join(dir, "agents.nkeys"))
	if err != nil || len(again.agents) != 2 {
		t.Fatalf("keys read back: %v, %v", again.agents, err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "agents.nkeys"))
	for _, f := range strings.Fields(string(b)) {
		if strings.HasPrefix(f, "SU") { // a user seed; public keys start with U
			t.Error("the keys file holds a seed")
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, "pi1.nk")); fi.Mode().Perm() != 0o600 {
		t.Errorf("agent seed file mode %v, want 0600", fi.Mode().Perm())
	}
}

func testHolder(run string) jobs.Holder { return jobs.Holder{Run: run, Host: "test"} }
