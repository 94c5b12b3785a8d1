package main_test

// The README's curl walkthrough, pasted as written into the shells people
// use — bash, and zsh (macOS's default) when it is installed — against the
// built binary. Each sh block of the "Walkthrough with curl" section is fed
// to an interactive shell, as a paste is, and what it prints is checked
// against the text block the README shows under it: JSON answers key by
// key (values written out must match; "…" elides), event streams event by
// event with their lines in the order the server writes them.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/liveshare/liveshare/store/storetest"
)

// readmeBlock is one sh block of the walkthrough and the text block the
// README shows under it ("" when none).
type readmeBlock struct {
	Script string
	Shown  string
}

// readmeWalkthrough reads the blocks of the README's curl walkthrough.
func readmeWalkthrough(t *testing.T) []readmeBlock {
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
	var blocks []readmeBlock
	for _, m := range regexp.MustCompile("(?s)```(sh|text)\n(.*?)```").FindAllStringSubmatch(text, -1) {
		switch {
		case m[1] == "sh":
			blocks = append(blocks, readmeBlock{Script: m[2]})
		case len(blocks) > 0 && blocks[len(blocks)-1].Shown == "":
			blocks[len(blocks)-1].Shown = m[2]
		default:
			t.Fatalf("a text block that follows no sh block:\n%s", m[2])
		}
	}
	if len(blocks) < 8 {
		t.Fatalf("found only %d sh blocks in the README walkthrough", len(blocks))
	}
	return blocks
}

// TestReadmeWalkthroughPastes: nothing in the blocks needs a shell's
// goodwill. zsh's interactive shells take "#" as a word, not a comment
// (unless interactive_comments is set), and a "?" outside quotes as a glob
// that fails with "no matches found".
func TestReadmeWalkthroughPastes(t *testing.T) {
	t.Parallel()
	for i, b := range readmeWalkthrough(t) {
		for _, line := range strings.Split(unquoted(b.Script), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "#") || strings.Contains(line, " #") {
				t.Errorf("block %d: a comment does not paste into zsh: %s", i, line)
			}
			if strings.ContainsAny(line, "?*[") {
				t.Errorf("block %d: an unquoted glob character fails in zsh: %s", i, line)
			}
		}
	}
}

// unquoted is script without what single or double quotes enclose, line
// breaks kept, so that each line holds what the shell reads as words.
func unquoted(script string) string {
	var b strings.Builder
	var quote rune
	for _, r := range script {
		switch {
		case r == '\n':
			b.WriteRune(r)
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// readmeShells are the shells the walkthrough is pasted into, with the
// arguments that make them read a paste from stdin as a terminal would
// (interactive), without the user's rc files.
var readmeShells = []struct {
	name string
	args []string
}{
	{"bash", []string{"--norc", "--noprofile", "-i"}},
	{"zsh", []string{"-f", "-i"}},
}

func TestReadmeWalkthrough(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" || os.Getenv("LIVESHARE_BROWSER_TESTS") == "required" {
				t.Fatalf("%s is needed to check the README walkthrough", tool)
			}
			t.Skipf("%s not found: the README walkthrough needs it", tool)
		}
	}
	blocks := readmeWalkthrough(t)
	for _, sh := range readmeShells {
		t.Run(sh.name, func(t *testing.T) {
			t.Parallel()
			path, err := exec.LookPath(sh.name)
			if err != nil {
				if sh.name == "bash" {
					t.Fatal("bash is needed to check the README walkthrough")
				}
				t.Skipf("%s not installed: the walkthrough is checked in bash only (apt-get install zsh)", sh.name)
			}
			s := startServer(t, storetest.Config(t, "sqlite"))
			p := &paste{t: t, s: s, shell: append([]string{path}, sh.args...), vars: map[string]string{}, dir: t.TempDir()}
			for i, b := range blocks {
				p.run(i, b)
			}
		})
	}
}

// paste is one terminal session of the walkthrough: the variables its
// blocks set carry over to the next blocks.
type paste struct {
	t     *testing.T
	s     *server
	shell []string
	vars  map[string]string
	dir   string
}

var (
	assignment = regexp.MustCompile(`(?m)^([A-Z][A-Z0-9_]*)=`)
	uuidRE     = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	// shellErrors are what bash, zsh, curl and jq print when a paste goes
	// wrong.
	shellErrors = regexp.MustCompile(`command not found|no matches found|parse error|syntax error|bad substitution|unexpected EOF|jq: error|curl: \(`)
)

