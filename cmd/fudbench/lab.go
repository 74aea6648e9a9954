package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/internal/simbench"
	"github.com/fudbench/fudbench/jobs"
	"github.com/fudbench/fudbench/lab"
	"github.com/fudbench/fudbench/results"
)

// Lab mode's defaults: everything on loopback, state in the working
// directory (like fudbench-out), so one machine needs no set-up.
const (
	defaultLabDir    = "fudbench-lab"
	defaultListen    = "127.0.0.1:8080"
	defaultNATSPort  = 4222
	submitTokenFile  = "submit.token"
	readTokenFile    = "read.token"
	agentKeysFile    = "agents.nkeys"
	envServer        = "FUDBENCH_SERVER"
	envToken         = "FUDBENCH_TOKEN"
	envSubmitToken   = "FUDBENCH_SUBMIT_TOKEN"
	envReadToken     = "FUDBENCH_READ_TOKEN"
	envCA            = "FUDBENCH_CA"
	defaultServerURL = "http://" + defaultListen
)

// labClient is the flags every client of the coordinator shares.
type labClient struct {
	server, tokenFile, ca string
}

func (lc *labClient) flags(c *cobra.Command, scope string) {
	c.Flags().StringVar(&lc.server, "server", "", "coordinator URL (default $"+envServer+", else "+defaultServerURL+")")
	c.Flags().StringVar(&lc.ca, "ca", "", "CA certificate (PEM) the coordinator's TLS certificate chains to, beyond the system's (default $"+envCA+")")
	c.Flags().StringVar(&lc.tokenFile, "token-file", "", "file holding the API token (default $"+envToken+", else "+defaultLabDir+"/"+scope+" when it exists)")
}

// client builds the API client; the token comes from --token-file, the
// environment, or the coordinator's own data directory on this machine.
func (lc *labClient) client(scope string) (*lab.Client, error) {
	url := lc.server
	if url == "" {
		url = os.Getenv(envServer)
	}
	if url == "" {
		url = defaultServerURL
	}
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	tok := os.Getenv(envToken)
	path := lc.tokenFile
	if path == "" && tok == "" {
		if _, err := os.Stat(filepath.Join(defaultLabDir, scope)); err == nil {
			path = filepath.Join(defaultLabDir, scope)
		}
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, usageErr(fmt.Errorf("--token-file: %w", err))
		}
		tok = strings.TrimSpace(string(b))
	}
	ca := cmp.Or(lc.ca, os.Getenv(envCA))
	pool, err := lab.CertPool(ca)
	if err != nil {
		return nil, usageErr(fmt.Errorf("--ca: %w", err))
	}
	lc.ca = ca
	hc := &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, Proxy: http.ProxyFromEnvironment,
	}}
	return &lab.Client{URL: url, Token: tok, HTTP: hc}, nil
}

// apiErr gives a client error its exit code.
func apiErr(err error) error {
	switch {
	case errors.Is(err, lab.ErrInvalid), errors.Is(err, lab.ErrUnauthorized), errors.Is(err, lab.ErrNoRun):
		return usageErr(err)
	}
	return infraErr(err)
}

