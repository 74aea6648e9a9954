package console_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/fudbench/fudbench/bench/console"
	"github.com/fudbench/fudbench/results"
	"github.com/fudbench/fudbench/sim/simconsole"
)

// Waiting for a board's recovery banner across a power cycle that
// re-enumerates its USB-serial adapter.
func Example() {
	dir, _ := os.MkdirTemp("", "console-example")
	defer os.RemoveAll(dir)
	quiet := slog.New(slog.DiscardHandler)
	link := filepath.Join(dir, "usb-board-if00") // like /dev/serial/by-id/...
	board, _ := simconsole.New(simconsole.Options{Link: link, Reenumerate: true, Logger: quiet})
	defer board.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	mem := &results.Memory{}
	c, err := console.Open(ctx, console.Config{Path: link}, console.Options{Board: "nrf52-1", Sink: mem, Logger: quiet})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	board.Detach() // power off: the adapter vanishes
	for c.Connected() {
		time.Sleep(time.Millisecond)
	}
	mark := c.Mark()
	_ = board.Attach() // power on: it comes back under a new name
	_ = c.WaitConnected(ctx)
	for !board.ReaderOpen() {
		time.Sleep(time.Millisecond)
	}
	board.Printf("recovery: resuming at block 17")

	l, err := c.ExpectFrom(ctx, mark, regexp.MustCompile(`resuming at block (\d+)`))
	fmt.Println(l.Text, err)
	fmt.Println(len(mem.OfKind(results.ConsoleGap)), "gap,", len(mem.OfKind(results.ConsoleReopen)), "reopen")
	// Output:
	// recovery: resuming at block 17 <nil>
	// 1 gap, 1 reopen
}
