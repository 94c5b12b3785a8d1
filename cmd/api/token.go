package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/liveshare/liveshare/auth"
)

// roomGrants collects -room room:role flags.
type roomGrants map[string]string

func (g roomGrants) String() string { return fmt.Sprint(map[string]string(g)) }

func (g roomGrants) Set(v string) error {
	room, role, ok := strings.Cut(v, ":")
	if !ok || room == "" {
		return fmt.Errorf("%q is not room:role (a room id or *, and viewer, editor or owner)", v)
	}
	if _, ok := auth.ParseRoomRole(role); !ok {
		return fmt.Errorf("role %q is not viewer, editor or owner", role)
	}
	g[room] = role
	return nil
}

// runToken is `liveshare token`: it prints a token signed with
// LIVESHARE_JWT_SECRET, for operators, curl and tests. A team's backend
// mints its own tokens; this is the same thing by hand.
func runToken(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("liveshare token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sub := fs.String("sub", "", "the subject (required): who the token is for")
	name := fs.String("name", "", "the presence name (default: the subject)")
	rooms := roomGrants{}
	fs.Var(rooms, "room", "room:role, repeatable; room is a room id or * (every room), role viewer, editor or owner")
	create := fs.Bool("create-rooms", false, "may create rooms (and owns those it creates)")
	admin := fs.Bool("admin", false, "owner of every room, and /metrics, GET /snapshots/stats")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	issuer := fs.String("iss", getenv("LIVESHARE_JWT_ISSUER"), "the iss claim (default: LIVESHARE_JWT_ISSUER)")
	audience := fs.String("aud", getenv("LIVESHARE_JWT_AUDIENCE"), "the aud claim (default: LIVESHARE_JWT_AUDIENCE)")
	// Their usage already says where the default comes from.
	fs.Lookup("iss").DefValue, fs.Lookup("aud").DefValue = "", ""
	if err := fs.Parse(args); err != nil {
		return err
	}
	secret := getenv("LIVESHARE_JWT_SECRET")
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case *sub == "":
		return errors.New("token: -sub is required")
	case *ttl <= 0:
		return errors.New("token: -ttl must be positive")
	case len(secret) < auth.MinSecretBytes:
		return fmt.Errorf("token: LIVESHARE_JWT_SECRET must be set to at least %d bytes (the server's secret)", auth.MinSecretBytes)
	}
	now := time.Now()
	c := auth.Claims{Name: *name, CreateRooms: *create, Admin: *admin, RegisteredClaims: jwt.RegisteredClaims{
		Subject: *sub, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(*ttl)), Issuer: *issuer,
	}}
	if len(rooms) > 0 {
		c.Rooms = rooms
	}
	if *audience != "" {
		c.Audience = jwt.ClaimStrings{*audience}
	}
	tok, err := auth.Mint([]byte(secret), c)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}
