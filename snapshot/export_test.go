package snapshot

import "github.com/liveshare/liveshare/graph"

// DecodeWithLimit is Decode with a decompressed-size limit of limit bytes
// instead of 256 MiB, so zip-bomb tests need not inflate 256 MiB.
func DecodeWithLimit(data []byte, limit uint64) (graph.State, int64, error) {
	d, err := newZstdDecoder(limit)
	if err != nil {
		return graph.State{}, 0, err
	}
	defer d.Close()
	return decode(data, d, limit)
}

// MaxDecodedBytes is the real limit.
const MaxDecodedBytes = maxDecodedBytes
