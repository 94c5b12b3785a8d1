package auth_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"pgregory.net/rapid"

	"github.com/liveshare/liveshare/auth"
)

var (
	secret  = []byte("0123456789abcdef0123456789abcdef")
	t0      = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	fixedAt = func() time.Time { return t0 }
)

func claims(sub string, exp time.Time) auth.Claims {
	return auth.Claims{Rooms: map[string]string{"*": "editor"}, RegisteredClaims: jwt.RegisteredClaims{
		Subject: sub, ExpiresAt: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(t0.Add(-time.Minute)),
	}}
}

func mustVerifier(t testing.TB, cfg auth.Config) *auth.Verifier {
	t.Helper()
	cfg.Now = fixedAt
	v, err := auth.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifyGoodToken(t *testing.T) {
	v := mustVerifier(t, auth.Config{Secret: secret})
	c := claims("alice", t0.Add(time.Hour))
	c.Name, c.Admin, c.CreateRooms = "Alice", true, true
	c.Rooms = map[string]string{"r1": "viewer", "*": "editor"}
	tok, err := auth.Mint(secret, c)
	if err != nil {
		t.Fatal(err)
	}
	p, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "alice" || p.Name != "Alice" || !p.Admin || !p.CreateRooms || !p.Expires.Equal(t0.Add(time.Hour)) {
		t.Errorf("principal %+v", p)
	}
	if got := p.Rooms["r1"]; got != auth.Viewer {
		t.Errorf("rooms[r1] = %v", got)
	}
	p.Admin = false
	if got, want := p.TokenRole("r1"), auth.Editor; got != want {
		t.Errorf("TokenRole(r1) = %v, want %v (the wildcard is higher)", got, want)
	}
}

func TestNameDefaultsToSubject(t *testing.T) {
	v := mustVerifier(t, auth.Config{Secret: secret})
	tok, _ := auth.Mint(secret, claims("bob", t0.Add(time.Hour)))
	p, err := v.Verify(tok)
	if err != nil || p.Name != "bob" {
		t.Fatalf("principal %+v, %v", p, err)
	}
}

func TestShortSecretRefused(t *testing.T) {
	if _, err := auth.NewVerifier(auth.Config{Secret: []byte("short")}); err == nil {
		t.Error("a 5-byte secret was accepted")
	}
	if _, err := auth.NewVerifier(auth.Config{}); err == nil {
		t.Error("a verifier without keys was made")
	}
}

func TestIssuerAndAudience(t *testing.T) {
	v := mustVerifier(t, auth.Config{Secret: secret, Issuer: "https://id.example", Audience: "liveshare"})
	c := claims("alice", t0.Add(time.Hour))
	tok, _ := auth.Mint(secret, c)
	if _, err := v.Verify(tok); err == nil {
		t.Error("a token without iss and aud verified")
	}
	c.Issuer, c.Audience = "https://id.example", jwt.ClaimStrings{"liveshare"}
	tok, _ = auth.Mint(secret, c)
	if _, err := v.Verify(tok); err != nil {
		t.Errorf("a token with the right iss and aud: %v", err)
	}
	c.Audience = jwt.ClaimStrings{"other"}
	tok, _ = auth.Mint(secret, c)
	if _, err := v.Verify(tok); err == nil {
		t.Error("a token for another audience verified")
	}
}

func TestPublicKeys(t *testing.T) {
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	rsaPriv, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecPriv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cases := []struct {
		name   string
		pub    any
		method jwt.SigningMethod
		priv   any
	}{
		{"ed25519", edPub, jwt.SigningMethodEdDSA, edPriv},
		{"rsa", &rsaPriv.PublicKey, jwt.SigningMethodRS256, rsaPriv},
		{"ecdsa", &ecPriv.PublicKey, jwt.SigningMethodES256, ecPriv},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			der, err := x509.MarshalPKIXPublicKey(c.pub)
			if err != nil {
				t.Fatal(err)
			}
			key, err := auth.ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
			if err != nil {
				t.Fatal(err)
			}
			v := mustVerifier(t, auth.Config{PublicKey: key})
			tok, err := jwt.NewWithClaims(c.method, claims("carol", t0.Add(time.Hour))).SignedString(c.priv)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := v.Verify(tok); err != nil {
				t.Errorf("a token signed with the key: %v", err)
			}
			// HMAC with the public key's bytes as the secret: the classic
			// algorithm confusion.
			forged, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims("mallory", t0.Add(time.Hour))).SignedString(der)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := v.Verify(forged); !errors.Is(err, auth.ErrInvalidToken) {
				t.Errorf("HS256 over the public key verified: %v", err)
			}
		})
	}
	if _, err := auth.ParsePublicKey([]byte("not pem")); err == nil {
		t.Error("a non-PEM key was parsed")
	}
}