func newServeCmd(g *globals) *cobra.Command {
	var (
		listen, natsURL, natsListen, dataDir string
		natsKey, tlsCert, tlsKey             string
		ackWait, leaseTTL                    time.Duration
		replicas                             int
	)
	cmd := &cobra.Command{
		Use:   "serve [--listen ADDR] [--nats URL] [--data DIR]",
		Short: "Run the lab coordinator: job queue, central results, HTTP API and dashboard",
		Long: `Run the coordinator of a lab: agents on the bench hosts take the jobs it
queues, and report every event back to its results database (the schema of
fudbench run's). It serves an HTTP API and a live dashboard.

NATS with JetStream carries the queue, the board leases and the events: an
embedded server storing under --data, unless --nats names an external one
(a cluster: --nats nats://h1:4222,nats://h2:4222).

Nothing listens beyond loopback unless told to (--listen, --nats-listen).
The API wants a bearer token: a read token (list, follow, reports; what
agents use) and a submit token (also submit and cancel). They are taken from
$` + envReadToken + ` and $` + envSubmitToken + `, else made once and kept in
DIR/` + readTokenFile + ` and DIR/` + submitTokenFile + ` (mode 0600), where clients on
this machine find them.

Stop it with Ctrl-C or SIGTERM; agents wait for it to come back.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if ackWait < 2*time.Second || leaseTTL < time.Second {
				return usageErr(fmt.Errorf("--ack-wait %v, --lease-ttl %v: want at least 2s and 1s", ackWait, leaseTTL))
			}
			if replicas < 1 || replicas > 5 || (replicas > 1 && natsURL == "") {
				return usageErr(fmt.Errorf("--replicas %d: want 1 to 5, and more than 1 only with an external cluster (--nats)", replicas))
			}
			if natsKey != "" && natsURL == "" {
				return usageErr(errors.New("--nats-nkey is for an external NATS (--nats)"))
			}
			if (tlsCert == "") != (tlsKey == "") {
				return usageErr(errors.New("--tls-cert and --tls-key go together"))
			}
			var tc *tls.Config
			if tlsCert != "" {
				cert, err := tls.LoadX509KeyPair(tlsCert, tlsKey)
				if err != nil {
					return usageErr(fmt.Errorf("--tls-cert, --tls-key: %w", err))
				}
				tc = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			}
			return serveLab(c, g, listen, natsURL, natsListen, natsKey, dataDir, tc, lab.CoordinatorOptions{AckWait: ackWait, LeaseTTL: leaseTTL, Replicas: replicas})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&listen, "listen", defaultListen, "HTTP API and dashboard address")
	fl.StringVar(&natsURL, "nats", "", "external NATS server(s) with JetStream, comma-separated (default: embedded)")
	fl.StringVar(&tlsCert, "tls-cert", "", "serve the API over HTTPS and the embedded NATS over TLS with this certificate (PEM)")
	fl.StringVar(&tlsKey, "tls-key", "", "the certificate's private key (PEM)")
	fl.StringVar(&natsKey, "nats-nkey", "", "external NATS: the coordinator's nkey seed file")
	fl.StringVar(&natsListen, "nats-listen", fmt.Sprintf("127.0.0.1:%d", defaultNATSPort), "embedded NATS server's client address (port 0: any free one)")
	fl.StringVar(&dataDir, "data", defaultLabDir, "directory for the results database, tokens and the embedded server's streams")
	fl.IntVar(&replicas, "replicas", 1, "external cluster: servers that keep each stream and bucket (3 outlives a server)")
	fl.DurationVar(&ackWait, "ack-wait", lab.DefaultAckWait, "how long a job whose agent went silent waits before another agent takes it")
	fl.DurationVar(&leaseTTL, "lease-ttl", lab.DefaultLeaseTTL, "how long a silent agent's boards stay leased")
	return cmd
}

// labTokens reads the API tokens from the environment, or from the data
// directory, making them there on first start.
func labTokens(dir string) (lab.Tokens, error) {
	get := func(env, file string) (string, error) {
		if t := os.Getenv(env); t != "" {
			return t, nil
		}
		path := filepath.Join(dir, file)
		if b, err := os.ReadFile(path); err == nil {
			if t := strings.TrimSpace(string(b)); t != "" {
				return t, nil
			}
		}
		t := lab.NewToken()
		if err := os.WriteFile(path, []byte(t+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("token: %w", err)
		}
		return t, nil
	}
	var ts lab.Tokens
	var err error
	if ts.Read, err = get(envReadToken, readTokenFile); err != nil {
		return ts, err
	}
	ts.Submit, err = get(envSubmitToken, submitTokenFile)
	return ts, err
}

func serveLab(c *cobra.Command, g *globals, listen, natsURL, natsListen, natsKey, dataDir string, tc *tls.Config, co lab.CoordinatorOptions) error {
	ctx := c.Context()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return usageErr(fmt.Errorf("--data: %w", err))
	}
	// The API's address first: a port in use fails before anything starts.
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return usageErr(fmt.Errorf("--listen: %w", err))
	}
	defer ln.Close()
	tokens, err := labTokens(dataDir)
	if err != nil {
		return infraErr(err)
	}
	var (
		srv  *lab.Server
		keys *lab.Keys
		auth nats.Option
	)
	if natsURL == "" {
		host, port, err := splitHostPort(natsListen)
		if err != nil {
			return usageErr(fmt.Errorf("--nats-listen: %w", err))
		}
		// Only the coordinator and enrolled agents, each with its own
		// nkey, may connect.
		if keys, err = lab.LoadKeys(filepath.Join(dataDir, agentKeysFile)); err != nil {
			return usageErr(err)
		}
		if srv, err = lab.StartServer(lab.ServerOptions{Dir: dataDir, Host: host, Port: port, Log: g.log, Keys: keys, TLS: tc}); err != nil {
			return infraErr(err)
		}
		defer srv.Shutdown(context.Background())
		natsURL, auth = srv.ClientURL(), keys.CoordinatorOption()
	} else if natsKey != "" {
		kp, err := lab.ReadKey(natsKey)
		if err != nil {
			return usageErr(fmt.Errorf("--nats-nkey: %w", err))
		}
		auth = lab.NkeyOption(kp)
	}
	opts := []nats.Option{nats.Name("fudbench serve"), nats.MaxReconnects(-1), nats.ReconnectWait(500 * time.Millisecond)}
	if tc != nil && srv != nil {
		// The coordinator trusts its own certificate on its own server.
		pool, _ := lab.CertPool("")
		for _, c := range tc.Certificates {
			if leaf, err := x509.ParseCertificate(c.Certificate[0]); err == nil {
				pool.AddCert(leaf)
			}
		}
		opts = append(opts, nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	}
	if auth != nil {
		opts = append(opts, auth)
	}
	nc, err := nats.Connect(natsURL, opts...)
	if err != nil {
		return infraErr(fmt.Errorf("nats %s: %w", natsURL, err))
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return infraErr(err)
	}
	db, err := results.OpenDB(filepath.Join(dataDir, "results.db"))
	if err != nil {
		return infraErr(err)
	}
	defer db.Close()
	co.DB, co.Log = db, g.log
	coord, err := lab.NewCoordinator(ctx, js, co)
	if err != nil {
		return infraErr(err)
	}
	api := &lab.API{C: coord, Tokens: tokens, NATS: natsURL, Keys: keys, Log: g.log}
	hs := lab.NewHTTPServer(api.Handler())
	url := "http://" + ln.Addr().String()
	if tc != nil {
		hs.TLSConfig = tc
		url = "https://" + ln.Addr().String()
		go hs.ServeTLS(ln, "", "")
	} else {
		go hs.Serve(ln)
	}
	ingestDone := make(chan struct{})
	go func() { defer close(ingestDone); coord.Ingest(ctx) }()
	// The tokens stay in their files: a service's output goes to logs.
	fmt.Fprintf(c.OutOrStdout(), "fudbench lab coordinator\n  API        %s\n  dashboard  %s/#token=(the read token, %s)\n  NATS       %s\n  data       %s\n",
		url, url, filepath.Join(dataDir, readTokenFile), natsURL, dataDir)
	g.log.Info("serving", "api", url, "nats", natsURL)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	<-ingestDone
	return errInterrupted
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	var port int
	if _, err := fmt.Sscan(p, &port); err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q", p)
	}
	return host, port, nil
}

// agentNameRE cleans a host name into an agent name.
var agentNameRE = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

func newAgentCmd(g *globals) *cobra.Command {
	var (
		lc                       labClient
		benchFile, name, natsURL string
		dataDir, nkeyFile        string
		pools                    []string
		timeScale                float64
	)
	cmd := &cobra.Command{
		Use:   "agent [--bench FILE] [--server URL] [--name NAME]",
		Short: "Run a bench host's agent: take the lab's jobs for this host's boards",
		Long: `Run the agent of one bench host. It announces its boards (name, tags, pool,
drivers, what each is running and its last outcome), takes the jobs queued
for the pools its boards serve in, runs them with the same executor as
fudbench run, and sends every event and cycle to the coordinator.

A job runs on the agent's boards of its pool, selected by the job's boards:
or tag: as in fudbench run; the job's bench: is the agent's. Boards are
leased under the agent's name, so two agents may have boards of the same
name: a pool's boards are interchangeable.

With no --bench, the agent serves the built-in simulated boards, in the
pool --pool names (default: default); --pool BOARD=POOL puts one board in
another pool. With --bench, each board's pool: says it.

The agent owns its boards' safe state: on Ctrl-C or SIGTERM, and when it
loses the coordinator for half the job's ack wait, it powers its boards to
their safe state and gives the job back; another agent of the pool resumes
it without running a finished cycle again.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			return runAgent(c, g, &lc, benchFile, name, natsURL, nkeyFile, pools, dataDir, timeScale)
		},
	}
	lc.flags(cmd, submitTokenFile+" or "+readTokenFile)
	fl := cmd.Flags()
	fl.StringVar(&nkeyFile, "nkey", "", "the agent's NATS nkey seed, made on first start (default: fudbench/agent-NAME.nk in the user's config directory)")
	fl.StringVar(&benchFile, "bench", "", "bench file of this host's boards (default: the built-in simulated boards)")
	fl.StringVar(&name, "name", "", "agent name, unique in the lab (default: the host name)")
	fl.StringVar(&natsURL, "nats", "", "NATS URL (default: the one the coordinator gives)")
	fl.StringArrayVar(&pools, "pool", nil, "built-in boards: their pool (POOL), or one board's (BOARD=POOL); repeatable")
	fl.StringVar(&dataDir, "data", "", "directory for each run's local files (default: a temporary one)")
	fl.Float64Var(&timeScale, "time-scale", defaultTimeScale, "built-in sim boards: scale of flash and boot timings")
	return cmd
}

