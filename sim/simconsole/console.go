// Package simconsole is the simulated board's serial console: a real
// pseudo-terminal whose master side the board writes text lines to, and
// whose slave side (/dev/pts/N) a bench opens exactly as it would open a
// USB-serial adapter, for example with go.bug.st/serial.
//
// Behaviour a bench can rely on, and why:
//
//   - The board never blocks on its console. Printf queues the line (4096
//     lines by default, dropping the oldest when full) and a goroutine
//     writes it to the pty.
//   - Like a USB-serial adapter, the console only delivers to a port that is
//     open: lines printed while no process has /dev/pts/N open are
//     discarded, so a reader sees what the board prints after it opened the
//     port, never a stale backlog (a boot banner from an earlier cycle
//     would fool a recovery check). A new reader is noticed within about
//     5 ms; lines printed in that gap are lost, as bytes on the wire are
//     before a terminal program opens its port. A reader that keeps the
//     port open but stops reading loses lines once the pty has been full
//     for FullTimeout (an overrun).
//   - Every line ends in "\r\n", like most MCU firmware. The slave is kept
//     in raw mode (no echo, no CR/LF translation, no signals), so a reader
//     gets exactly the bytes the board wrote. Whatever a reader sends to the
//     board is read, handed to Options.Input if set, and otherwise
//     discarded, so the pty never fills that way.
//   - Ptys have no modem lines: DTR/RTS ioctls fail and the baud rate is
//     ignored (see the design notes for go.bug.st/serial).
//   - Options.Link is a stable symlink to the current /dev/pts/N, like a
//     /dev/serial/by-id name; it is replaced atomically (symlink to a
//     temporary name, then rename).
//   - Power: Detach is the board losing power, Attach regaining it. Without
//     Options.Reenumerate the pty stays and is simply silent while
//     detached. With it, the console behaves like a USB adapter powered by
//     the board: Detach destroys the pty (an open reader gets an error) and
//     removes the Link, as udev removes a by-id link, and Attach creates a
//     new pty under a different /dev/pts number and points the Link at it.
//     A bench that holds on to the old path fails; one that follows the
//     Link and reopens works.
package simconsole

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// ErrClosed is returned by operations on a closed Console.
var ErrClosed = errors.New("simconsole: closed")

// Defaults for Options.
const (
	DefaultQueue       = 4096
	DefaultFullTimeout = 250 * time.Millisecond
)

// Options configure a Console.
type Options struct {
	// Link is an optional symlink path kept pointing at the current pty.
	// Its directory is created if needed; an existing non-symlink file
	// there is an error rather than being replaced.
	Link string
	// Reenumerate makes Detach destroy the pty and Attach create a new one
	// (see the package documentation).
	Reenumerate bool
	// Queue is the number of lines buffered between Printf and the pty;
	// 0 means DefaultQueue.
	Queue int
	// FullTimeout is how long a write may wait on a full pty — a reader has
	// the port open but does not read — before its lines are dropped; 0
	// means DefaultFullTimeout.
	FullTimeout time.Duration
	// Logger receives pty lifecycle events; nil means slog.Default().
	Logger *slog.Logger
	// Input, if set, receives the bytes readers send to the board, in
	// order, on the console's goroutine, while it is attached; p is valid
	// only during the call, which must not block (a UART's receive
	// interrupt hands bytes on and returns).
	Input func(p []byte)
}

// Stats counts what happened to the console's traffic. Every Printf ends up
// in exactly one of Lines, Dropped, Unread and Unpowered, once the queue has
// been written out.
type Stats struct {
	// Lines is the number of lines written to the pty for a reader.
	Lines uint64
	// Dropped is the number of lines lost to overflow: the queue was full,
	// or a reader kept the port open without reading for FullTimeout.
	Dropped uint64
	// Unread is the number of lines discarded because no reader had the
	// port open.
	Unread uint64
	// Unpowered is the number of Printf calls discarded while detached.
	Unpowered uint64
	// InputBytes is the number of bytes readers sent to the board.
	InputBytes uint64
	// Ptys is the number of ptys created so far.
	Ptys uint64
}

