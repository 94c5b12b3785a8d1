package graph

import (
	"fmt"
	"maps"
	"testing"

	"pgregory.net/rapid"
)

// A cowMap behaves as a plain map through any mix of writes, freezes and
// clones, and every frozen view (and clone) keeps what the map held when it
// was taken. The keys are many more than the shards, so that views and the
// map share shards that are then written, and maps grow past cowSplitAt
// (one piece, then many) as they go.
func TestPropCowMapFreezes(t *testing.T) {
	keys := make([]string, 3*cowSplitAt)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	rapid.Check(t, func(t *rapid.T) {
		type view struct {
			f    frozenMap[int]
			want map[string]int
		}
		type clone struct {
			c    *cowMap[int]
			want map[string]int
		}
		m := newCowMap[int](rapid.SampledFrom([]int{0, 2 * cowSplitAt}).Draw(t, "hint"))
		want := map[string]int{}
		var views []view
		var clones []clone
		check := func(what string, got frozenMap[int], want map[string]int) {
			all := map[string]int{}
			for k, v := range got.all() {
				if _, dup := all[k]; dup {
					t.Fatalf("%s: key %q twice", what, k)
				}
				all[k] = v
			}
			if !maps.Equal(all, want) || got.n != len(want) {
				t.Fatalf("%s: %d keys (n %d), want %d", what, len(all), got.n, len(want))
			}
		}
		for step := range rapid.IntRange(1, 400).Draw(t, "steps") {
			// Writes touch the clones too, which must stay apart from m.
			target, tw := &m, want
			if len(clones) > 0 && rapid.IntRange(0, 3).Draw(t, "onclone") == 0 {
				c := clones[rapid.IntRange(0, len(clones)-1).Draw(t, "clone")]
				target, tw = c.c, c.want
			}
			switch w := rapid.IntRange(0, 99).Draw(t, "what"); {
			case w == 0:
				views = append(views, view{target.freeze(), maps.Clone(tw)})
			case w == 1:
				c := target.clone()
				clones = append(clones, clone{&c, maps.Clone(tw)})
			case w < 4:
				// A burst of writes, so that maps grow past cowSplitAt.
				off := rapid.IntRange(0, len(keys)-1).Draw(t, "burst")
				for j := range cowSplitAt / 2 {
					k := keys[(off+j)%len(keys)]
					target.set(k, step)
					tw[k] = step
				}
			case w < 30:
				k := rapid.SampledFrom(keys).Draw(t, "del")
				target.del(k)
				delete(tw, k)
			default:
				k := rapid.SampledFrom(keys).Draw(t, "set")
				target.set(k, step)
				tw[k] = step
			}
		}
		for k := range want {
			if v, ok := m.get(k); !ok || v != want[k] {
				t.Fatalf("get(%q) = %d, %v; want %d", k, v, ok, want[k])
			}
		}
		check("map", frozenMap[int]{n: m.n, shards: m.shards}, want)
		for i, v := range views {
			check(fmt.Sprintf("view %d", i), v.f, v.want)
		}
		for i, c := range clones {
			check(fmt.Sprintf("clone %d", i), frozenMap[int]{n: c.c.n, shards: c.c.shards}, c.want)
		}
	})
}