func runAgent(c *cobra.Command, g *globals, lc *labClient, benchFile, name, natsURL, nkeyFile string, pools []string, dataDir string, timeScale float64) error {
	ctx := c.Context()
	host, _ := os.Hostname()
	if name == "" {
		name = strings.Trim(agentNameRE.ReplaceAllString(host, "-"), "-")
	}
	if err := lab.CheckToken("--name", name); err != nil {
		return usageErr(err)
	}
	var inv *boards.Bench
	var bds []boards.Board
	if benchFile != "" {
		if len(pools) > 0 {
			return usageErr(errors.New("--pool is for the built-in boards: a bench file gives each board its pool (pool: key)"))
		}
		var err error
		if inv, err = boards.Load(benchFile); err != nil {
			return usageErr(err)
		}
		bds = inv.Boards
	} else {
		plan, err := builtinBench()
		if err != nil {
			return err
		}
		pool, per := lab.DefaultPool, map[string]string{}
		for _, p := range pools {
			if b, q, ok := strings.Cut(p, "="); ok {
				if _, err := plan.Board(b); err != nil {
					return usageErr(fmt.Errorf("--pool %s: %w", p, err))
				}
				per[b] = q
			} else {
				pool = p
			}
		}
		for _, b := range plan.Boards {
			b.Pool = cmp.Or(per[b.Name], pool)
			bds = append(bds, b)
		}
	}
	for _, b := range bds {
		if b.Pool != "" {
			if err := lab.CheckToken("pool", b.Pool); err != nil {
				return usageErr(fmt.Errorf("%s: board %s: %w", cmp.Or(benchFile, builtinName), b.Name, err))
			}
		}
	}
	// On the coordinator's machine, its submit token enrols the agent at
	// once; elsewhere the operator gives a token, or enrols the key.
	scope := submitTokenFile
	if _, err := os.Stat(filepath.Join(defaultLabDir, scope)); err != nil {
		scope = readTokenFile
	}
	cl, err := lc.client(scope)
	if err != nil {
		return err
	}
	if nkeyFile == "" {
		dir, err := os.UserConfigDir()
		if err != nil {
			return usageErr(fmt.Errorf("--nkey: %w", err))
		}
		nkeyFile = filepath.Join(dir, "fudbench", "agent-"+name+".nk")
	}
	kp, err := lab.AgentKey(nkeyFile)
	if err != nil {
		return usageErr(err)
	}
	pub, _ := kp.PublicKey()
	li, err := cl.Lab(ctx)
	if err != nil {
		return apiErr(err)
	}
	if !li.External {
		err := cl.Enroll(ctx, name, pub)
		switch {
		case errors.Is(err, lab.ErrConflict):
			return usageErr(fmt.Errorf("agent %s: %w", name, err))
		case errors.Is(err, lab.ErrUnauthorized):
			// A read token cannot enrol: the key may be enrolled already.
			g.log.Debug("not enrolled through the API", "err", err)
		case err != nil:
			return apiErr(err)
		}
	}
	if natsURL == "" {
		natsURL = li.NATS
	}
	if dataDir == "" {
		d, err := os.MkdirTemp("", "fudbench-agent-")
		if err != nil {
			return infraErr(err)
		}
		defer os.RemoveAll(d)
		dataDir = d
	}
	opts := []nats.Option{nats.Name("fudbench agent " + name), lab.NkeyOption(kp), nats.MaxReconnects(-1)}
	if strings.Contains(natsURL, "tls://") || lc.ca != "" {
		// The coordinator's server wants TLS: verified against the
		// system's roots and --ca.
		pool, err := lab.CertPool(lc.ca)
		if err != nil {
			return usageErr(fmt.Errorf("--ca: %w", err))
		}
		opts = append(opts, nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	}
	nc, err := nats.Connect(natsURL, append(opts,
		nats.ReconnectWait(500*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { g.log.Warn("lost the lab's NATS server", "err", err) }),
		nats.ReconnectHandler(func(*nats.Conn) { g.log.Info("back with the lab's NATS server") }))...)
	if errors.Is(err, nats.ErrAuthorization) {
		return usageErr(fmt.Errorf("nats %s refused agent %s's key %s: enrol it (give the agent the submit token, or add \"%s %s\" to the coordinator's %s)",
			natsURL, name, nkeyFile, name, pub, agentKeysFile))
	}
	if err != nil {
		return infraErr(fmt.Errorf("nats %s: %w", natsURL, err))
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return infraErr(err)
	}
	ag, err := lab.NewAgent(ctx, js, lab.AgentOptions{
		Name: name, Host: host, Version: readVersion().String(), Boards: bds, Dir: dataDir,
		State:     cl.State,
		Exec:      agentExec(g, inv, timeScale),
		Log:       g.log.With("agent", name),
		Connected: nc.IsConnected,
		AckWait:   li.AckWait, LeaseTTL: li.LeaseTTL,
	})
	if err != nil {
		if ctx.Err() != nil {
			return errInterrupted
		}
		return classify(err)
	}
	if err := ag.Claim(ctx); err != nil {
		return usageErr(err)
	}
	fmt.Fprintf(c.OutOrStdout(), "fudbench agent %s: %d board(s) in pool(s) %s; coordinator %s\n",
		name, len(bds), strings.Join(ag.Pools(), ", "), cl.URL)
	err = ag.Run(ctx)
	if ctx.Err() != nil {
		return errInterrupted
	}
	return infraErr(err)
}

// builtinBench is the built-in simulated bench as an agent announces it.
func builtinBench() (*boards.Bench, error) {
	dir := filepath.Join(os.TempDir(), "fudbench-run")
	return simbench.Plan(builtinName, inProcessBoards(defaultTimeScale, dir), dir)
}

// agentExec runs an assignment on the agent's boards: the bench file's
// (inv), or the built-in simulated boards when inv is nil.
func agentExec(g *globals, inv *boards.Bench, timeScale float64) lab.ExecFunc {
	return func(ctx context.Context, a *lab.Assignment) lab.End {
		log := g.log.With("run", a.Run.ID)
		var pinv *boards.Bench
		if inv != nil {
			pinv = &boards.Bench{File: inv.File, Boards: a.Boards}
		}
		job := a.Job
		job.Bench = ""
		if pinv == nil {
			// The built-in boards of the job's pool, as its boards: or
			// tag: selects them: the job may use no other.
			names, err := job.SelectBoards(a.Boards)
			if err != nil {
				return endOf(usageErr(err))
			}
			job.Boards, job.Tag = names, ""
		}
		st, err := stage(ctx, job, pinv, timeScale, jobs.PrepareOptions{Use: jobs.UseRun, Log: log}, log)
		if err != nil {
			return endOf(err)
		}
		defer st.close()
		ri := a.Run
		ri.Boards = st.prep.Names()
		ri.Planned = map[string]int{}
		for _, n := range ri.Boards {
			ri.Planned[n] = len(st.prep.Plan)
		}
		a.Started(ri)
		rep, err := jobs.Execute(ctx, jobs.RunOptions{
			Prepared: st.prep, Run: a.Run, OutDir: a.OutDir, DB: a.DB, Resume: a.Resume,
			Locker: a.Locker, Log: log, Out: io.Discard,
			Tx:      coap.Transmission{AckTimeout: 500 * time.Millisecond, MaxRetransmit: 3},
			Console: true, Witnesses: st.witnesses,
			Sinks: a.Sinks, Recorded: a.Recorded,
		})
		if rep == nil {
			if errors.Is(err, jobs.ErrPrepare) {
				return endOf(infraErr(err))
			}
			return endOf(classify(err))
		}
		if err != nil {
			log.Error("run", "err", err)
		}
		err = runResult(rep, err)
		e := endOf(err)
		if !rep.Interrupted {
			e.Status = string(rep.Summary.Verdict)
		}
		return e
	}
}

// endOf turns a run's error into how it ended.
func endOf(err error) lab.End {
	if err == nil {
		return lab.End{Status: string(results.VerdictPass), Exit: ExitOK}
	}
	return lab.End{Status: lab.StatusError, Exit: exitCode(err), Error: err.Error()}
}

func newSubmitCmd(g *globals) *cobra.Command {
	var (
		lc                  labClient
		pool, junit, report string
		wait                bool
	)
	cmd := &cobra.Command{
		Use:   "submit JOB [--server URL] [--pool POOL] [--wait] [--junit FILE] [--report FILE]",
		Short: "Submit a job to the lab; with --wait, follow it and exit as fudbench run would",
		Long: `Submit a job file to the lab's coordinator, with the images it names, and
print the run ID on stdout. The job is checked first (exit 2 with
file:line:column, nothing queued), then queued for the pool's agents.

With --wait, follow the run's cycles as they finish and exit with fudbench
run's exit codes: 0 every outcome accepted, 1 an outcome not accepted or a
security finding, 2 a bad job, 3 the bench failed, 130 cancelled. --junit
and --report then write the run's JUnit XML and HTML report locally.
Ctrl-C stops waiting; the run goes on (fudbench cancel RUN stops it).`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return submitJob(c, g, &lc, args[0], pool, wait, junit, report)
		},
	}
	lc.flags(cmd, submitTokenFile)
	fl := cmd.Flags()
	fl.StringVar(&pool, "pool", lab.DefaultPool, "pool whose agents run the job")
	fl.BoolVar(&wait, "wait", false, "follow the run until it ends, and exit with its code")
	fl.StringVar(&junit, "junit", "", "with --wait: write the run's JUnit XML here")
	fl.StringVar(&report, "report", "", "with --wait: write the run's HTML report here")
	return cmd
}