// Console is a simulated serial console. Its methods are safe for
// concurrent use.
type Console struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	attached bool
	closed   bool
	cur      *port  // nil while detached with Reenumerate, and after Close
	lastPath string // so a re-enumerated pty gets a different number

	lines, dropped, unread, unpowered, input, ptys atomic.Uint64
	// live mirrors attached for the goroutines that must not take mu
	// (Close and Detach hold it while they wait for them).
	live atomic.Bool
}

// port is one pty and the goroutines serving it. The master is driven with
// raw descriptors and level-triggered poll(2): driven through an *os.File
// (the runtime's edge-triggered epoll), output to a reading port was seen to
// stall for seconds under a -race stress run; with poll(2) it did not.
type port struct {
	master int // non-blocking pty master descriptor
	wakeR  int // readable once the port is closing
	wakeW  int
	path   string
	q      chan []byte
	stop   chan struct{}
	wg     sync.WaitGroup
	// reader is whether some process has the slave open; wmu orders
	// writes against the flush done when the last reader leaves.
	reader atomic.Bool
	wmu    sync.Mutex
}

// New creates a Console with its first pty, attached (powered).
func New(opts Options) (*Console, error) {
	if opts.Queue <= 0 {
		opts.Queue = DefaultQueue
	}
	if opts.FullTimeout <= 0 {
		opts.FullTimeout = DefaultFullTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Console{opts: opts, log: log.With("component", "simconsole")}
	if opts.Link != "" {
		fi, err := os.Lstat(opts.Link)
		switch {
		case err == nil && fi.Mode()&fs.ModeSymlink == 0:
			return nil, fmt.Errorf("simconsole: link %s exists and is not a symlink", opts.Link)
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("simconsole: link: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(opts.Link), 0o755); err != nil {
			return nil, fmt.Errorf("simconsole: link directory: %w", err)
		}
	}
	p, err := c.newPort()
	if err != nil {
		return nil, err
	}
	if err := c.pointLink(p.path); err != nil {
		p.close()
		return nil, err
	}
	c.cur = p
	c.attached = true
	c.live.Store(true)
	return c, nil
}

// Path returns the current slave path (/dev/pts/N), or "" while there is no
// pty (detached with Reenumerate, or closed).
func (c *Console) Path() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return ""
	}
	return c.cur.path
}

// Link returns the configured symlink path, "" if none.
func (c *Console) Link() string { return c.opts.Link }

// Attached reports whether the board is powered (between Attach and
// Detach).
func (c *Console) Attached() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.attached
}

// ReaderOpen reports whether some process has the current pty open, as far
// as the console has noticed (see the package documentation).
func (c *Console) ReaderOpen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil && c.cur.reader.Load()
}

// Stats returns the traffic counters.
func (c *Console) Stats() Stats {
	return Stats{
		Lines:      c.lines.Load(),
		Dropped:    c.dropped.Load(),
		Unread:     c.unread.Load(),
		Unpowered:  c.unpowered.Load(),
		InputBytes: c.input.Load(),
		Ptys:       c.ptys.Load(),
	}
}

// Printf writes one line, formatted as by fmt.Sprintf, ending in "\r\n". A
// trailing newline in the text is not doubled and inner newlines become
// "\r\n". It never blocks; while detached or closed the line is discarded.
func (c *Console) Printf(format string, a ...any) {
	s := fmt.Sprintf(format, a...)
	s = strings.TrimRight(s, "\r\n")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	c.queue([]byte(strings.ReplaceAll(s, "\n", "\r\n") + "\r\n"))
}

// Write queues bytes as they are, with no line ending added (a protocol
// the board speaks on its console, such as SMP frames); it counts as one
// line in Stats and is discarded as Printf's lines are. It never blocks
// and always reports len(p).
func (c *Console) Write(p []byte) (int, error) {
	if len(p) > 0 {
		c.queue(append([]byte(nil), p...))
	}
	return len(p), nil
}