// run pastes block i into a new shell and checks what it printed.
func (p *paste) run(i int, b readmeBlock) {
	t := p.t
	t.Helper()
	hostPort := strings.TrimPrefix(p.s.URL, "http://")
	script := strings.ReplaceAll(b.Script, "localhost:8080", hostPort)
	var in strings.Builder
	for k, v := range p.vars {
		fmt.Fprintf(&in, "%s='%s'\n", k, v)
	}
	in.WriteString(script)
	assigned := assignment.FindAllStringSubmatch(b.Script, -1)
	for _, a := range assigned {
		fmt.Fprintf(&in, "printf '%%s' \"$%s\" > '%s'\n", a[1], filepath.Join(p.dir, a[1]))
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.shell[0], p.shell[1:]...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), "PS1=", "PS2=", "PROMPT=", "TERM=dumb")
	cmd.Stdin = strings.NewReader(in.String())
	// Its own process group, so that ending a stream ends its curl too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(&out, stdout)
	}()

	stream := strings.Contains(b.Script, "curl -N")
	if stream {
		// A stream never ends by itself: once it showed what the README
		// shows, the test ends it as Ctrl-C would.
		p.follow(i, b, &out, cmd, cancel)
	}
	<-copied
	err = cmd.Wait()
	if ctx.Err() != nil && !stream {
		t.Fatalf("block %d did not finish within a minute:\n%s\nstdout:\n%s\nstderr:\n%s", i, b.Script, out.String(), stderr.String())
	}
	if m := shellErrors.FindString(stderr.String()); m != "" {
		t.Errorf("block %d: %s says %q:\n%s\nstderr:\n%s", i, p.shell[0], m, b.Script, stderr.String())
	}
	if !stream && err != nil {
		t.Errorf("block %d: %v\n%s\nstderr:\n%s", i, err, b.Script, stderr.String())
	}
	for _, a := range assigned {
		v, err := os.ReadFile(filepath.Join(p.dir, a[1]))
		if err != nil || !uuidRE.Match(v) {
			t.Fatalf("block %d: $%s is %q after the block, not an id (%v):\n%s\nstderr:\n%s", i, a[1], v, err, b.Script, stderr.String())
		}
		p.vars[a[1]] = string(v)
	}
	t.Logf("block %d: %s", i, strings.SplitN(b.Script, "\n", 2)[0])
	if stream {
		checkStream(t, i, b.Shown, out.String())
	} else {
		checkAnswers(t, i, b, out.String())
	}
}

