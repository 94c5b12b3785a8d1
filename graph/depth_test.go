package graph

import (
	"strings"
	"testing"
)

func nested(levels int) string {
	return strings.Repeat(`{"a":`, levels-1) + `{}` + strings.Repeat(`}`, levels-1)
}

func TestCheckDataDepth(t *testing.T) {
	ok := nested(MaxDataDepth)
	deep := nested(MaxDataDepth + 1)
	for _, tc := range []struct {
		op    string
		field string // "" when accepted
	}{
		{`{"op":"add_node","node":{"id":"n","data":` + ok + `}}`, ""},
		{`{"op":"add_node","node":{"id":"n","data":` + deep + `}}`, "node.data"},
		{`{"op":"add_node","node":{"id":"n","data":{"s":"{{{{[[[[` + strings.Repeat(`{`, 100) + `"}}}`, ""},
		{`{"op":"add_edge","edge":{"id":"e","source":"a","target":"b","data":` + deep + `}}`, "edge.data"},
		{`{"op":"update_node","id":"n","patch":{"data":` + ok + `}}`, ""},
		{`{"op":"update_node","id":"n","patch":{"data":` + deep + `}}`, "patch.data"},
		{`{"op":"reset","state":{"nodes":[{"id":"n","data":` + deep + `}],"edges":[]}}`, "state.nodes[0].data"},
	} {
		op, err := ParseOp([]byte(tc.op))
		if err != nil {
			t.Fatalf("%.80s: %v", tc.op, err)
		}
		got := CheckDataDepth(op)
		switch {
		case tc.field == "" && got != nil:
			t.Errorf("%.80s refused: %v", tc.op, got)
		case tc.field != "" && (got == nil || got.Field != tc.field):
			t.Errorf("%.80s: got %v, want a refusal at %s", tc.op, got, tc.field)
		}
	}
}
