package handlers

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/cors"

	"github.com/liveshare/liveshare/auth"
	"github.com/liveshare/liveshare/store"
)

// Auth modes (DESIGN.md 9.1).
const (
	ModeOpen = "open"
	ModeJWT  = "jwt"
)

// SessionCookie carries the token of a browser's session (POST /session),
// for EventSource, which cannot send an Authorization header.
const SessionCookie = "liveshare_session"

// AuthConfig is who may call the API and from where.
type AuthConfig struct {
	// Mode is ModeOpen (everyone is the anonymous owner of every room; the
	// zero value) or ModeJWT (every request but the public ones needs a
	// token that Verifier accepts).
	Mode     string
	Verifier *auth.Verifier
	// Hosts are the host names (no port) a request's Host may name in open
	// mode; any other is answered 421, so that a DNS-rebinding page cannot
	// talk to a laptop instance. Empty: no check. AnyIPHost also accepts
	// every IP literal (a rebinding page always uses a domain name).
	Hosts     []string
	AnyIPHost bool
	// CORSOrigins are the exact origins (scheme://host[:port]) that may
	// call the API from a browser, with credentials. Empty: CORS is off.
	CORSOrigins []string
	// PublicOrigin is the service's own origin (LIVESHARE_PUBLIC_URL's
	// scheme://host); "" takes it from each request's Host.
	PublicOrigin string
	// MetricsElsewhere leaves /metrics off this router: it is served
	// alone on its own address.
	MetricsElsewhere bool
	// MembersTTL bounds how long a room's members are cached when no
	// change notice arrives (a safety net behind the notices); 0 is 2s.
	MembersTTL time.Duration
}

func (c AuthConfig) jwt() bool { return c.Mode == ModeJWT }

// caller is who sent a request: a principal, or why there is none.
type caller struct {
	p         *auth.Principal
	err       error // the token was refused (nil when none was sent)
	viaCookie bool  // authenticated by the session cookie, not a header
}

func callerFrom(ctx context.Context) caller {
	if info := infoFrom(ctx); info != nil {
		return info.caller
	}
	return caller{}
}

// nosniff is the value of X-Content-Type-Options, one slice for every
// answer: header values are replaced, never changed in place.
var nosniff = []string{"nosniff"}

// securityHeaders are sent on every answer (DESIGN.md 9.7); the page and
// docs handlers add their own CSP.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["X-Content-Type-Options"] = nosniff
		next.ServeHTTP(w, r)
	})
}

// hostCheck answers 421 to a request whose Host is not one of the
// service's own names.
func hostCheck(hosts []string, anyIP bool) func(http.Handler) http.Handler {
	allowed := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		allowed[strings.ToLower(strings.Trim(h, "[]"))] = true
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host := r.Host
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
			host = strings.ToLower(strings.Trim(host, "[]"))
			if !allowed[host] && !(anyIP && net.ParseIP(host) != nil) {
				writeProblem(w, r, problemf(http.StatusMisdirectedRequest, "misdirected_request",
					"this server does not answer for host %q; use localhost or the address it listens on", truncate(host, 64)))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// corsHandler lets the listed origins call the API with credentials.
func corsHandler(origins []string) func(http.Handler) http.Handler {
	return cors.Handler(cors.Options{
		AllowedOrigins:   origins,
		AllowedMethods:   []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete},
		AllowedHeaders:   []string{"Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID", "If-None-Match", "X-Request-Id", "Accept"},
		ExposedHeaders:   []string{"Location", "ETag", "X-Request-Id", "Retry-After", "Idempotent-Replayed", "X-Snapshot-Id", "X-Snapshot-Version", "X-Element-Count"},
		AllowCredentials: true,
		MaxAge:           600,
	})
}

// requireJSON refuses a POST, PUT or PATCH that does not say its body is
// JSON: a cross-site form or a no-cors fetch can only send text/plain,
// form encodings or no type, so none of them can change anything.
func requireJSON(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			ct := r.Header.Get("Content-Type")
			if ct == "application/json" {
				break // what nearly every client sends: nothing to parse
			}
			mt, _, err := mime.ParseMediaType(ct)
			if err != nil || mt != "application/json" {
				writeProblem(w, r, problemf(http.StatusUnsupportedMediaType, "unsupported_media_type",
					"Content-Type is %q; this endpoint takes application/json", truncate(ct, 64)))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// authenticate finds out who is calling and puts it in the context; it
// refuses nothing, since public routes need no caller: the route's rule
// does. A token is read from the Authorization header, or else from the
// session cookie; never from the URL, where it would end up in logs.
func (a *API) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var c caller
		if !a.auth.jwt() {
			c.p = a.anonymous
		} else if h := r.Header.Get("Authorization"); h != "" {
			scheme, tok, _ := strings.Cut(h, " ")
			if !strings.EqualFold(scheme, "Bearer") || tok == "" {
				c.err = errors.New("the Authorization header must be Bearer <token>")
			} else {
				c.p, c.err = a.auth.Verifier.Verify(strings.TrimSpace(tok))
			}
		} else if ck, err := r.Cookie(SessionCookie); err == nil && ck.Value != "" {
			c.p, c.err = a.auth.Verifier.Verify(ck.Value)
			c.viaCookie = true
		}
		if c.p != nil && !c.p.Anonymous {
			// What a token lets one read is for that caller alone.
			w.Header().Set("Cache-Control", "no-store")
		}
		if info := infoFrom(r.Context()); info != nil {
			info.caller = c
		}
		next.ServeHTTP(w, r)
	})
}