func (c *Console) queue(line []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.attached || c.cur == nil {
		c.unpowered.Add(1)
		return
	}
	if !c.cur.reader.Load() {
		// Nobody has the port open: the bytes go nowhere, as on a wire.
		c.unread.Add(1)
		return
	}
	q := c.cur.q
	for {
		select {
		case q <- line:
			return
		default:
		}
		// Full: drop the oldest line, as a board's log ring does.
		select {
		case <-q:
			c.dropped.Add(1)
		default:
		}
	}
}

// Detach is the board losing power: queued lines are lost, and with
// Reenumerate the pty is destroyed and the Link removed.
func (c *Console) Detach() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || !c.attached {
		return
	}
	c.attached = false
	c.live.Store(false)
	if !c.opts.Reenumerate {
		drain(c.cur.q)
		c.log.Debug("console detached", "path", c.cur.path)
		return
	}
	path := c.cur.path
	c.cur.close()
	c.cur = nil
	if c.opts.Link != "" {
		if err := os.Remove(c.opts.Link); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("console link not removed", "link", c.opts.Link, "err", err)
		}
	}
	c.log.Debug("console pty removed", "path", path, "link", c.opts.Link)
}

// Attach is the board regaining power; with Reenumerate a new pty is created
// and the Link pointed at it. Attaching an attached console does nothing.
func (c *Console) Attach() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("simconsole: attach: %w", ErrClosed)
	}
	if c.attached {
		return nil
	}
	if c.cur == nil {
		p, err := c.newPort()
		if err != nil {
			return err
		}
		if err := c.pointLink(p.path); err != nil {
			p.close()
			return err
		}
		c.cur = p
	} else if err := setRaw(c.cur.master); err != nil {
		// A reader may have changed the modes; the board's UART does not
		// care, but a reader that does not set them itself would.
		c.log.Warn("console termios not restored", "path", c.cur.path, "err", err)
	}
	c.attached = true
	c.live.Store(true)
	c.log.Debug("console attached", "path", c.cur.path)
	return nil
}

// Close destroys the pty, stops the goroutines and removes the Link if it
// still points at this console's pty. It is idempotent.
func (c *Console) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	c.attached = false
	c.live.Store(false)
	if c.cur == nil {
		return nil // the link went with the pty at Detach
	}
	path := c.cur.path
	c.cur.close()
	c.cur = nil
	if c.opts.Link != "" {
		// Another console may have taken the link over; leave it then.
		if target, err := os.Readlink(c.opts.Link); err == nil && target == path {
			if err := os.Remove(c.opts.Link); err != nil {
				return fmt.Errorf("simconsole: close: %w", err)
			}
		}
	}
	return nil
}

// newPort opens a pty, in raw mode, whose number differs from the previous
// one so that re-enumeration is visible.
func (c *Console) newPort() (*port, error) {
	var spare []*port
	defer func() {
		for _, p := range spare {
			p.closeFDs()
		}
	}()
	for range 4 {
		p, err := openPort()
		if err != nil {
			return nil, err
		}
		if p.path == c.lastPath {
			spare = append(spare, p) // hold the number so the next open skips it
			continue
		}
		c.lastPath = p.path
		c.ptys.Add(1)
		p.q = make(chan []byte, c.opts.Queue)
		p.stop = make(chan struct{})
		p.wg.Add(2)
		go c.writeLoop(p)
		go c.watchLoop(p)
		c.log.Debug("console pty created", "path", p.path, "link", c.opts.Link)
		return p, nil
	}
	return nil, fmt.Errorf("simconsole: kernel keeps handing out %s", c.lastPath)
}

