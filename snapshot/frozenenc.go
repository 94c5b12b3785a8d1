package snapshot

import (
	"fmt"

	"github.com/klauspost/compress/zstd"

	"github.com/liveshare/liveshare/graph"
)

const (
	// streamChunk is how much CBOR EncodeFrozen writes before it hands it
	// to the compressor: zstd's block size, so each hand-over compresses
	// one block.
	streamChunk = 128 << 10
	// pooledStreamEncoders bounds the stream encoders kept between
	// snapshots. Each holds a window's history (8 MiB) and is reused, so
	// that a snapshot allocates little beyond its output; snapshots run
	// one at a time per room and rarely more than one or two at once.
	pooledStreamEncoders = 2
)

// streamEncoder is a zstd stream encoder with the chunk EncodeFrozen
// writes CBOR into.
type streamEncoder struct {
	z     *zstd.Encoder
	chunk []byte
}

// streamEncoders keeps up to pooledStreamEncoders idle stream encoders. A
// channel rather than a sync.Pool: a Pool may drop them at any garbage
// collection, and building one costs its 8 MiB of history again.
var streamEncoders = make(chan *streamEncoder, pooledStreamEncoders)

func getStreamEncoder() (*streamEncoder, error) {
	select {
	case e := <-streamEncoders:
		return e, nil
	default:
	}
	// Concurrency 1: the block is compressed by the goroutine writing it,
	// rather than by one more beside it, so that a snapshot keeps to one
	// core and leaves the other to the room's writers.
	z, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstdLevel),
		zstd.WithWindowSize(zstdWindow),
		zstd.WithEncoderConcurrency(1),
	)
	if err != nil {
		return nil, err
	}
	return &streamEncoder{z: z, chunk: make([]byte, 0, 2*streamChunk)}, nil
}

func putStreamEncoder(e *streamEncoder) {
	e.z.Reset(nil) // drop the output it wrote to
	select {
	case streamEncoders <- e:
	default:
	}
}

// wakeNetworkPoller makes sure a thread is left polling the network before
// the caller computes for a long time without blocking, as EncodeFrozen
// does for about a hundred milliseconds on a 100k-element room.
//
// A snapshot's goroutine usually comes to the encode straight from a wait:
// a database answer (the registry's read of the newest snapshot) or the
// scheduler's timer. Either was delivered by the thread blocked polling the
// network (timers wake it too), which
// then took an idle processor (P) and ran the goroutine itself, without
// starting another thread to poll in its place (runtime.findRunnable). With
// that goroutine encoding on one P and the other P idle, nothing polls the
// network until sysmon does, when nobody has for 10 ms; the room's writers,
// whose database answers have arrived, wait for that poll. On two cores
// this was one write of about 11 ms at the start of nearly every snapshot
// of a large room on PostgreSQL (docs/BENCHMARKS.md, "Issue 12"; sysmon's
// 10 ms poll as the only remaining chance is described in golang/go#51651).
//
// Starting a goroutine wakes an idle P (runtime.wakep): its thread runs
// the empty goroutine, finds nothing else to do, and goes back to blocking
// in the network poller, which then wakes the writers as their answers
// arrive. The goroutine ends at once; it needs no owner to stop it.
func wakeNetworkPoller() { go func() {}() }

// appendWriter is an io.Writer appending to b.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// EncodeFrozen encodes a frozen view of a room's graph at version, as
// [Encode] encodes the view's State: the same format and the same CBOR
// payload (elements in id order), so [Decode] and [DecodeStored] read it
// alike. It writes the payload from the view in 128 KiB pieces into a
// reused stream compressor, where Encode needs the state copied out and the
// whole payload built first: a snapshot of a 100k-element room allocates
// its output and the sorted ids (9 MB), not the 10 MB copy of the elements
// and, whenever the collector has dropped Encode's pooled buffer, its 30 MB
// of CBOR besides; the garbage collections those bring about run beside the
// room's writers.
func EncodeFrozen(f *graph.Frozen, version int64) ([]byte, error) {
	if version < 0 {
		return nil, fmt.Errorf("snapshot: negative version %d", version)
	}
	wakeNetworkPoller()
	size := frozenPayloadSize(f, version)
	enc, err := getStreamEncoder()
	if err != nil {
		return nil, fmt.Errorf("snapshot: zstd: %w", err)
	}
	defer putStreamEncoder(enc)
	out := &appendWriter{b: make([]byte, headerSize, headerSize+size/4+64)}
	// The frame says how long the payload is, as EncodeAll's does, so that
	// a decoder allocates it once; Close fails should the payload not be
	// exactly that long.
	enc.z.ResetContentSize(out, int64(size))
	b := enc.chunk[:0]
	flush := func() error {
		if len(b) < streamChunk {
			return nil
		}
		_, err := enc.z.Write(b)
		b = b[:0]
		return err
	}
	b = append(b, 0xa3) // map of 3: "e", "n", "v" in key order
	b = appendKey(b, 'e')
	b = appendHead(b, majorArray, uint64(f.EdgeCount()))
	for e := range f.EdgesByID() {
		b = appendEdge(b, &e)
		if err := flush(); err != nil {
			return nil, fmt.Errorf("snapshot: zstd: %w", err)
		}
	}
	b = appendKey(b, 'n')
	b = appendHead(b, majorArray, uint64(f.NodeCount()))
	for n := range f.NodesByID() {
		b = appendNode(b, &n)
		if err := flush(); err != nil {
			return nil, fmt.Errorf("snapshot: zstd: %w", err)
		}
	}
	b = appendKey(b, 'v')
	b = appendHead(b, majorUint, uint64(version))
	if _, err := enc.z.Write(b); err != nil {
		return nil, fmt.Errorf("snapshot: zstd: %w", err)
	}
	enc.chunk = b[:0] // keep it, grown should an element have been larger
	if err := enc.z.Close(); err != nil {
		return nil, fmt.Errorf("snapshot: zstd: %w", err)
	}
	if err := putHeader(out.b); err != nil {
		return nil, err
	}
	return out.b, nil
}

// frozenPayloadSize is exactly the number of bytes appendPayload writes for
// the view's state at version.
func frozenPayloadSize(f *graph.Frozen, version int64) int {
	// The top-level map's head, its three keys, the arrays' heads and the
	// version.
	n := 1 + 3*2 + headSize(uint64(f.EdgeCount())) + headSize(uint64(f.NodeCount())) + headSize(uint64(version))
	for e := range f.Edges() {
		n += cborEdgeSize(&e)
	}
	for nd := range f.Nodes() {
		n += cborNodeSize(&nd)
	}
	return n
}
