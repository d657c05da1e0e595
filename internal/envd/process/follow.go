package process

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/process"
)

// maxBatch bounds the output one consumer takes from the log per wake-up.
const maxBatch = 256 << 10

// followOpts configures one consumer of a process's events.
type followOpts struct {
	cursor    uint64        // output offset to start at
	offsets   bool          // set DataEvent.end_offset (replaying Connect only)
	keepalive time.Duration // silence before a keepalive event
	// lifetimeIsDeadline makes a process killed by its Start lifetime end
	// the stream with deadline_exceeded instead of an end event.
	lifetimeIsDeadline bool
	// hold makes the process wait for this consumer instead of evicting
	// output it has not sent (the Start stream: a command's own caller
	// gets all of its output).
	hold bool
}

var keepaliveEvent = &process.ProcessEvent{Event: &process.ProcessEvent_Keepalive{Keepalive: &process.ProcessEvent_KeepAlive{}}}

func startEvent(pid int) *process.ProcessEvent {
	return &process.ProcessEvent{Event: &process.ProcessEvent_Start{Start: &process.ProcessEvent_StartEvent{Pid: uint32(pid)}}}
}

// follow sends p's output from o.cursor on, then its end. Each consumer has
// only a cursor into the process's shared output log, so a slow consumer
// never stalls the process or other consumers; one that falls more than
// OutputLimit behind skips the evicted bytes (visible through end_offset on
// replaying streams) instead of being dropped.
func follow(ctx context.Context, p *proc, o followOpts, send func(*process.ProcessEvent) error) error {
	timer := time.NewTimer(o.keepalive)
	defer timer.Stop()
	cursor := o.cursor
	var h *hold
	if o.hold {
		h = p.addHold(cursor)
		defer p.dropHold(h)
	}
	for {
		chunks, next, end, timedOut, wake := p.snapshot(h, cursor, maxBatch)
		for _, c := range chunks {
			if err := send(c.dataEvent(o.offsets)); err != nil {
				return err
			}
		}
		cursor = next
		if len(chunks) > 0 {
			timer.Reset(o.keepalive)
			continue
		}
		if end != nil {
			if o.lifetimeIsDeadline && timedOut {
				return connect.NewError(connect.CodeDeadlineExceeded, errors.New("process lifetime (Connect-Timeout-Ms) exceeded; process killed"))
			}
			return send(&process.ProcessEvent{Event: &process.ProcessEvent_End{End: end}})
		}
		select {
		case <-wake:
		case <-timer.C:
			if err := send(keepaliveEvent); err != nil {
				return err
			}
			timer.Reset(o.keepalive)
		case <-ctx.Done():
			return ctxError(ctx)
		}
	}
}

func ctxError(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return connect.NewError(connect.CodeDeadlineExceeded, ctx.Err())
	}
	return connect.NewError(connect.CodeCanceled, ctx.Err())
}
