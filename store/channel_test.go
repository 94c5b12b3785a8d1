package store

import (
	"strings"
	"testing"
)

// pg_notify refuses a channel name past 63 bytes; long test schemas must
// still get a usable, distinct channel.
func TestChannelForFitsPostgresIdentifiers(t *testing.T) {
	long1 := "liveshare_test_" + strings.Repeat("a", 60)
	long2 := "liveshare_test_" + strings.Repeat("b", 60)
	cases := map[string]string{
		"public": "liveshare",
		"s1":     "liveshare_s1",
	}
	for schema, want := range cases {
		if got := channelFor(schema); got != want {
			t.Errorf("channelFor(%q) = %q, want %q", schema, got, want)
		}
	}
	c1, c2 := channelFor(long1), channelFor(long2)
	if len(c1) > maxChannelLen || len(c2) > maxChannelLen {
		t.Fatalf("channel names %q (%d) and %q (%d) exceed %d bytes", c1, len(c1), c2, len(c2), maxChannelLen)
	}
	if c1 == c2 {
		t.Fatalf("two long schemas share the channel %q", c1)
	}
}
