package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/liveshare/liveshare/auth"
	"github.com/liveshare/liveshare/handlers"
)

// AuthSettings is who may call the service (DESIGN.md section 9).
type AuthSettings struct {
	// Mode is "open" or "jwt"; explicit says LIVESHARE_AUTH chose it.
	Mode     string
	explicit bool
	// Secret and PublicKeyFile are the JWT keys; Issuer and Audience,
	// when set, must match the tokens' iss and aud.
	Secret           []byte
	PublicKeyFile    string
	Issuer, Audience string
	CORSOrigins      []string
	// PublicURL is where users reach the service (its origin is the
	// page's own, its host one of the server's names).
	PublicURL   *url.URL
	MetricsAddr string
}

// authSettings are the settings of section 9, added to ParseConfig's.
func authSettings(c *AuthSettings) []setting {
	return []setting{
		{"LIVESHARE_AUTH", "auth", "", "open or jwt; default jwt when a JWT key is set, open otherwise", func(s string) error {
			switch s {
			case "", handlers.ModeOpen, handlers.ModeJWT:
				c.Mode, c.explicit = s, s != ""
				return nil
			}
			return errors.New("must be open or jwt")
		}},
		{"LIVESHARE_JWT_SECRET", "jwt-secret", "", "HS256 secret of the tokens (at least 32 bytes)", func(s string) error {
			if s != "" && len(s) < auth.MinSecretBytes {
				return fmt.Errorf("must be at least %d bytes", auth.MinSecretBytes)
			}
			if s != "" {
				c.Secret = []byte(s)
			}
			return nil
		}},
		{"LIVESHARE_JWT_PUBLIC_KEY_FILE", "jwt-public-key-file", "", "PEM public key (Ed25519, RSA or ECDSA) of the tokens", func(s string) error {
			c.PublicKeyFile = s
			return nil
		}},
		{"LIVESHARE_JWT_ISSUER", "jwt-issuer", "", "required iss of the tokens; empty: not checked", func(s string) error {
			c.Issuer = s
			return nil
		}},
		{"LIVESHARE_JWT_AUDIENCE", "jwt-audience", "", "required aud of the tokens; empty: not checked", func(s string) error {
			c.Audience = s
			return nil
		}},
		{"LIVESHARE_CORS_ORIGINS", "cors-origins", "", "comma-separated exact origins (https://app.example) allowed to call from a browser; empty: CORS off", func(s string) error {
			c.CORSOrigins = nil
			for _, o := range strings.Split(s, ",") {
				if o = strings.TrimSpace(o); o == "" {
					continue
				}
				u, err := url.Parse(o)
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" {
					return fmt.Errorf("%q is not an origin such as https://app.example", o)
				}
				c.CORSOrigins = append(c.CORSOrigins, o)
			}
			return nil
		}},
		{"LIVESHARE_PUBLIC_URL", "public-url", "", "the URL users reach the service at, e.g. https://liveshare.example", func(s string) error {
			if s == "" {
				return nil
			}
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return errors.New("must be an http or https URL")
			}
			c.PublicURL = u
			return nil
		}},
		{"LIVESHARE_METRICS_ADDR", "metrics-addr", "", "serve /metrics alone on this host:port (and not on the API); empty: on the API, admin-only in jwt mode", func(s string) error {
			if s != "" && !strings.Contains(s, ":") {
				return errors.New("must be host:port, or empty")
			}
			c.MetricsAddr = s
			return nil
		}},
	}
}

// resolveMode settles the mode once every setting is read: jwt when a key is
// set, and never open on an address other machines reach unless asked.
func (c *AuthSettings) resolveMode(addr string) error {
	hasKey := c.Secret != nil || c.PublicKeyFile != ""
	switch {
	case c.Mode == "":
		c.Mode = handlers.ModeOpen
		if hasKey {
			c.Mode = handlers.ModeJWT
		}
	case c.Mode == handlers.ModeJWT && !hasKey:
		return errors.New("invalid LIVESHARE_AUTH (-auth) \"jwt\": set LIVESHARE_JWT_SECRET or LIVESHARE_JWT_PUBLIC_KEY_FILE")
	}
	if c.Mode == handlers.ModeOpen && !c.explicit && !loopback(addr) {
		return fmt.Errorf("invalid LIVESHARE_AUTH: open mode (everyone owns every room) on %s, which other machines can reach; set LIVESHARE_JWT_SECRET, listen on 127.0.0.1, or set LIVESHARE_AUTH=open to accept it", addr)
	}
	return nil
}

// loopback reports whether the listen address is reachable from this
// machine only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// handlerConfig builds the handlers' view of the settings; listenAddr is the
// address actually bound (its host is one of the server's names).
func (c *AuthSettings) handlerConfig(listenAddr string) (handlers.AuthConfig, error) {
	h := handlers.AuthConfig{Mode: c.Mode, CORSOrigins: c.CORSOrigins, MetricsElsewhere: c.MetricsAddr != ""}
	if c.PublicURL != nil {
		h.PublicOrigin = c.PublicURL.Scheme + "://" + c.PublicURL.Host
	}
	if c.Mode == handlers.ModeOpen {
		h.Hosts = []string{"localhost", "127.0.0.1", "::1"}
		if host, _, err := net.SplitHostPort(listenAddr); err == nil {
			h.Hosts = append(h.Hosts, host)
			// Listening on every address: the machine's addresses are its
			// names too, and a rebinding page always uses a domain name.
			if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
				h.AnyIPHost = true
			}
		}
		if c.PublicURL != nil {
			h.Hosts = append(h.Hosts, c.PublicURL.Hostname())
		}
		return h, nil
	}
	vc := auth.Config{Secret: c.Secret, Issuer: c.Issuer, Audience: c.Audience}
	if c.PublicKeyFile != "" {
		data, err := os.ReadFile(c.PublicKeyFile)
		if err != nil {
			return h, fmt.Errorf("invalid LIVESHARE_JWT_PUBLIC_KEY_FILE: %w", err)
		}
		if vc.PublicKey, err = auth.ParsePublicKey(data); err != nil {
			return h, fmt.Errorf("invalid LIVESHARE_JWT_PUBLIC_KEY_FILE %s: %w", c.PublicKeyFile, err)
		}
	}
	v, err := auth.NewVerifier(vc)
	if err != nil {
		return h, fmt.Errorf("invalid JWT settings: %w", err)
	}
	h.Verifier = v
	return h, nil
}

// secretSetting reports whether a setting's value may hold a secret (the
// JWT secret, a database URL's password, the encryption keys), which -h and errors never show.
func secretSetting(env string) bool {
	return env == "LIVESHARE_JWT_SECRET" || env == "DATABASE_URL" || env == "LIVESHARE_ENCRYPTION_KEYS"
}

// redact keeps secrets out of the one line that names a bad setting.
func redact(env, value string) string {
	switch env {
	case "LIVESHARE_JWT_SECRET", "LIVESHARE_ENCRYPTION_KEYS":
		return "…"
	case "DATABASE_URL":
		// The URL is worth showing, its password is not; a URL that does
		// not even parse may hold one anywhere.
		u, err := url.Parse(value)
		if err != nil {
			return "…"
		}
		return u.Redacted()
	}
	return value
}

// startMetrics serves /metrics alone on addr (LIVESHARE_METRICS_ADDR), for a
// scraper on a private network; it returns a function that stops it.
func startMetrics(addr string, h http.Handler, log *slog.Logger) (stop func(), err error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	return serveSide("metrics", addr, &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}, log)
}
