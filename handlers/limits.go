package handlers

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5/middleware"
	"github.com/go-chi/httprate"
)

// Rate is at most Limit requests per Window; a zero Rate is no limit.
type Rate struct {
	Limit  int
	Window time.Duration
}

// On reports whether r limits anything.
func (r Rate) On() bool { return r.Limit > 0 && r.Window > 0 }

func (r Rate) String() string {
	if !r.On() {
		return "0"
	}
	switch r.Window {
	case time.Second:
		return fmt.Sprintf("%d/s", r.Limit)
	case time.Minute:
		return fmt.Sprintf("%d/min", r.Limit)
	case time.Hour:
		return fmt.Sprintf("%d/h", r.Limit)
	}
	return fmt.Sprintf("%d/%s", r.Limit, r.Window)
}

// Limits are the limits of DESIGN.md 9.4, per subject: the token's sub, or
// in open mode the client's address. The zero value limits nothing.
type Limits struct {
	SnapshotReads   Rate // latest, by id and list, per subject
	SnapshotCreates Rate // manual snapshots, per subject and room
	Ops             Rate // op posts, per subject
	Connects        Rate // stream connects, per subject
	Rooms           Rate // rooms created, per subject
	// MaxStreamsPerSubject caps the open streams of one subject (429
	// too_many_streams past it); MaxStreams those of the process (503
	// too_many_streams), so that it always keeps file descriptors for
	// /healthz and writes. Zero: no cap.
	MaxStreamsPerSubject int
	MaxStreams           int
	// TrustedProxies are the peers (CIDR prefixes) whose X-Forwarded-For
	// names the client's address; from any other peer the header is
	// ignored, so that no client can pick its own address.
	TrustedProxies []string
}

// String describes l for logs and tests.
func (l Limits) String() string {
	return fmt.Sprintf("snapshot_reads=%s snapshot_creates=%s ops=%s connects=%s rooms=%s max_streams_per_subject=%d max_streams=%d trusted_proxies=%v",
		l.SnapshotReads, l.SnapshotCreates, l.Ops, l.Connects, l.Rooms, l.MaxStreamsPerSubject, l.MaxStreams, l.TrustedProxies)
}

// clientAddress records the client's address in the request's
// requestInfo: the peer's, or when the peer is a trusted proxy the
// rightmost address of X-Forwarded-For that is not one (chi's resolver,
// which walks the header from the right so a client cannot choose what is
// read).
func clientAddress(trusted []string) func(http.Handler) http.Handler {
	if len(trusted) == 0 {
		// No proxy is trusted: the peer's address, read the way chi's
		// ClientIPFromRemoteAddr reads it, without a context of its own.
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if info := infoFrom(r.Context()); info != nil {
					info.addr = peerAddress(r.RemoteAddr)
				}
				next.ServeHTTP(w, r)
			})
		}
	}
	resolve := middleware.ClientIPFromXFF(trusted...)
	return func(next http.Handler) http.Handler {
		return resolve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			addr := middleware.GetClientIP(r.Context())
			if addr == "" {
				// A trusted proxy that sent no usable header: the
				// proxy is all we know.
				addr = hostOf(r.RemoteAddr)
			}
			if info := infoFrom(r.Context()); info != nil {
				info.addr = addr
			}
			next.ServeHTTP(w, r)
		}))
	}
}

// peerAddress is the address of a request's peer as chi's
// ClientIPFromRemoteAddr and GetClientIP give it (an IPv4-mapped address as
// IPv4), or the host of remoteAddr when it holds no IP.
func peerAddress(remoteAddr string) string {
	host := hostOf(remoteAddr)
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	if ip.Is4() {
		return host // netip parses only the canonical dotted form
	}
	return ip.Unmap().String()
}

// hostOf is remoteAddr without its port (remoteAddr itself when it has none).
func hostOf(remoteAddr string) string {
	if h, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return h
	}
	return remoteAddr
}

func addressFrom(ctx context.Context) string {
	if info := infoFrom(ctx); info != nil {
		return info.addr
	}
	return ""
}

