package snapshot

import (
	"container/list"
	"sync"
)

// byteLRU keeps values up to a total size in bytes, dropping the least
// recently used first. Each value belongs to a room, so that a room that
// leaves memory takes its values with it.
type byteLRU struct {
	mu     sync.Mutex
	max    int64
	size   int64
	order  *list.List // of *lruEntry, most recently used first
	items  map[string]*list.Element
	byRoom map[string]map[string]struct{}
}

type lruEntry struct {
	key, room string
	value     any
	size      int64
}

func newByteLRU(max int64) *byteLRU {
	return &byteLRU{max: max, order: list.New(), items: make(map[string]*list.Element), byRoom: make(map[string]map[string]struct{})}
}

func (c *byteLRU) get(key string) (any, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*lruEntry).value, true
}

// put keeps value under key, unless it alone is larger than the whole
// budget, and drops the least recently used values past the budget.
func (c *byteLRU) put(key, room string, value any, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.removeLocked(el)
	}
	if size > c.max {
		return
	}
	c.items[key] = c.order.PushFront(&lruEntry{key: key, room: room, value: value, size: size})
	c.size += size
	keys := c.byRoom[room]
	if keys == nil {
		keys = make(map[string]struct{})
		c.byRoom[room] = keys
	}
	keys[key] = struct{}{}
	for c.size > c.max {
		c.removeLocked(c.order.Back())
	}
}

// dropRoom forgets every value of room.
func (c *byteLRU) dropRoom(room string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for key := range c.byRoom[room] {
		c.removeLocked(c.items[key])
	}
}

func (c *byteLRU) removeLocked(el *list.Element) {
	e := el.Value.(*lruEntry)
	c.order.Remove(el)
	delete(c.items, e.key)
	c.size -= e.size
	if keys := c.byRoom[e.room]; keys != nil {
		delete(keys, e.key)
		if len(keys) == 0 {
			delete(c.byRoom, e.room)
		}
	}
}

// bytes returns the total size of the values kept.
func (c *byteLRU) bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}
