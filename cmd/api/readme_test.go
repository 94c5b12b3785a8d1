package main_test

// The README's curl walkthrough, run as written against the built binary:
// every curl command of the "Walkthrough with curl" section is run with
// bash and curl in order, and its answer is checked against the "# …"
// lines the README shows under it.

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/liveshare/liveshare/store/storetest"
)

// readmeStep is one curl command of the README and what it shows as its
// answer.
type readmeStep struct {
	Command  string
	Expected []string // the comment lines right under it, without "# "
	Assign   string   // for a "NAME=…" line: the variable the previous answer's id goes into
}

// readmeWalkthrough reads the sh blocks of the README's curl walkthrough.
func readmeWalkthrough(t *testing.T) []readmeStep {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, "## Walkthrough with curl")
	if start < 0 {
		t.Fatal("README.md has no \"## Walkthrough with curl\" section")
	}
	text = text[start+3:]
	if end := strings.Index(text, "\n## "); end >= 0 {
		text = text[:end]
	}
	var steps []readmeStep
	for _, block := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(text, -1) {
		lines := strings.Split(block[1], "\n")
		for i := 0; i < len(lines); i++ {
			line := lines[i]
			switch {
			case strings.HasPrefix(line, "curl "):
				cmd := line
				for (strings.HasSuffix(strings.TrimSpace(stripComment(cmd)), `\`) || strings.Count(cmd, "'")%2 == 1) && i+1 < len(lines) {
					i++
					cmd += "\n" + lines[i]
				}
				step := readmeStep{Command: cmd}
				for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "#") {
					i++
					step.Expected = append(step.Expected, strings.TrimPrefix(strings.TrimPrefix(lines[i], "#"), " "))
				}
				steps = append(steps, step)
			case regexp.MustCompile(`^[A-Z]+=`).MatchString(line):
				steps = append(steps, readmeStep{Assign: line[:strings.Index(line, "=")]})
			}
		}
	}
	if len(steps) < 10 {
		t.Fatalf("found only %d steps in the README walkthrough", len(steps))
	}
	return steps
}

// stripComment drops a trailing "   # …" comment from the last line.
func stripComment(cmd string) string {
	last := cmd[strings.LastIndex(cmd, "\n")+1:]
	if i := strings.Index(last, "  #"); i >= 0 && strings.Count(last[:i], "'")%2 == 0 {
		return cmd[:len(cmd)-len(last)+i]
	}
	return cmd
}

// topLevel returns the keys of a README answer sketch such as
// {"id":"6f1c…","name":"shop schema","version":0,…} that are at the top
// level, with their literal values where the README gives one ("" where it
// elides it).
func topLevel(sketch string) map[string]string {
	out := map[string]string{}
	depth := 0
	for i := 0; i < len(sketch); i++ {
		switch c := sketch[i]; c {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case '"':
			j := i + 1
			for j < len(sketch) && sketch[j] != '"' {
				if sketch[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(sketch) {
				return out
			}
			str := sketch[i+1 : j]
			i = j
			if depth != 1 || i+1 >= len(sketch) || sketch[i+1] != ':' {
				continue
			}
			rest := sketch[i+2:]
			val := ""
			if m := regexp.MustCompile(`^("(?:[^"\\]|\\.)*"|-?[0-9]+(?:\.[0-9]+)?|null|true|false)[,}]`).FindStringSubmatch(rest); m != nil && !strings.Contains(m[1], "…") {
				val = m[1]
			}
			out[str] = val
		}
	}
	return out
}

// sseEvents lists the events of a stream (or of the README's sketch of
// one) as "name#id", one per block of lines.
var sseLine = regexp.MustCompile(`^(event|id): *([A-Za-z_0-9]+)`)

func sseEvents(s string) []string {
	var out []string
	for _, block := range strings.Split(strings.ReplaceAll(s, "\r", ""), "\n\n") {
		name, id := "", ""
		for _, line := range strings.Split(block, "\n") {
			if m := sseLine.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
				if m[1] == "event" {
					name = m[2]
				} else {
					id = m[2]
				}
			}
		}
		if name != "" {
			out = append(out, name+"#"+id)
		}
	}
	return out
}

