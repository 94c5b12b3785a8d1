package cluster

import "testing"

func TestNotesRoundTrip(t *testing.T) {
	for _, n := range []note{
		{kind: kindOps, room: "5f0c6f4e-1b7e-4a57-9d1e-3c3b1f0e9a11", version: 42},
		{kind: kindDeleted, room: "5f0c6f4e-1b7e-4a57-9d1e-3c3b1f0e9a11"},
		{kind: kindPresence, room: "r", version: 0},
		{kind: kindState, room: "r", data: `{"p":"tab-1","o":"","s":{"cursor":{"x":1,"y":2},"status":"a:b"}}`},
	} {
		inst, got, err := parseNote(n.payload("inst-1"))
		if err != nil || inst != "inst-1" || got != n {
			t.Errorf("%+v came back as %q %+v %v", n, inst, got, err)
		}
	}
}

// Another program may notify on the channel: what is not a note is refused,
// never taken for one.
func TestBadNotesAreRefused(t *testing.T) {
	for _, s := range []string{"", "o", "o:i:r", "o:i:r:x", "o:i:r:1:extra", "o:i:r:"} {
		if _, n, err := parseNote(s); err == nil {
			t.Errorf("%q parsed as %+v", s, n)
		}
	}
}