func submitJob(c *cobra.Command, g *globals, lc *labClient, path, pool string, wait bool, junit, report string) error {
	ctx := c.Context()
	if (junit != "" || report != "") && !wait {
		return usageErr(errors.New("--junit and --report need --wait"))
	}
	if err := lab.CheckToken("--pool", pool); err != nil {
		return usageErr(err)
	}
	job, err := jobs.Load(path)
	if err != nil {
		return usageErr(err)
	}
	// The agents read the job as written: ${NAME} would be theirs to
	// expand, or nobody's. Refused here, before anything is sent.
	if _, err := jobs.Parse(path, job.Text); err != nil {
		return usageErr(err)
	}
	cl, err := lc.client(submitTokenFile)
	if err != nil {
		return err
	}
	req := lab.SubmitRequest{JobFile: path, Job: job.Text, Pool: pool, Images: map[string]string{}}
	for _, im := range []jobs.ImageSpec{job.Baseline, job.Image} {
		if im.File == "" {
			continue
		}
		data, err := readImageFile(im.File)
		if err != nil {
			return usageErr(fmt.Errorf("%s: %w", path, err))
		}
		d, err := cl.PutImage(ctx, data)
		if err != nil {
			return apiErr(err)
		}
		req.Images[im.File] = d
	}
	out, err := cl.Submit(ctx, req)
	if err != nil {
		return apiErr(err)
	}
	fmt.Fprintln(c.OutOrStdout(), out.Run.ID)
	errw := c.ErrOrStderr()
	fmt.Fprintf(errw, "queued %s (job %s) in pool %s\n", out.Run.ID, out.Run.Job, out.Run.Pool)
	if out.Warning != "" {
		fmt.Fprintf(errw, "warning: %s\n", out.Warning)
	}
	if !wait {
		return nil
	}
	st, err := follow(ctx, cl, out.Run.ID, errw, g.log)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(errw, "stopped waiting; run %s goes on (fudbench cancel %s stops it)\n", out.Run.ID, out.Run.ID)
			return errInterrupted
		}
		return infraErr(err)
	}
	for _, a := range []struct{ file, name string }{{junit, "junit.xml"}, {report, "report.html"}} {
		if a.file == "" || !isVerdict(st.Status) {
			continue
		}
		b, err := cl.Artifact(ctx, st.ID, a.name)
		if err == nil {
			err = os.WriteFile(a.file, b, 0o644)
		}
		if err != nil {
			return infraErr(fmt.Errorf("%s: %w", a.name, err))
		}
		fmt.Fprintf(errw, "%s: %s\n", a.name, a.file)
	}
	if st.Exit == 0 {
		return nil
	}
	msg := st.Status
	if st.Error != "" {
		msg += ": " + st.Error
	}
	return &exitError{st.Exit, fmt.Errorf("run %s: %s", st.ID, msg)}
}