// isSubsequence reports whether want appears in got in order.
func isSubsequence(want, got []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func TestReadmeWalkthrough(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl is needed to check the README walkthrough")
		}
		t.Skip("curl not found")
	}
	steps := readmeWalkthrough(t)
	s := startServer(t, storetest.Config(t, "sqlite"))
	hostPort := strings.TrimPrefix(s.URL, "http://")
	dir := t.TempDir()
	vars := map[string]string{}
	var last map[string]any

	for i, st := range steps {
		if st.Assign != "" {
			id, _ := last["id"].(string)
			if id == "" {
				t.Fatalf("step %d: %s= takes the id of the previous answer, which has none: %v", i, st.Assign, last)
			}
			vars[st.Assign] = id
			continue
		}
		stream := strings.Contains(st.Command, "curl -N")
		cmd := strings.ReplaceAll(stripComment(st.Command), "localhost:8080", hostPort)
		limit := "--max-time 10"
		if stream {
			limit = "--max-time 2"
		}
		cmd = strings.Replace(cmd, "curl ", "curl "+limit+` -w '\nHTTP %{http_code}\n' `, 1)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		c := exec.CommandContext(ctx, "bash", "-c", cmd)
		c.Dir = dir
		c.Env = os.Environ()
		for k, v := range vars {
			c.Env = append(c.Env, k+"="+v)
		}
		var out, stderr bytes.Buffer
		c.Stdout, c.Stderr = &out, &stderr
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		if stream && len(st.Expected) > 0 && strings.Contains(strings.Join(st.Expected, "\n"), "another terminal") {
			// The README posts this from another terminal while it watches.
			time.Sleep(700 * time.Millisecond)
			r := s.must("POST", "/rooms/"+vars["ROOM"]+"/ops", `{"ops":[{"op":"remove_edge","id":"orders_user_fk"}]}`)
			if r.Status != http.StatusOK {
				t.Fatalf("post from the other terminal: %d %s", r.Status, r.Body)
			}
		}
		err := c.Wait()
		cancel()
		output := out.String()
		if ee, ok := err.(*exec.ExitError); err != nil && !(stream && ok && ee.ExitCode() == 28) {
			t.Fatalf("step %d: %s\nfailed: %v\n%s%s", i, st.Command, err, output, stderr.String())
		}
		body, status := output, 0
		if j := strings.LastIndex(output, "\nHTTP "); j >= 0 {
			body = output[:j]
			status, _ = strconv.Atoi(strings.TrimSpace(output[j+len("\nHTTP "):]))
		}
		t.Logf("step %d: %s → %d", i, strings.SplitN(st.Command, "\n", 2)[0], status)

		last = nil
		_ = json.Unmarshal([]byte(body), &last)
		if last != nil {
			if _, ok := last["trigger"]; ok {
				// The README's $SNAP: a snapshot this walkthrough took.
				vars["SNAP"], _ = last["id"].(string)
			}
		}

		expected := strings.Join(st.Expected, "\n")
		wantStatus := -1 // any 2xx
		switch {
		case strings.HasPrefix(expected, "{"):
			keys := topLevel(expected)
			if v, ok := keys["status"]; ok && v != "" {
				wantStatus, _ = strconv.Atoi(v)
			}
			if last == nil {
				t.Errorf("step %d: %s\nanswered %q, not the JSON object the README shows", i, st.Command, body)
				break
			}
			for k, v := range keys {
				got, ok := last[k]
				if !ok {
					t.Errorf("step %d: %s\nthe answer has no %q, which the README shows: %s", i, st.Command, k, body)
					continue
				}
				if v == "" {
					continue
				}
				gotJSON, _ := json.Marshal(got)
				var wantV any
				_ = json.Unmarshal([]byte(v), &wantV)
				wantJSON, _ := json.Marshal(wantV)
				if !bytes.Equal(gotJSON, wantJSON) {
					t.Errorf("step %d: %s\n%q is %s, the README shows %s", i, st.Command, k, gotJSON, wantJSON)
				}
			}
		case strings.Contains(expected, "event: "):
			want := sseEvents(expected)
			if got := sseEvents(body); !isSubsequence(want, got) {
				t.Errorf("step %d: %s\nthe stream has events %v, the README shows %v\n%s", i, st.Command, got, want, body)
			}
		}
		if wantStatus >= 0 && status != wantStatus || wantStatus < 0 && (status < 200 || status > 299) {
			t.Errorf("step %d: %s\nanswered HTTP %d: %s", i, st.Command, status, body)
		}
	}
}