// follow waits until the stream of block i printed the events the README
// shows, posting the ops it shows arriving from "another terminal" once the
// events before them arrived, then ends the stream.
func (p *paste) follow(i int, b readmeBlock, out *syncBuffer, cmd *exec.Cmd, cancel func()) {
	t := p.t
	t.Helper()
	defer cancel()
	shown := parseSSE(b.Shown)
	posted := false
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := parseSSE(out.String())
		if isSubsequence(eventKeys(shown), eventKeys(got)) {
			return
		}
		if !posted && len(shown) > 1 && isSubsequence(eventKeys(shown[:len(shown)-1]), eventKeys(got)) {
			if last := shown[len(shown)-1]; last.name == "ops" && last.id > fmt.Sprint(p.s.roomVersion(p.vars["ROOM"])) {
				p.postShown(i, last)
			}
			posted = true
		}
		if time.Now().After(deadline) {
			t.Fatalf("block %d: the stream did not show the README's events %v within 30s; it showed %v:\n%s", i, eventKeys(shown), eventKeys(got), out.String())
		}
		if cmd.ProcessState != nil {
			t.Fatalf("block %d: the stream ended early:\n%s", i, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// postShown posts the ops of a shown ops event, as the README's other
// terminal does.
func (p *paste) postShown(i int, ev sseEvent) {
	t := p.t
	t.Helper()
	var data struct {
		Ops []struct {
			Op json.RawMessage `json:"op"`
		} `json:"ops"`
	}
	if err := json.Unmarshal([]byte(ev.data), &data); err != nil || len(data.Ops) == 0 {
		t.Fatalf("block %d: the ops the README shows arriving live must be written out in full, to be posted: %s", i, ev.data)
	}
	var ops []json.RawMessage
	for _, o := range data.Ops {
		ops = append(ops, o.Op)
	}
	r := p.s.must("POST", "/rooms/"+p.vars["ROOM"]+"/ops", map[string]any{"ops": ops})
	if r.Status != http.StatusOK {
		t.Fatalf("block %d: post from the other terminal: %d %s", i, r.Status, r.Body)
	}
}

// checkAnswers checks the JSON answers a block printed against the
// sketches the README shows, in order; an error answer (problem+json) must
// be one the README shows.
func checkAnswers(t *testing.T, i int, b readmeBlock, out string) {
	t.Helper()
	var answers []map[string]any
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var v map[string]any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Errorf("block %d: printed something that is not JSON answers (%v):\n%s\n%s", i, err, b.Script, out)
			return
		}
		answers = append(answers, v)
	}
	var sketches []string
	for _, line := range strings.Split(b.Shown, "\n") {
		if strings.HasPrefix(line, "{") {
			sketches = append(sketches, line)
		}
	}
	matched := map[int]bool{}
	next := 0
	for _, sk := range sketches {
		found := false
		for ; next < len(answers); next++ {
			if matchesSketch(sk, answers[next]) == "" {
				matched[next], found = true, true
				next++
				break
			}
		}
		if !found {
			var why []string
			for _, a := range answers {
				why = append(why, matchesSketch(sk, a))
			}
			t.Errorf("block %d: no answer (after the ones matched before) is what the README shows:\n%s\nanswers:\n%s\nwhy not: %s", i, sk, out, strings.Join(why, "; "))
		}
	}
	for k, a := range answers {
		if typ, _ := a["type"].(string); strings.Contains(typ, "/problems/") && !matched[k] {
			t.Errorf("block %d: answered an error the README does not show: %v", i, a)
		}
	}
}

// matchesSketch returns "" when answer has every top-level key of the
// README's sketch with the values it writes out, or what differs.
func matchesSketch(sketch string, answer map[string]any) string {
	for k, v := range topLevel(sketch) {
		got, ok := answer[k]
		if !ok {
			return fmt.Sprintf("no %q", k)
		}
		if v == "" {
			continue
		}
		gotJSON, _ := json.Marshal(got)
		var wantV any
		_ = json.Unmarshal([]byte(v), &wantV)
		wantJSON, _ := json.Marshal(wantV)
		if !bytes.Equal(gotJSON, wantJSON) {
			return fmt.Sprintf("%q is %s, not %s", k, gotJSON, wantJSON)
		}
	}
	return ""
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

// sseEvent is one event of a stream, or of the README's sketch of one.
type sseEvent struct {
	name, id, data string
	fields         []string // the field names in the order of their lines
}

// parseSSE splits a stream into its events (blocks with an event: line).
func parseSSE(s string) []sseEvent {
	var out []sseEvent
	for _, block := range strings.Split(strings.ReplaceAll(s, "\r", ""), "\n\n") {
		var ev sseEvent
		sc := bufio.NewScanner(strings.NewReader(block))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			name, value, ok := strings.Cut(line, ":")
			if !ok || name == "" {
				continue // a comment (": ping"), or text around the stream
			}
			value = strings.TrimPrefix(value, " ")
			ev.fields = append(ev.fields, name)
			switch name {
			case "event":
				ev.name = value
			case "id":
				ev.id = value
			case "data":
				ev.data = value
			}
		}
		if ev.name != "" {
			out = append(out, ev)
		}
	}
	return out
}

// eventKeys names events as "name#id".
func eventKeys(evs []sseEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.name+"#"+e.id)
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

// checkStream checks that the stream shows the README's events in order,
// each with its lines in the order the README shows them and the data it
// writes out.
func checkStream(t *testing.T, i int, shown, out string) {
	t.Helper()
	want, got := parseSSE(shown), parseSSE(out)
	if len(want) == 0 {
		t.Fatalf("block %d: the README shows no events for a stream", i)
	}
	next := 0
	for _, w := range want {
		for next < len(got) && (got[next].name != w.name || got[next].id != w.id) {
			next++
		}
		if next == len(got) {
			t.Errorf("block %d: the stream has events %v, the README shows %v\n%s", i, eventKeys(got), eventKeys(want), out)
			return
		}
		g := got[next]
		next++
		if strings.Join(g.fields, ",") != strings.Join(w.fields, ",") {
			t.Errorf("block %d: the server writes the %s event's lines as %v, the README as %v", i, w.name, g.fields, w.fields)
		}
		var data map[string]any
		if err := json.Unmarshal([]byte(g.data), &data); err != nil {
			t.Errorf("block %d: the %s event's data is not a JSON object: %s", i, w.name, g.data)
			continue
		}
		if why := matchesSketch(w.data, data); why != "" {
			t.Errorf("block %d: the %s event's data differs from the README's (%s):\n%s\n%s", i, w.name, why, w.data, g.data)
		}
	}
}