// csrfCheck refuses a cookie-authenticated request that would change
// something unless its Origin (or Referer) is the service's own origin or
// one of the CORS origins: a cookie is sent by the browser whichever site
// made the request.
func (a *API) csrfCheck(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := callerFrom(r.Context())
		if c.viaCookie && !safeMethod(r.Method) && !a.sameOrigin(r) {
			writeProblem(w, r, newProblem(http.StatusForbidden, "csrf_rejected",
				"a request authenticated by the session cookie must come from this service's own page (Origin or Referer)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func (a *API) sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		ref, err := url.Parse(r.Header.Get("Referer"))
		if err != nil || ref.Scheme == "" || ref.Host == "" {
			return false
		}
		origin = ref.Scheme + "://" + ref.Host
	}
	own := a.auth.PublicOrigin
	if own == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		own = scheme + "://" + r.Host
	}
	return strings.EqualFold(origin, own) || slices.Contains(a.auth.CORSOrigins, origin)
}

// unauthenticated is the 401 for a request without a valid token.
func unauthenticated(w http.ResponseWriter, r *http.Request, c caller) {
	detail := "this endpoint needs a token: send Authorization: Bearer <token>, or sign in with POST /session"
	challenge := `Bearer realm="liveshare"`
	if c.err != nil {
		detail = "the token was refused: " + strings.TrimPrefix(c.err.Error(), auth.ErrInvalidToken.Error()+": ")
		challenge += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	markAudit(r.Context(), outcomeDenied)
	writeProblem(w, r, newProblem(http.StatusUnauthorized, "unauthenticated", detail))
}

func forbidden(w http.ResponseWriter, r *http.Request, detail string) {
	markAudit(r.Context(), outcomeDenied)
	writeProblem(w, r, newProblem(http.StatusForbidden, "forbidden", detail))
}

// Route rules: every route of the router has exactly one, and the
// authorization matrix test (cmd/api/auth_test.go) fails for a route that
// has none. public needs nothing; the others answer 401 without a caller.

func (a *API) needCaller(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := callerFrom(r.Context()); c.p == nil {
			unauthenticated(w, r, c)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *API) needAdmin(next http.Handler) http.Handler {
	return a.needCaller(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !callerFrom(r.Context()).p.Admin {
			forbidden(w, r, "this endpoint is for administrators (a token with admin: true)")
			return
		}
		next.ServeHTTP(w, r)
	}))
}

func (a *API) needCreateRooms(next http.Handler) http.Handler {
	return a.needCaller(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := callerFrom(r.Context()).p; !p.CreateRooms && !p.Admin {
			forbidden(w, r, "creating rooms needs a token with create_rooms: true")
			return
		}
		next.ServeHTTP(w, r)
	}))
}

