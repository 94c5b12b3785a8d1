// Package auth says who is calling and what they may do: it verifies the
// JWTs of DESIGN.md section 9.2 into a Principal, and orders the roles of
// section 9.3. It knows nothing of HTTP or of the database: handlers reads
// the token from a request, and the store holds the room members.
package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Role is what a caller may do in a room. Roles are ordered: each one may
// do everything the ones below it may.
type Role int

const (
	// None: the caller may not even learn that the room exists.
	None Role = iota
	Viewer
	Editor
	Owner
	// Admin is the operator: owner of every room, plus the process-wide
	// endpoints (/metrics, GET /snapshots/stats, GET /audit).
	Admin
)

var roleNames = [...]string{None: "none", Viewer: "viewer", Editor: "editor", Owner: "owner", Admin: "admin"}

func (r Role) String() string {
	if r < None || r > Admin {
		return fmt.Sprintf("Role(%d)", int(r))
	}
	return roleNames[r]
}

// ParseRoomRole parses a role a token or a member entry may grant in a
// room: viewer, editor or owner (admin is a flag of the token, never a
// room's role).
func ParseRoomRole(s string) (Role, bool) {
	switch s {
	case "viewer":
		return Viewer, true
	case "editor":
		return Editor, true
	case "owner":
		return Owner, true
	}
	return None, false
}

// Wildcard in a token's rooms claim grants its role in every room.
const Wildcard = "*"

// Principal is a verified caller.
type Principal struct {
	Subject string
	// Name is the presence name: the token's name, or its subject.
	Name        string
	Admin       bool
	CreateRooms bool
	// Rooms is the token's rooms claim: a room id or Wildcard → role.
	Rooms map[string]Role
	// Expires is when the token stops being valid; zero for the anonymous
	// caller of open mode, who never expires.
	Expires time.Time
	// Anonymous is the caller of open mode: owner of every room.
	Anonymous bool
}

// AnonymousPrincipal is everyone in open mode.
func AnonymousPrincipal() *Principal {
	return &Principal{Subject: "anonymous", Name: "", Admin: true, CreateRooms: true, Anonymous: true}
}

// TokenRole is the role the token itself grants in roomID: admin, or the
// higher of rooms[roomID] and rooms["*"].
func (p *Principal) TokenRole(roomID string) Role {
	if p.Admin {
		return Admin
	}
	return max(p.Rooms[roomID], p.Rooms[Wildcard])
}

// Claims are the JWT claims LiveShare reads.
type Claims struct {
	Name        string            `json:"name,omitempty"`
	Rooms       map[string]string `json:"rooms,omitempty"`
	CreateRooms bool              `json:"create_rooms,omitempty"`
	Admin       bool              `json:"admin,omitempty"`
	jwt.RegisteredClaims
}

// Leeway is how far nbf, iat and exp may be off, for clocks that drift.
const Leeway = 30 * time.Second

// MinSecretBytes is the shortest HS256 secret accepted: shorter ones can be
// guessed offline from any token.
const MinSecretBytes = 32

// Config is how tokens are verified. At least one of Secret and PublicKey
// must be set.
type Config struct {
	// Secret verifies HS256 tokens.
	Secret []byte
	// PublicKey verifies tokens signed with its private key: an
	// ed25519.PublicKey (EdDSA), *rsa.PublicKey (RS256/384/512) or
	// *ecdsa.PublicKey (the ES algorithm of its curve).
	PublicKey crypto.PublicKey
	// Issuer and Audience, when set, must match the iss and aud claims.
	Issuer, Audience string
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	cfg     Config
	parser  *jwt.Parser
	byAlg   map[string]any // algorithm → the key that verifies it
	methods []string
}

// ErrInvalidToken wraps every reason a token is refused.
var ErrInvalidToken = errors.New("invalid token")

