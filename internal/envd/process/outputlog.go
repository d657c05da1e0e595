package process

import (
	"sort"

	"github.com/wrenn/wrenn/api/envd/process"
)

// outputKind says which stream a chunk of output came from.
type outputKind uint8

const (
	kindStdout outputKind = iota
	kindStderr
	kindPTY
)

// chunk is one read of a process's output. Its bytes are never modified once
// appended, so readers may hold data slices without copying.
type chunk struct {
	kind  outputKind
	start uint64 // offset of data[0] in the process's output
	data  []byte
}

func (c chunk) end() uint64 { return c.start + uint64(len(c.data)) }

// dataEvent turns c into a data event; withOffset sets the Wrenn end_offset.
func (c chunk) dataEvent(withOffset bool) *process.ProcessEvent {
	d := &process.ProcessEvent_DataEvent{}
	switch c.kind {
	case kindStdout:
		d.Output = &process.ProcessEvent_DataEvent_Stdout{Stdout: c.data}
	case kindStderr:
		d.Output = &process.ProcessEvent_DataEvent_Stderr{Stderr: c.data}
	default:
		d.Output = &process.ProcessEvent_DataEvent_Pty{Pty: c.data}
	}
	if withOffset {
		d.EndOffset = c.end()
	}
	return &process.ProcessEvent{Event: &process.ProcessEvent_Data{Data: d}}
}

// outputLog keeps the newest limit bytes of a process's output as one ordered
// list of chunks, with offsets counted from the start of the process. It is
// the only output buffer: live consumers read from it with their own cursor,
// so a slow consumer costs no memory and never stalls the producer.
// Not safe for concurrent use; the owning proc's mutex guards it.
type outputLog struct {
	limit  int
	chunks []chunk // oldest first
	size   int     // bytes held in chunks
	end    uint64  // offset just after the newest byte ever appended
}

func (l *outputLog) append(kind outputKind, data []byte) {
	if len(data) == 0 {
		return
	}
	l.chunks = append(l.chunks, chunk{kind: kind, start: l.end, data: data})
	l.end += uint64(len(data))
	l.size += len(data)
	for l.size > l.limit {
		c := &l.chunks[0]
		excess := l.size - l.limit
		if len(c.data) <= excess {
			l.size -= len(c.data)
			*c = chunk{} // drop the reference to the evicted bytes
			l.chunks = l.chunks[1:]
			continue
		}
		c.data = c.data[excess:]
		c.start += uint64(excess)
		l.size -= excess
	}
}

// oldest is the offset of the oldest retained byte (== end when empty).
func (l *outputLog) oldest() uint64 {
	if len(l.chunks) == 0 {
		return l.end
	}
	return l.chunks[0].start
}

// readFrom returns retained chunks from offset off on, the first one cut to
// start exactly at off (or at the oldest retained byte when off was evicted),
// stopping once at least maxBytes are collected. next is the offset after the
// last returned byte.
func (l *outputLog) readFrom(off uint64, maxBytes int) (out []chunk, next uint64) {
	if old := l.oldest(); off < old {
		off = old
	}
	if off >= l.end {
		return nil, off
	}
	i := sort.Search(len(l.chunks), func(i int) bool { return l.chunks[i].end() > off })
	n := 0
	for ; i < len(l.chunks) && n < maxBytes; i++ {
		c := l.chunks[i]
		if c.start < off {
			c.data = c.data[off-c.start:]
			c.start = off
		}
		out = append(out, c)
		n += len(c.data)
		off = c.end()
	}
	return out, off
}