func isVerdict(s string) bool {
	switch results.Verdict(s) {
	case results.VerdictPass, results.VerdictFail, results.VerdictInfraError:
		return true
	}
	return false
}

// readImageFile reads an image the job names, within the image limit.
func readImageFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Size() > fwimage.MaxImageSize {
		return nil, fmt.Errorf("image %s is %d bytes: the limit is %d", path, fi.Size(), fwimage.MaxImageSize)
	}
	return os.ReadFile(path)
}

// follow prints a run's cycles as they are recorded until it ends. The
// coordinator going away for a while (a restart) is waited out.
func follow(ctx context.Context, cl *lab.Client, id string, w io.Writer, log *slog.Logger) (lab.RunState, error) {
	shown, status, down := 0, "", time.Time{}
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := cl.Run(ctx, id)
		if err == nil && st.Done > shown {
			var cs []results.Cycle
			if cs, err = cl.CyclesSince(ctx, id, shown); err == nil {
				for _, c := range cs {
					mark := "ok"
					if !c.Accepted {
						mark = "FAIL"
					}
					fmt.Fprintf(w, "  %-12s cycle %-4d %-14s %-4s %s\n", c.Board, c.Cycle, c.Outcome, mark, c.Plan)
				}
				shown += len(cs)
			}
		}
		switch {
		case err != nil && ctx.Err() != nil:
			return st, ctx.Err()
		case errors.Is(err, lab.ErrNoRun), errors.Is(err, lab.ErrUnauthorized):
			return st, err
		case err != nil:
			if down.IsZero() {
				down = time.Now()
				log.Warn("coordinator not answering; still waiting", "err", err)
			}
		default:
			down = time.Time{}
			if st.Status != status {
				status = st.Status
				where := ""
				if st.Agent != "" {
					where = " on " + st.Agent
				}
				fmt.Fprintf(w, "%s: %s%s\n", id, st.Status, where)
			}
			if st.Ended() {
				fmt.Fprintf(w, "%s: %d/%d cycles, %d failed, exit %d\n", id, st.Done, st.Planned, st.Failed, st.Exit)
				return st, nil
			}
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-tick.C:
		}
	}
}

