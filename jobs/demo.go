package jobs

import "fmt"

// demoYAML is the built-in demo job; examples/demo.yaml is the same job
// written out (a test keeps them equal).
const demoYAML = `name: demo
# No bench: the built-in simulated bench (sim-safe and sim-naive). Each
# board's update profile comes from the bench: sim-safe speaks the
# resumable protocol, sim-naive plain block1.
boards: [sim-safe, sim-naive]
# A chain: each cycle updates from the image the cycle before left to a
# new one built from image: (2.0.0+c1 with seq 2, then 2.0.0+c2 with seq 3,
# …), so the probe is used only to recover a board (sim-naive's bricks).
baseline: chain
image:
  build: {version: 2.0.0, seq: 2, size: 16KiB, seed: 2}
block_size: 1024 # 16 KiB / 1024 = 16 blocks
cuts:
  # One cycle per block: cut once block N is acknowledged.
  - after_block: {from: 0, to: last, step: 1}
  # Four cuts 300 µs into a random block's transfer and write (at the
  # built-in boards' default time scale a block takes about 2.6 ms to write).
  - random: {count: 4, kind: during_block, window: {from: 0, to: last}, delay: 300us}
off_time: 20ms
recovery_timeout: 500ms # sim boards boot in milliseconds; silence for 0.5 s is a brick
accept:
  sim-safe: [updated]
  sim-naive: [updated, bricked] # naive in-place may brick; it is reflashed
repeat: 1
seed: 1
parallel: true
reflash: true
missed_cut: retry # a cut that misses its planned point runs once more
`

// Demo is the built-in demo job (`fudbench run` with no job): both
// default simulated boards, a chain of 16 KiB images built on the fly
// (each cycle updates from the image the cycle before left), a cut after
// every block plus four random cuts during blocks. sim-safe must update
// every time; sim-naive may brick, to be reflashed.
func Demo() *Job {
	j, err := Parse(DemoFile, []byte(demoYAML))
	if err != nil {
		panic(fmt.Sprintf("jobs: the built-in demo does not parse: %v", err))
	}
	j.File = ""
	return j
}
