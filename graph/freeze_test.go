package graph_test

import (
	"testing"

	"pgregory.net/rapid"

	"github.com/liveshare/liveshare/graph"
)

// A frozen view keeps the state of its Freeze while the graph goes on
// changing: ops, refused batches, a Tx rolled back, resets.
func TestPropFreezeKeepsItsState(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		g := graph.New()
		type view struct {
			f    *graph.Frozen
			want graph.State
		}
		var views []view
		for range rapid.IntRange(1, 60).Draw(t, "steps") {
			switch rapid.IntRange(0, 4).Draw(t, "what") {
			case 0:
				views = append(views, view{g.Freeze(), g.State()})
			case 1:
				x := g.Begin()
				_ = x.Apply([]graph.Op{genOp(t, g), genOp(t, g)})
				if rapid.Bool().Draw(t, "freezeInTx") {
					// A view taken mid-Tx sees the Tx's changes and
					// keeps them after the rollback.
					views = append(views, view{g.Freeze(), g.State()})
				}
				x.Rollback()
			case 2:
				_ = g.Apply([]graph.Op{genOp(t, g), genBadOp(t)})
			default:
				if err := g.Apply([]graph.Op{genOp(t, g)}); err != nil {
					t.Fatalf("valid op rejected: %v", err)
				}
			}
			checkInvariants(t, g)
		}
		for i, v := range views {
			got := v.f.State()
			if !got.Equal(v.want) || v.f.ElementCount() != len(v.want.Nodes)+len(v.want.Edges) {
				t.Fatalf("view %d changed:\n%+v\nwant\n%+v", i, got, v.want)
			}
		}
	})
}
