// Package lab is lab mode's ground floor on NATS JetStream: the server a
// coordinator embeds, the job queue the agents of a pool share, and
// board leases that expire on the server's clock when their holder dies.
//
// Every piece is a JetStream primitive, not a home-made protocol:
//
//   - jobs are messages on a work-queue stream, one subject per pool
//     (jobs.<pool>), taken through one durable consumer per pool that the
//     agents with boards in that pool share; the run ID is the message ID,
//     so a job submitted twice is queued once; a job whose agent stops
//     acknowledging is delivered again after the ack wait;
//   - a board lease is a key of a KV bucket created with a per-key TTL;
//     its holder renews it by publishing the next revision with the
//     expected last sequence and a message TTL (kv.Put and kv.Update
//     would drop the TTL), so a holder that dies loses the board after
//     the TTL, whatever the clocks of the bench hosts say.
//
// The coordinator, agent and submit commands are built on these.
package lab

import (
	"fmt"
	"regexp"
)

// Names of the JetStream assets lab mode uses.
const (
	JobsStream   = "FUDBENCH_JOBS"
	LeasesBucket = "fudbench_leases"
)

// nameRE is what a pool or board name may be to stand in a subject or a
// KV key: the bench file's names are checked against it when an agent
// announces them.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$`)

// tokenRE is what a name that stands alone as a subject token may be
// (pools: jobs.<pool>; agents: events.<run>.<agent>): a name without dots.
var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// CheckToken returns an error unless name can be a pool or agent name:
// letters, digits, '_' and '-', at most 64.
func CheckToken(what, name string) error {
	if !tokenRE.MatchString(name) {
		return fmt.Errorf("%s %q: lab mode takes letters, digits, '_' and '-', at most 64", what, name)
	}
	return nil
}

// CheckName returns an error unless name can be a board name in
// lab mode: letters, digits, '_', '-' and '.', not first, at most 64.
func CheckName(what, name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%s %q: lab mode takes letters, digits, '_', '-' and '.' (not first), at most 64", what, name)
	}
	return nil
}