// needRole lets a request through when its caller's role in the room is at
// least min: no role at all is 404 room_not_found, exactly as for a room
// that does not exist, so nobody learns which rooms exist; a lower one is
// 403 forbidden.
func (a *API) needRole(min auth.Role) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return a.needCaller(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			role, err := a.roleAtLeast(r.Context(), callerFrom(r.Context()).p, roomIDFrom(r), min)
			switch {
			case err != nil:
				writeError(w, r, err)
			case role == auth.None:
				markAudit(r.Context(), outcomeDenied)
				writeProblem(w, r, newProblem(http.StatusNotFound, "room_not_found", "room not found"))
			case role < min:
				forbidden(w, r, fmt.Sprintf("this needs the role %s in the room; yours is %s", min, role))
			default:
				next.ServeHTTP(w, r)
			}
		}))
	}
}

// roleAtLeast returns p's role in the room, or a lower bound of it that is
// already at least min: when the token alone grants min, no members are
// read. A room that does not exist gives None.
func (a *API) roleAtLeast(ctx context.Context, p *auth.Principal, roomID string, min auth.Role) (auth.Role, error) {
	if p.Anonymous {
		return auth.Owner, nil
	}
	role := p.TokenRole(roomID)
	if role >= min {
		return role, nil
	}
	acc, err := a.members.get(ctx, roomID)
	if errors.Is(err, store.ErrNotFound) {
		return auth.None, nil
	}
	if err != nil {
		return auth.None, err
	}
	return max(role, accessRole(acc, p.Subject)), nil
}

// roleOf is p's role in the room, exactly.
func (a *API) roleOf(ctx context.Context, p *auth.Principal, roomID string) (auth.Role, error) {
	return a.roleAtLeast(ctx, p, roomID, auth.Admin+1)
}

func accessRole(acc store.Access, subject string) auth.Role {
	if acc.CreatedBy != "" && acc.CreatedBy == subject {
		return auth.Owner
	}
	r, _ := auth.ParseRoomRole(acc.Members[subject])
	return r
}

// memberCache keeps each room's creator and members, so that a role check
// usually reads nothing: an entry is dropped when this instance changes the
// room's members, when another instance says it did (cluster), and after
// ttl at most, in case such a notice was lost.
type memberCache struct {
	store *store.Store
	ttl   time.Duration
	mu    sync.Mutex
	rooms map[string]memberEntry
	// gen counts forgets: an entry read across one is not stored, since
	// it may hold what the forget was about.
	gen uint64
}

type memberEntry struct {
	acc store.Access
	at  time.Time
}

// maxCachedRooms bounds the cache; past it, it starts over.
const maxCachedRooms = 10000

func newMemberCache(st *store.Store, ttl time.Duration) *memberCache {
	if ttl <= 0 {
		ttl = 2 * time.Second
	}
	return &memberCache{store: st, ttl: ttl, rooms: map[string]memberEntry{}}
}

// get returns the room's access, or an error wrapping store.ErrNotFound.
// A room that does not exist is not cached: it may be created meanwhile.
func (c *memberCache) get(ctx context.Context, roomID string) (store.Access, error) {
	c.mu.Lock()
	e, ok := c.rooms[roomID]
	c.mu.Unlock()
	if ok && time.Since(e.at) < c.ttl {
		return e.acc, nil
	}
	c.mu.Lock()
	gen := c.gen
	c.mu.Unlock()
	at := time.Now()
	acc, err := c.store.RoomAccess(ctx, roomID)
	if err != nil {
		return store.Access{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen == gen {
		if len(c.rooms) >= maxCachedRooms {
			clear(c.rooms)
		}
		c.rooms[roomID] = memberEntry{acc: acc, at: at}
	}
	return acc, nil
}

// forget drops the room's entry; the next check reads the database.
func (c *memberCache) forget(roomID string) {
	c.mu.Lock()
	delete(c.rooms, roomID)
	c.gen++
	c.mu.Unlock()
}