// TestBadTokensNeverVerify is the property: whatever the claims, a token that
// is expired, not yet valid, issued in the future, without exp or sub,
// signed with another key, with alg none, with HMAC over a public key, or
// tampered with in any byte, never verifies.
func TestBadTokensNeverVerify(t *testing.T) {
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKIXPublicKey(edPub)
	v := mustVerifier(t, auth.Config{Secret: secret, PublicKey: edPub})
	otherSecret := []byte("another-secret-another-secret-32")
	rapid.Check(t, func(rt *rapid.T) {
		sub := rapid.StringMatching(`[a-z]{1,12}`).Draw(rt, "sub")
		c := claims(sub, t0.Add(time.Duration(rapid.IntRange(1, 48*3600).Draw(rt, "ttl"))*time.Second))
		c.Admin = rapid.Bool().Draw(rt, "admin")
		good, err := auth.Mint(secret, c)
		if err != nil {
			rt.Fatal(err)
		}
		if _, err := v.Verify(good); err != nil {
			rt.Fatalf("the untouched token does not verify: %v", err)
		}
		past := time.Duration(rapid.IntRange(31, 1e6).Draw(rt, "beyond_leeway")) * time.Second
		kind := rapid.SampledFrom([]string{"expired", "not_yet", "iat_future", "no_exp", "no_sub", "other_key", "none", "hmac_pubkey", "tampered"}).Draw(rt, "kind")
		var tok string
		sign := func(m jwt.SigningMethod, key any, c auth.Claims) string {
			s, err := jwt.NewWithClaims(m, c).SignedString(key)
			if err != nil {
				rt.Fatal(err)
			}
			return s
		}
		switch kind {
		case "expired":
			c.ExpiresAt = jwt.NewNumericDate(t0.Add(-past))
			tok = sign(jwt.SigningMethodHS256, secret, c)
		case "not_yet":
			c.NotBefore = jwt.NewNumericDate(t0.Add(past))
			tok = sign(jwt.SigningMethodHS256, secret, c)
		case "iat_future":
			c.IssuedAt = jwt.NewNumericDate(t0.Add(past))
			tok = sign(jwt.SigningMethodHS256, secret, c)
		case "no_exp":
			c.ExpiresAt = nil
			tok = sign(jwt.SigningMethodHS256, secret, c)
		case "no_sub":
			c.Subject = ""
			tok = sign(jwt.SigningMethodHS256, secret, c)
		case "other_key":
			tok = sign(jwt.SigningMethodHS256, otherSecret, c)
		case "none":
			tok = sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, c)
		case "hmac_pubkey":
			tok = sign(jwt.SigningMethodHS256, []byte(edDER), c)
		case "tampered":
			b := []byte(good)
			i := rapid.IntRange(0, len(b)-1).Draw(rt, "at")
			const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
			nb := alphabet[rapid.IntRange(0, len(alphabet)-1).Draw(rt, "byte")]
			if nb == b[i] || lastSignatureCharBitsIgnored(good, i, nb) {
				rt.Skip("no change")
			}
			b[i] = nb
			tok = string(b)
		}
		if p, err := v.Verify(tok); err == nil {
			rt.Fatalf("%s token verified as %+v", kind, p)
		} else if !errors.Is(err, auth.ErrInvalidToken) {
			rt.Fatalf("%s: error %v does not wrap ErrInvalidToken", kind, err)
		}
	})
}

// lastSignatureCharBitsIgnored reports whether writing c at i only changes
// the padding bits of the last base64url character of the signature (a
// 32-byte HS256 signature is 43 characters, whose last carries 2 unused
// bits): such a token decodes to the same bytes and is not tampered with.
func lastSignatureCharBitsIgnored(tok string, i int, c byte) bool {
	if i != len(tok)-1 || strings.Count(tok, ".") != 2 {
		return false
	}
	sig := tok[strings.LastIndex(tok, ".")+1:]
	a, err1 := base64.RawURLEncoding.DecodeString(sig)
	b, err2 := base64.RawURLEncoding.DecodeString(sig[:len(sig)-1] + string(c))
	return err1 == nil && err2 == nil && string(a) == string(b)
}

func FuzzVerify(f *testing.F) {
	v := mustVerifier(f, auth.Config{Secret: secret})
	good, _ := auth.Mint(secret, claims("alice", t0.Add(time.Hour)))
	f.Add(good)
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := v.Verify(tok)
		if err != nil {
			return
		}
		// Only a token signed with the secret verifies: re-signing its
		// claims must reproduce it exactly.
		if tok != good && p.Subject != "" {
			parts := strings.Split(tok, ".")
			if len(parts) != 3 {
				t.Fatalf("verified a token of %d parts", len(parts))
			}
			sig, err := jwt.SigningMethodHS256.Sign(parts[0]+"."+parts[1], secret)
			if err != nil || base64.RawURLEncoding.EncodeToString(sig) != strings.TrimRight(parts[2], "=") {
				b1, _ := base64.RawURLEncoding.DecodeString(parts[2])
				if string(b1) != string(sig) {
					t.Fatalf("verified a token whose signature is not the secret's: %q", tok)
				}
			}
		}
	})
}
