package simconsole_test

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"go.bug.st/serial"

	"github.com/fudbench/fudbench/sim/simconsole"
)

func Example() {
	dir, err := os.MkdirTemp("", "simconsole")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	// The board side.
	con, err := simconsole.New(simconsole.Options{
		Link:   filepath.Join(dir, "usb-sim-board-if00"),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	defer con.Close()

	// The bench side opens the stable link like a /dev/serial/by-id name.
	port, err := serial.Open(con.Link(), &serial.Mode{BaudRate: 115200})
	if err != nil {
		panic(err)
	}
	defer port.Close()
	for !con.ReaderOpen() { // lines before the board notices a reader are lost
		time.Sleep(time.Millisecond)
	}

	con.Printf("boot: app %s seq %d", "1.4.0", 12)
	line, err := bufio.NewReader(port).ReadString('\n')
	if err != nil {
		panic(err)
	}
	fmt.Printf("%q\n", line)
	// Output:
	// "boot: app 1.4.0 seq 12\r\n"
}