func newRunsCmd(g *globals) *cobra.Command {
	var lc labClient
	cmd := &cobra.Command{
		Use:   "runs [--server URL]",
		Short: "List the lab's runs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := lc.client(readTokenFile)
			if err != nil {
				return err
			}
			runs, err := cl.Runs(c.Context())
			if err != nil {
				return apiErr(err)
			}
			w := c.OutOrStdout()
			fmt.Fprintf(w, "%-31s %-16s %-10s %-12s %-12s %9s %s\n", "RUN", "JOB", "POOL", "AGENT", "STATUS", "CYCLES", "SUBMITTED")
			for _, r := range runs {
				fmt.Fprintf(w, "%-31s %-16s %-10s %-12s %-12s %4d/%-4d %s\n", r.ID, r.Job, r.Pool, orDash(r.Agent), r.Status,
					r.Done, r.Planned, r.Submitted.Local().Format(time.DateTime))
			}
			return nil
		},
	}
	lc.flags(cmd, readTokenFile)
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newCancelCmd(g *globals) *cobra.Command {
	var lc labClient
	cmd := &cobra.Command{
		Use:   "cancel RUN [--server URL]",
		Short: "Cancel a lab run: a queued one never runs, a running one stops with its boards safe",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := lc.client(submitTokenFile)
			if err != nil {
				return err
			}
			st, err := cl.Cancel(c.Context(), args[0])
			if err != nil {
				return apiErr(err)
			}
			fmt.Fprintf(c.OutOrStdout(), "%s: %s\n", st.ID, st.Status)
			return nil
		},
	}
	lc.flags(cmd, submitTokenFile)
	return cmd
}
