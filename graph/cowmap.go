package graph

import (
	"hash/maphash"
	"iter"
	"maps"
	"slices"
)

const (
	// cowShards is how many pieces a large cowMap is cut into. Freezing
	// costs one pointer copy per piece; the first write to a piece after a
	// freeze copies that piece, about 1/256 of the room (about 400 elements
	// of a 100k-element room, a few microseconds).
	cowShards = 256
	// cowSplitAt is the size up to which a cowMap is one piece: copying it
	// whole after a freeze costs little, and small rooms, the most common,
	// keep the memory and the lookups of a plain map. Past it the map is
	// cut into cowShards pieces, once.
	cowSplitAt = 1024
)

// cowMap maps element ids to values and can be frozen in O(pieces): a
// frozen view keeps seeing the map as it was, while the map goes on
// changing, piece by piece copy-on-write. A room takes such a view under its
// lock for a snapshot or a read, then copies the elements out of it with the
// lock released, so that writers never wait for a copy of the whole room.
//
// Ownership: a shard whose gen equals the map's gen is reachable from this
// map only and may be written in place; any other shard may be shared with
// frozen views or clones and is copied before its first write. freeze
// raises gen, so every shard becomes shared at once. The shards slice
// itself is never shared: freeze and clone copy it.
type cowMap[V any] struct {
	seed   maphash.Seed
	gen    uint64
	n      int
	shards []*cowShard[V] // one while the map is small, cowShards after
}

type cowShard[V any] struct {
	gen uint64
	m   map[string]V
}

func newCowMap[V any](sizeHint int) cowMap[V] {
	m := cowMap[V]{seed: maphash.MakeSeed()}
	if sizeHint <= cowSplitAt {
		m.shards = []*cowShard[V]{{gen: m.gen, m: make(map[string]V, sizeHint)}}
		return m
	}
	m.shards = make([]*cowShard[V], cowShards)
	for i := range m.shards {
		// A little room over the even share, as ids do not hash
		// perfectly evenly.
		per := sizeHint / cowShards
		m.shards[i] = &cowShard[V]{gen: m.gen, m: make(map[string]V, per+per/8)}
	}
	return m
}

func (m *cowMap[V]) shard(id string) int { return shardOf(m.seed, len(m.shards), id) }

// shardOf is the shard of id in a map of n shards hashed with seed.
func shardOf(seed maphash.Seed, n int, id string) int {
	if n == 1 {
		return 0
	}
	return int(maphash.String(seed, id) % cowShards)
}

func (m *cowMap[V]) get(id string) (V, bool) {
	v, ok := m.shards[m.shard(id)].m[id]
	return v, ok
}

func (m *cowMap[V]) has(id string) bool {
	_, ok := m.get(id)
	return ok
}

// writable returns shard i's map, copying the shard first unless this map
// owns it.
func (m *cowMap[V]) writable(i int) map[string]V {
	sh := m.shards[i]
	if sh.gen != m.gen {
		sh = &cowShard[V]{gen: m.gen, m: maps.Clone(sh.m)}
		m.shards[i] = sh
	}
	return sh.m
}

func (m *cowMap[V]) set(id string, v V) {
	sm := m.writable(m.shard(id))
	if _, had := sm[id]; !had {
		m.n++
	}
	sm[id] = v
	if m.n > cowSplitAt && len(m.shards) == 1 {
		m.split()
	}
}

// split cuts a one-piece map into cowShards pieces. The piece it leaves is
// not written, so frozen views of it stay as they were.
func (m *cowMap[V]) split() {
	whole := m.shards[0].m
	shards := make([]*cowShard[V], cowShards)
	per := len(whole) / cowShards
	for i := range shards {
		shards[i] = &cowShard[V]{gen: m.gen, m: make(map[string]V, per+per/2)}
	}
	for id, v := range whole {
		shards[maphash.String(m.seed, id)%cowShards].m[id] = v
	}
	m.shards = shards
}

func (m *cowMap[V]) del(id string) {
	i := m.shard(id)
	if _, ok := m.shards[i].m[id]; !ok {
		return
	}
	delete(m.writable(i), id)
	m.n--
}

func (m *cowMap[V]) len() int { return m.n }

// freeze returns the map's current contents as a view that never changes,
// and makes every later write copy the shard it writes to first.
func (m *cowMap[V]) freeze() frozenMap[V] {
	m.gen++
	return frozenMap[V]{seed: m.seed, n: m.n, shards: slices.Clone(m.shards)}
}

// clone returns an independent map: writes to either are invisible to the
// other. It costs what freeze costs.
func (m *cowMap[V]) clone() cowMap[V] {
	f := m.freeze()
	c := *m
	c.shards = f.shards
	// c's gen is m's: neither owns any shard now, and each shard either
	// creates later carries a gen the other has left behind or never
	// reaches the other.
	return c
}

// frozenMap is a cowMap's contents at a freeze. Its shards are never
// written again, so it may be read from any goroutine. (Graph.view makes
// one of the live shards, read at once under the graph's owner's lock.)
type frozenMap[V any] struct {
	seed   maphash.Seed
	n      int
	shards []*cowShard[V]
}

// get is cowMap.get of the map as it was at the freeze.
func (f frozenMap[V]) get(id string) (V, bool) {
	v, ok := f.shards[shardOf(f.seed, len(f.shards), id)].m[id]
	return v, ok
}

// sortedIDs returns the map's ids in ascending order: 16 bytes an element,
// where copying the values out to sort them would cost the whole value.
func (f frozenMap[V]) sortedIDs() []string {
	ids := make([]string, 0, f.n)
	for _, sh := range f.shards {
		for id := range sh.m {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// byID yields the map's entries in ascending id order.
func (f frozenMap[V]) byID() iter.Seq[V] {
	return func(yield func(V) bool) {
		for _, id := range f.sortedIDs() {
			v, _ := f.get(id)
			if !yield(v) {
				return
			}
		}
	}
}

// values yields the map's values in no particular order.
func (f frozenMap[V]) values() iter.Seq[V] {
	return func(yield func(V) bool) {
		for _, sh := range f.shards {
			for _, v := range sh.m {
				if !yield(v) {
					return
				}
			}
		}
	}
}

func (f frozenMap[V]) all() iter.Seq2[string, V] {
	return func(yield func(string, V) bool) {
		for _, sh := range f.shards {
			for id, v := range sh.m {
				if !yield(id, v) {
					return
				}
			}
		}
	}
}
