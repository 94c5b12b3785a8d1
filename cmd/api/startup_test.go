package main_test

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/liveshare/liveshare/store/storetest"
)

// What a new user sees first: where to go once the server runs, what -h
// says, and what a port clash says.

// TestStartupNamesTheURLs: the start-up lines give the editor's and the
// docs' URLs, and both answer. Behind a proxy they are the public URL's; on
// every interface, localhost's (0.0.0.0 is no place a browser can go).
func TestStartupNamesTheURLs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  []string
		base func(s *server) string // the URL the lines must name
	}{
		{"loopback", nil, func(s *server) string { return s.URL }},
		{"every interface", []string{"LIVESHARE_ADDR=0.0.0.0:0", "LIVESHARE_AUTH=open"}, func(s *server) string {
			_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.URL, "http://"))
			return "http://localhost:" + port
		}},
		{"public URL", []string{"LIVESHARE_PUBLIC_URL=https://liveshare.example/"}, func(*server) string { return "https://liveshare.example" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, storetest.Config(t, "sqlite"), append([]string{"LIVESHARE_LOG_LEVEL=info"}, tc.env...)...)
			base := tc.base(s)
			// The lines follow the one startServer waits for.
			for _, want := range []string{
				`msg="open the editor" url=` + base + "/\n",
				`msg="API docs" url=` + base + "/docs spec=" + base + "/openapi.yaml\n",
			} {
				waitFor(t, 10*time.Second, "the start-up line "+want, func() bool { return strings.Contains(s.logs.String(), want) })
			}
			for _, path := range []string{"/", "/docs", "/openapi.yaml"} {
				if r := s.must("GET", path, nil); r.Status != http.StatusOK {
					t.Errorf("GET %s: %d, want 200", path, r.Status)
				}
			}
		})
	}
}

// TestHelpShowsEachDefaultOnce: -h names every flag's env var and default
// once, the env's value when it is set, and never a secret.
func TestHelpShowsEachDefaultOnce(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(binary, "-h")
	cmd.Env = append(os.Environ(),
		"LIVESHARE_ADDR=127.0.0.1:9123",
		"DATABASE_URL=postgres://u:hunter2-password@db/liveshare",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("-h: %v\n%s", err, out)
	}
	help := string(out)
	if strings.Contains(help, "(default ") {
		t.Errorf("-h repeats a default the flag package's way:\n%s", help)
	}
	if strings.Contains(help, "hunter2") {
		t.Errorf("-h shows the database URL's password:\n%s", help)
	}
	// Each flag: its name line, then its usage line.
	flagLine := regexp.MustCompile(`(?m)^  -([a-z-]+) string\n\s+(.*)$`)
	flags := flagLine.FindAllStringSubmatch(help, -1)
	if len(flags) < 20 {
		t.Fatalf("-h lists %d flags:\n%s", len(flags), help)
	}
	for _, f := range flags {
		if n := strings.Count(f[2], `default "`); n != 1 {
			t.Errorf("-%s names %d defaults, want 1: %s", f[1], n, f[2])
		}
		if !strings.Contains(f[2], "(env ") {
			t.Errorf("-%s does not name its env var: %s", f[1], f[2])
		}
	}
	for _, want := range []string{
		`listen address (env LIVESHARE_ADDR, default "127.0.0.1:8080"); now "127.0.0.1:9123" from LIVESHARE_ADDR`,
		`now set by DATABASE_URL (not shown`,
		`liveshare token [flags]`,
	} {
		if !strings.Contains(help, want) {
			t.Errorf("-h lacks %q:\n%s", want, help)
		}
	}
}

// TestPortClashNamesTheSetting: a port in use, the API's or a listener's
// beside it, stops the start with one line that says which setting picks
// another.
func TestPortClashNamesTheSetting(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().String()
	for _, tc := range []struct {
		env        string
		flag, line string
	}{
		{"LIVESHARE_ADDR", "-addr", "liveshare: listen on " + taken},
		{"LIVESHARE_PPROF_ADDR", "-pprof-addr", "liveshare: pprof: listen on " + taken},
		{"LIVESHARE_METRICS_ADDR", "-metrics-addr", "liveshare: metrics: listen on " + taken},
	} {
		t.Run(tc.env, func(t *testing.T) {
			cmd := exec.Command(binary)
			cmd.Env = append(os.Environ(), "LIVESHARE_ADDR=127.0.0.1:0", "DATABASE_URL=", "LIVESHARE_DATA_DIR="+t.TempDir(), tc.env+"="+taken)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("start on a port in use: %v, want exit code 1\n%s", err, stderr.String())
			}
			last := strings.TrimSpace(stderr.String())
			last = last[strings.LastIndex(last, "\n")+1:]
			for _, want := range []string{tc.line, "address already in use", tc.flag + " or " + tc.env} {
				if !strings.Contains(last, want) {
					t.Errorf("the last line lacks %q: %s", want, last)
				}
			}
		})
	}
}

// TestBadDatabaseURLHidesItsPassword: the line naming a bad DATABASE_URL
// shows the URL, so that the mistake can be seen, but not its password.
func TestBadDatabaseURLHidesItsPassword(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(), "DATABASE_URL=mysql://app:hunter2-password@db/liveshare")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("a mysql:// DATABASE_URL was accepted:\n%s", out)
	}
	if msg := string(out); strings.Contains(msg, "hunter2") || !strings.Contains(msg, "mysql://app:") || !strings.Contains(msg, "DATABASE_URL") {
		t.Errorf("error %q: want the URL named without its password", msg)
	}
}
