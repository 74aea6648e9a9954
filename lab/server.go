package lab

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ServerOptions configure the NATS server a coordinator embeds.
type ServerOptions struct {
	// Dir holds JetStream's files (streams, the KV bucket).
	Dir string
	// Host is the address to listen on; empty means 127.0.0.1: nothing
	// listens beyond loopback unless told to.
	Host string
	// Port is the client port; 0 picks a free one.
	Port int
	// Log receives the server's notices and errors; nil discards them.
	Log *slog.Logger
	// TLS, when set, is required of every client.
	TLS *tls.Config
	// Keys, when set, are the only users the server admits: the
	// coordinator and the enrolled agents, each agent with
	// AgentPermissions. Enrolling an agent later reloads the server.
	Keys *Keys
}

// Server is an embedded NATS server with JetStream.
type Server struct {
	ns   *server.Server
	opts *server.Options
	tls  bool
	mu   sync.Mutex // one reload at a time
}

// StartServer starts an embedded NATS server with JetStream storing
// under o.Dir, and waits until it takes connections.
func StartServer(o ServerOptions) (*Server, error) {
	host := o.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := o.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: "fudbench",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   filepath.Join(o.Dir, "jetstream"),
		NoSigs:     true, // the command owns SIGINT and SIGTERM
		NoLog:      o.Log == nil,
	}
	if o.Keys != nil {
		opts.Nkeys = o.Keys.users()
	}
	if o.TLS != nil {
		opts.TLS, opts.TLSConfig, opts.TLSTimeout = true, o.TLS, 5
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("lab: nats server: %w", err)
	}
	if o.Log != nil {
		ns.SetLoggerV2(slogLogger{o.Log.With("part", "nats")}, false, false, false)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("lab: nats server on %s:%d did not start within 10s", host, o.Port)
	}
	srv := &Server{ns: ns, opts: opts.Clone(), tls: o.TLS != nil}
	if o.Keys != nil {
		o.Keys.mu.Lock()
		o.Keys.srv = srv
		o.Keys.mu.Unlock()
	}
	return srv, nil
}

// setUsers replaces the server's users, keeping its connections.
func (s *Server) setUsers(us []*server.NkeyUser) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	opts := s.opts.Clone()
	opts.Nkeys = us
	if err := s.ns.ReloadOptions(opts); err != nil {
		return fmt.Errorf("lab: nats server: reload users: %w", err)
	}
	s.opts = opts.Clone()
	return nil
}

// ClientURL is the URL agents and clients connect to: tls:// when the
// server requires TLS.
func (s *Server) ClientURL() string {
	u := s.ns.ClientURL() // tls:// already when the server wants TLS
	if s.tls && strings.HasPrefix(u, "nats://") {
		u = "tls://" + strings.TrimPrefix(u, "nats://")
	}
	return u
}

// Shutdown stops the server and waits until it has stopped.
func (s *Server) Shutdown(ctx context.Context) {
	s.ns.Shutdown()
	done := make(chan struct{})
	go func() { s.ns.WaitForShutdown(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// slogLogger hands the NATS server's log to slog.
type slogLogger struct{ l *slog.Logger }

func (g slogLogger) Noticef(format string, v ...any) { g.l.Debug(fmt.Sprintf(format, v...)) }
func (g slogLogger) Warnf(format string, v ...any)   { g.l.Warn(fmt.Sprintf(format, v...)) }
func (g slogLogger) Fatalf(format string, v ...any)  { g.l.Error(fmt.Sprintf(format, v...)) }
func (g slogLogger) Errorf(format string, v ...any)  { g.l.Error(fmt.Sprintf(format, v...)) }
func (g slogLogger) Debugf(format string, v ...any)  { g.l.Debug(fmt.Sprintf(format, v...)) }
func (g slogLogger) Tracef(format string, v ...any)  {}