func openPort() (*port, error) {
	m, s, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("simconsole: open pty: %w", err)
	}
	p := &port{path: s.Name(), master: -1, wakeR: -1, wakeW: -1}
	// The board keeps no slave open, so the master polls as hung up
	// exactly when no reader has the port open.
	s.Close()
	// Own a duplicate so the descriptor outlives the *os.File.
	p.master, err = unix.Dup(int(m.Fd()))
	m.Close()
	if err != nil {
		return nil, fmt.Errorf("simconsole: pty master %s: %w", p.path, err)
	}
	unix.CloseOnExec(p.master)
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		p.closeFDs()
		return nil, fmt.Errorf("simconsole: wake pipe: %w", err)
	}
	p.wakeR, p.wakeW = pipe[0], pipe[1]
	if err := unix.SetNonblock(p.master, true); err != nil {
		p.closeFDs()
		return nil, fmt.Errorf("simconsole: pty master %s: %w", p.path, err)
	}
	if err := setRaw(p.master); err != nil {
		p.closeFDs()
		return nil, fmt.Errorf("simconsole: raw mode on %s: %w", p.path, err)
	}
	return p, nil
}

// setRaw applies cfmakeraw(3) and a nominal 115200 baud (shown by terminal
// programs; a pty ignores it). On Linux the modes set through the master
// are the slave's, and they persist while the master is open.
func setRaw(master int) error {
	t, err := unix.IoctlGetTermios(master, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CBAUD
	t.Cflag |= unix.CS8 | unix.B115200
	t.Ispeed, t.Ospeed = unix.B115200, unix.B115200
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	return unix.IoctlSetTermios(master, unix.TCSETS, t)
}

// wait polls the master for events (POLLIN or POLLOUT; 0 for none) and the
// wake pipe. It returns the master's revents (0 on timeout) and whether the
// port is closing. A negative timeout waits forever.
func (p *port) wait(events int16, timeout time.Duration) (revents int16, closing bool) {
	ms := -1
	if timeout >= 0 {
		ms = int((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	fds := []unix.PollFd{{Fd: int32(p.wakeR), Events: unix.POLLIN}, {Fd: int32(p.master), Events: events}}
	if events == 0 {
		fds = fds[:1]
	}
	for {
		n, err := unix.Poll(fds, ms)
		if err == unix.EINTR {
			continue // the timeout restarts; close enough for these waits
		}
		if err != nil || fds[0].Revents != 0 {
			return 0, true
		}
		if n == 0 || events == 0 {
			return 0, false
		}
		return fds[1].Revents, false
	}
}

// hungUp reports whether no process has the slave open.
func (p *port) hungUp() bool {
	fds := []unix.PollFd{{Fd: int32(p.master), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, 0)
		if err != unix.EINTR {
			return fds[0].Revents&unix.POLLHUP != 0
		}
	}
}

// readerPoll is how often a pty with no reader is checked for a new one;
// lines printed in the gap after a reader opens are lost, as bytes on the
// wire before a terminal program opens its port are.
const readerPoll = 5 * time.Millisecond

// watchLoop tracks whether a reader has the port open, and reads what
// readers send to the board.
func (c *Console) watchLoop(p *port) {
	defer p.wg.Done()
	buf := make([]byte, 4096)
	// While no reader has the port open, wait on a runtime timer, not in
	// poll(2): a blocking system call every readerPoll per idle port holds
	// an OS thread each time and cost hundreds of idle boards most of
	// their CPU.
	idle := time.NewTimer(readerPoll)
	defer idle.Stop()
	for {
		if !p.reader.Load() {
			if p.hungUp() {
				idle.Reset(readerPoll)
				select {
				case <-p.stop:
					return
				case <-idle.C:
				}
				continue
			}
			p.reader.Store(true)
			c.log.Debug("console reader opened", "path", p.path)
		}
		if _, closing := p.wait(unix.POLLIN, -1); closing {
			return
		}
		n, err := unix.Read(p.master, buf)
		if n > 0 {
			c.input.Add(uint64(n))
			if c.opts.Input != nil && c.live.Load() {
				c.opts.Input(buf[:n])
			}
		}
		if err == nil || err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		if err != unix.EIO {
			c.log.Warn("console read failed", "path", p.path, "err", err)
			return
		}
		// The last reader closed. Discard anything written as it left so
		// the next reader does not get stale output, and put the modes
		// back in case the reader changed them.
		p.wmu.Lock()
		flushSlave(p.path)
		if err := setRaw(p.master); err != nil {
			c.log.Warn("console termios not restored", "path", p.path, "err", err)
		}
		p.reader.Store(false)
		p.wmu.Unlock()
		c.log.Debug("console reader closed", "path", p.path)
	}
}

// flushSlave discards output that no reader took. It opens the slave
// briefly; if a new reader already holds it exclusively the open fails and
// the flush is skipped.
func flushSlave(path string) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	_ = unix.IoctlSetInt(fd, unix.TCFLSH, unix.TCIFLUSH)
	unix.Close(fd)
}

// writeLoop moves queued lines into the pty, coalescing whatever is queued
// into one write so a burst of lines costs few system calls.
func (c *Console) writeLoop(p *port) {
	defer p.wg.Done()
	var batch []byte
	for {
		var lines uint64
		select {
		case <-p.stop:
			return
		case line := <-p.q:
			batch = append(batch[:0], line...)
			lines = 1
		}
	more:
		for len(batch) < maxBatch {
			select {
			case line := <-p.q:
				batch = append(batch, line...)
				lines++
			default:
				break more
			}
		}
		if !c.writeBatch(p, batch, lines) {
			return
		}
	}
}

// maxBatch bounds one write to the pty.
const maxBatch = 16 << 10

// writeBatch writes a batch of lines if a reader has the port open, and
// reports false when the port is closing.
func (c *Console) writeBatch(p *port, batch []byte, lines uint64) bool {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if !p.reader.Load() {
		c.unread.Add(lines)
		return true
	}
	deadline := time.Now().Add(c.opts.FullTimeout)
	for len(batch) > 0 {
		n, err := unix.Write(p.master, batch)
		if n > 0 {
			batch = batch[n:]
		}
		switch {
		case err == nil || err == unix.EINTR:
			continue
		case err != unix.EAGAIN:
			c.log.Warn("console write failed", "path", p.path, "err", err)
			return false
		}
		left := time.Until(deadline)
		if left <= 0 {
			// The reader has the port open but has not read for
			// FullTimeout: an overrun, the rest of the batch is lost.
			if c.dropped.Add(lines) == lines {
				c.log.Debug("console overrun: the reader is not reading", "path", p.path)
			}
			return true
		}
		revents, closing := p.wait(unix.POLLOUT, left)
		if closing {
			return false
		}
		if revents&unix.POLLHUP != 0 {
			c.unread.Add(lines) // the reader left mid-batch
			return true
		}
	}
	c.lines.Add(lines)
	return true
}

// drain empties q without blocking.
func drain(q chan []byte) {
	for {
		select {
		case <-q:
		default:
			return
		}
	}
}

// close stops the goroutines, then destroys the pty; an open reader gets an
// error. Descriptors are closed only after no goroutine can use them.
func (p *port) close() {
	close(p.stop)
	_, _ = unix.Write(p.wakeW, []byte{0})
	p.wg.Wait()
	p.closeFDs()
}

func (p *port) closeFDs() {
	for _, fd := range []int{p.master, p.wakeR, p.wakeW} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// pointLink atomically points the Link at path.
func (c *Console) pointLink(path string) error {
	if c.opts.Link == "" {
		return nil
	}
	tmp := c.opts.Link + ".tmp" + strconv.Itoa(os.Getpid())
	os.Remove(tmp) // a leftover from a crashed run
	if err := os.Symlink(path, tmp); err != nil {
		return fmt.Errorf("simconsole: link: %w", err)
	}
	if err := os.Rename(tmp, c.opts.Link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("simconsole: link: %w", err)
	}
	return nil
}
