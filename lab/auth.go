package lab

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// AgentPermissions is what an agent may do on the lab's NATS, by name:
// publish its own events, lease its own boards, announce itself, take
// jobs and acknowledge them, and read (through JetStream's API and its
// own inbox) the runs, the leases, the agents and the images. It cannot
// write another agent's events, leases or announcement, a run's state,
// or anything of the streams' configuration.
func AgentPermissions(agent string) *server.Permissions {
	allow := []string{
		"events.*." + agent,
		"$KV." + LeasesBucket + "." + agent + ".>",
		"$KV." + AgentsBucket + "." + agent,
		"$JS.API.INFO",
		"$JS.API.STREAM.INFO.*",
		"$JS.API.CONSUMER.INFO." + JobsStream + ".*",
		"$JS.API.CONSUMER.CREATE." + JobsStream + ".>",
		"$JS.API.CONSUMER.DURABLE.CREATE." + JobsStream + ".>",
		"$JS.API.CONSUMER.MSG.NEXT." + JobsStream + ".>",
		"$JS.ACK." + JobsStream + ".>",
		"$JS.FC.>",
	}
	// The read side of the buckets: gets, and the ordered consumers of
	// watches, key listings and object reads.
	for _, s := range []string{"KV_" + RunsBucket, "KV_" + LeasesBucket, "KV_" + AgentsBucket, "OBJ_" + ImagesBucket} {
		allow = append(allow,
			"$JS.API.DIRECT.GET."+s+".>", "$JS.API.DIRECT.GET."+s,
			"$JS.API.STREAM.MSG.GET."+s,
			"$JS.API.CONSUMER.CREATE."+s+".>", "$JS.API.CONSUMER.CREATE."+s,
			"$JS.API.CONSUMER.DELETE."+s+".>",
			"$JS.API.CONSUMER.MSG.NEXT."+s+".>",
			"$JS.ACK."+s+".>")
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: allow},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}
}

// Keys are the lab's NATS users on an embedded server: the coordinator's
// own (made at each start, never written down) and each agent's, by
// name, kept in a file of "NAME PUBLIC-KEY" lines.
type Keys struct {
	file  string
	coord nkeys.KeyPair

	mu     sync.Mutex
	agents map[string]string
	srv    *Server
}

// ErrKeyConflict is an agent enrolling under a name another key has.
var ErrKeyConflict = errors.New("enrolled with another key")

// LoadKeys reads the agents' keys from file (which may not exist yet).
func LoadKeys(file string) (*Keys, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	k := &Keys{file: file, coord: kp, agents: map[string]string{}}
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lab: agent keys: %w", err)
	}
	if k.agents, err = parseKeys(file, b); err != nil {
		return nil, err
	}
	return k, nil
}

// parseKeys reads "NAME PUBLIC-KEY" lines; # starts a comment line.
func parseKeys(file string, b []byte) (map[string]string, error) {
	agents := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 || CheckToken("agent", f[0]) != nil || !nkeys.IsValidPublicUserKey(f[1]) {
			return nil, fmt.Errorf("%s:%d: want an agent name and its public user nkey (U…)", file, n)
		}
		agents[f[0]] = f[1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return agents, nil
}

// users are the server's nkey users for these keys.
func (k *Keys) users() []*server.NkeyUser {
	pub, _ := k.coord.PublicKey()
	us := []*server.NkeyUser{{Nkey: pub}}
	names := make([]string, 0, len(k.agents))
	for n := range k.agents {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		us = append(us, &server.NkeyUser{Nkey: k.agents[n], Permissions: AgentPermissions(n)})
	}
	return us
}

// CoordinatorOption connects as the coordinator.
func (k *Keys) CoordinatorOption() nats.Option {
	pub, _ := k.coord.PublicKey()
	return nats.Nkey(pub, k.coord.Sign)
}

// Enroll admits an agent's public key under its name, for good: the
// same key again is fine, another key under the name is ErrKeyConflict.
func (k *Keys) Enroll(name, pub string) error {
	if err := CheckToken("agent", name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if !nkeys.IsValidPublicUserKey(pub) {
		return fmt.Errorf("%w: %q is not a public user nkey", ErrInvalid, pub)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	switch have, ok := k.agents[name]; {
	case ok && have == pub:
		return nil
	case ok:
		return fmt.Errorf("agent %s is %w (remove its line from %s to enroll it again)", name, ErrKeyConflict, k.file)
	}
	f, err := os.OpenFile(k.file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("lab: enroll %s: %w", name, err)
	}
	_, err = fmt.Fprintf(f, "%s %s\n", name, pub)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("lab: enroll %s: %w", name, err)
	}
	k.agents[name] = pub
	if k.srv != nil {
		return k.srv.setUsers(k.users())
	}
	return nil
}

// AgentKey reads an agent's nkey seed from path, making one there (mode
// 0600) when there is none.
func AgentKey(path string) (nkeys.KeyPair, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return nil, err
		}
		seed, _ := kp.Seed()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("agent key: %w", err)
		}
		if err := os.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
			return nil, fmt.Errorf("agent key: %w", err)
		}
		return kp, nil
	}
	if err != nil {
		return nil, fmt.Errorf("agent key: %w", err)
	}
	return parseKey(path, b)
}

// ReadKey reads an nkey seed file.
func ReadKey(path string) (nkeys.KeyPair, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseKey(path, b)
}

func parseKey(path string, b []byte) (nkeys.KeyPair, error) {
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return nil, fmt.Errorf("nkey %s: %w", path, err)
	}
	if _, err := kp.Seed(); err != nil {
		return nil, fmt.Errorf("nkey %s holds no seed: %w", path, err)
	}
	return kp, nil
}

// NkeyOption connects with kp.
func NkeyOption(kp nkeys.KeyPair) nats.Option {
	pub, _ := kp.PublicKey()
	return nats.Nkey(pub, kp.Sign)
}

// CertPool is the system's roots and, when caFile is not empty, the
// certificates of caFile (a lab's own CA, or a self-signed server
// certificate).
func CertPool(caFile string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if caFile == "" {
		return pool, nil
	}
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	return pool, nil
}