// subjectKey is who a per-subject limit counts: the token's subject in jwt
// mode, the client's address in open mode (where everyone is the same
// anonymous owner). An IPv6 client counts by its /64, which it controls
// whole.
func (a *API) subjectKey(r *http.Request) string {
	if p := callerFrom(r.Context()).p; p != nil && !p.Anonymous {
		return "sub:" + p.Subject
	}
	return "addr:" + httprate.CanonicalizeIP(addressFrom(r.Context()))
}

// rateLimit refuses, with 429 rate_limited, the requests of a subject past
// rate (perRoom: of a subject in one room); nil when rate is off. Every
// answer it lets through carries RateLimit-Limit, -Remaining and -Reset,
// so that a client can pace itself before it is refused. It runs after
// the route's access rule: requests refused there are not counted.
func (a *API) rateLimit(rate Rate, perRoom bool, what string) func(http.Handler) http.Handler {
	if !rate.On() {
		return func(next http.Handler) http.Handler { return next }
	}
	rl := httprate.NewRateLimiter(rate.Limit, rate.Window, httprate.WithResponseHeaders(httprate.ResponseHeaders{
		Limit: "RateLimit-Limit", Remaining: "RateLimit-Remaining", Reset: "RateLimit-Reset",
	}))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			key := a.subjectKey(r)
			if perRoom {
				key += " room:" + roomIDFrom(r)
			}
			limited := rl.OnLimit(w, r, key)
			// httprate says when the window resets as a unix time; the
			// RateLimit-Reset of the IETF draft is seconds from now.
			h := w.Header()
			reset := 0
			if at, err := strconv.ParseInt(h.Get("RateLimit-Reset"), 10, 64); err == nil {
				reset = max(0, int(at-time.Now().Unix()))
			}
			h.Set("RateLimit-Reset", strconv.Itoa(reset))
			if !limited {
				next.ServeHTTP(w, r)
				return
			}
			h.Set("RateLimit-Remaining", "0")
			markAudit(r.Context(), outcomeLimited)
			p := problemf(http.StatusTooManyRequests, "rate_limited",
				"more than %s %s from this caller; nothing was applied, retry after the Retry-After seconds", rate, what)
			// The window is sliding: once it resets, the requests of the
			// last one still count, less and less; one request's share of
			// a window after the reset, it lets one through again.
			p.retryAfter = max(1, reset+int(math.Ceil(rate.Window.Seconds()/float64(rate.Limit))))
			writeProblem(w, r, p)
		})
	}
}

// streamSlots counts the open event streams, of the process and of each
// subject.
type streamSlots struct {
	maxPerSubject, max int
	mu                 sync.Mutex
	open               int
	bySubject          map[string]int
}

func newStreamSlots(perSubject, total int) *streamSlots {
	return &streamSlots{maxPerSubject: perSubject, max: total, bySubject: map[string]int{}}
}

// acquire takes a slot for a stream of subject, or returns the problem
// that refuses it; release gives the slot back.
func (s *streamSlots) acquire(subject string) (release func(), p *Problem) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.max > 0 && s.open >= s.max {
		p := problemf(http.StatusServiceUnavailable, "too_many_streams",
			"this server has its maximum of %d open event streams; retry later", s.max)
		p.retryAfter = 5
		return nil, p
	}
	if s.maxPerSubject > 0 && s.bySubject[subject] >= s.maxPerSubject {
		p := problemf(http.StatusTooManyRequests, "too_many_streams",
			"this caller has its maximum of %d open event streams; close one first", s.maxPerSubject)
		p.retryAfter = 5
		return nil, p
	}
	s.open++
	s.bySubject[subject]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.open--
		if s.bySubject[subject]--; s.bySubject[subject] <= 0 {
			delete(s.bySubject, subject)
		}
	}, nil
}

// limitStreams refuses a stream past the caps. A refused request's
// connection is closed after the answer: a flood of connects must not
// hold the descriptors the cap keeps free, idling in keep-alive.
func (a *API) limitStreams(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			next.ServeHTTP(w, r) // no stream: nothing to count
			return
		}
		release, p := a.slots.acquire(a.subjectKey(r))
		if p != nil {
			w.Header().Set("Connection", "close")
			writeProblem(w, r, p)
			return
		}
		// The slot is the stream's until it ends, after the handler
		// returned when the stream took its connection over.
		defer afterResponse(r.Context(), release)
		next.ServeHTTP(w, r)
	})
}