// NewVerifier returns a Verifier that accepts only the algorithms of the
// configured keys: HS256 for the secret, the public key's own algorithms
// for it. A token signed with "none", or with HMAC over the public key, can
// never verify, because no such algorithm is in the list.
func NewVerifier(cfg Config) (*Verifier, error) {
	v := &Verifier{cfg: cfg, byAlg: map[string]any{}}
	if cfg.Secret != nil {
		if len(cfg.Secret) < MinSecretBytes {
			return nil, fmt.Errorf("the JWT secret has %d bytes; at least %d are needed", len(cfg.Secret), MinSecretBytes)
		}
		v.byAlg["HS256"] = cfg.Secret
	}
	switch k := cfg.PublicKey.(type) {
	case nil:
	case ed25519.PublicKey:
		v.byAlg["EdDSA"] = k
	case *rsa.PublicKey:
		for _, alg := range []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"} {
			v.byAlg[alg] = k
		}
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256:
			v.byAlg["ES256"] = k
		case 384:
			v.byAlg["ES384"] = k
		case 521:
			v.byAlg["ES512"] = k
		default:
			return nil, fmt.Errorf("ECDSA key on an unsupported curve %s", k.Curve.Params().Name)
		}
	default:
		return nil, fmt.Errorf("unsupported public key type %T: want Ed25519, RSA or ECDSA", k)
	}
	if len(v.byAlg) == 0 {
		return nil, errors.New("no JWT key: set a secret or a public key")
	}
	v.methods = make([]string, 0, len(v.byAlg))
	for alg := range maps.Keys(v.byAlg) {
		v.methods = append(v.methods, alg)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(v.methods),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(Leeway),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	if cfg.Now != nil {
		opts = append(opts, jwt.WithTimeFunc(cfg.Now))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

// Verify checks token and returns its caller. Every error wraps
// ErrInvalidToken; its text says why (expired, bad signature, …) and may be
// shown to the caller, since it holds nothing the caller did not send.
func (v *Verifier) Verify(token string) (*Principal, error) {
	var c Claims
	_, err := v.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		// WithValidMethods already refused other algorithms; the key is
		// chosen by the algorithm so that an RSA key never meets HS256.
		key, ok := v.byAlg[t.Method.Alg()]
		if !ok {
			return nil, fmt.Errorf("algorithm %s is not accepted", t.Method.Alg())
		}
		return key, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if c.Subject == "" {
		return nil, fmt.Errorf("%w: the sub claim is required", ErrInvalidToken)
	}
	p := &Principal{Subject: c.Subject, Name: c.Name, Admin: c.Admin, CreateRooms: c.CreateRooms, Expires: c.ExpiresAt.Time}
	if p.Name == "" {
		p.Name = c.Subject
	}
	if len(c.Rooms) > 0 {
		p.Rooms = make(map[string]Role, len(c.Rooms))
		for room, s := range c.Rooms {
			r, ok := ParseRoomRole(s)
			if !ok {
				return nil, fmt.Errorf("%w: rooms[%q] is %q, not viewer, editor or owner", ErrInvalidToken, room, s)
			}
			p.Rooms[room] = r
		}
	}
	return p, nil
}

// Mint signs claims with secret (HS256): for operators, curl and tests
// (`liveshare token`). Services mint their own tokens with their own
// libraries; nothing in LiveShare depends on this function.
func Mint(secret []byte, c Claims) (string, error) {
	if len(secret) < MinSecretBytes {
		return "", fmt.Errorf("the JWT secret has %d bytes; at least %d are needed", len(secret), MinSecretBytes)
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

// ParsePublicKey reads a PEM public key (PKIX "PUBLIC KEY", or PKCS#1 "RSA
// PUBLIC KEY") of a kind NewVerifier accepts.
func ParsePublicKey(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	switch block.Type {
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse public key: %w", err)
		}
		switch k.(type) {
		case ed25519.PublicKey, *rsa.PublicKey, *ecdsa.PublicKey:
			return k, nil
		}
		return nil, fmt.Errorf("unsupported public key type %T: want Ed25519, RSA or ECDSA", k)
	case "RSA PUBLIC KEY":
		k, err := x509.ParsePKCS1PublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse RSA public key: %w", err)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("PEM block %q is not a public key", block.Type)
	}
}
