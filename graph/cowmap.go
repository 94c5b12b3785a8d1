package graph

import (
	"hash/maphash"
	"iter"
	"maps"
)

// cowShards is how many pieces a cowMap is cut into. Freezing costs one
// pointer copy per piece; the first write to a piece after a freeze copies
// that piece, about 1/256 of the room (about 400 elements of a 100k-element
// room, a few microseconds).
const cowShards = 256

// cowMap maps element ids to values and can be frozen in O(cowShards):
// a frozen view keeps seeing the map as it was, while the map goes on
// changing, piece by piece copy-on-write. A room takes such a view under its
// lock for a snapshot or a read, then copies the elements out of it with the
// lock released, so that writers never wait for a copy of the whole room.
//
// Ownership: a shard whose gen equals the map's gen is reachable from this
// map only and may be written in place; any other shard may be shared with
// frozen views or clones and is copied before its first write. freeze
// raises gen, so every shard becomes shared at once.
type cowMap[V any] struct {
	seed   maphash.Seed
	gen    uint64
	n      int
	shards [cowShards]*cowShard[V]
}

type cowShard[V any] struct {
	gen uint64
	m   map[string]V
}

func newCowMap[V any](sizeHint int) cowMap[V] {
	m := cowMap[V]{seed: maphash.MakeSeed()}
	if per := sizeHint / cowShards; per > 0 {
		for i := range m.shards {
			// A little room over the even share, as ids do not hash
			// perfectly evenly.
			m.shards[i] = &cowShard[V]{gen: m.gen, m: make(map[string]V, per+per/8)}
		}
	}
	return m
}

func (m *cowMap[V]) shard(id string) int {
	return int(maphash.String(m.seed, id) % cowShards)
}

func (m *cowMap[V]) get(id string) (V, bool) {
	if sh := m.shards[m.shard(id)]; sh != nil {
		v, ok := sh.m[id]
		return v, ok
	}
	var zero V
	return zero, false
}

func (m *cowMap[V]) has(id string) bool {
	_, ok := m.get(id)
	return ok
}

// writable returns shard i's map, copying the shard first unless this map
// owns it.
func (m *cowMap[V]) writable(i int) map[string]V {
	sh := m.shards[i]
	switch {
	case sh == nil:
		sh = &cowShard[V]{gen: m.gen, m: make(map[string]V)}
		m.shards[i] = sh
	case sh.gen != m.gen:
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
}

func (m *cowMap[V]) del(id string) {
	i := m.shard(id)
	if sh := m.shards[i]; sh == nil {
		return
	} else if _, ok := sh.m[id]; !ok {
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
	return frozenMap[V]{n: m.n, shards: m.shards}
}

// clone returns an independent map: writes to either are invisible to the
// other. It costs what freeze costs.
func (m *cowMap[V]) clone() cowMap[V] {
	m.freeze()
	c := *m
	// c's gen is m's: neither owns any shard now, and each shard either
	// creates later carries a gen the other has left behind or never
	// reaches the other.
	return c
}

func (m *cowMap[V]) all() iter.Seq2[string, V] {
	return frozenMap[V]{n: m.n, shards: m.shards}.all()
}

// frozenMap is a cowMap's contents at a freeze. Its shards are never
// written again, so it may be read from any goroutine.
type frozenMap[V any] struct {
	n      int
	shards [cowShards]*cowShard[V]
}

func (f frozenMap[V]) all() iter.Seq2[string, V] {
	return func(yield func(string, V) bool) {
		for _, sh := range f.shards {
			if sh == nil {
				continue
			}
			for id, v := range sh.m {
				if !yield(id, v) {
					return
				}
			}
		}
	}
}
