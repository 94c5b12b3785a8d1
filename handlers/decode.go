package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// decodeJSON reads r's body, at most maxBytes, into dst: exactly one JSON
// value, no unknown fields. An empty body is allowed when allowEmpty is set
// and leaves dst untouched. Errors are *Problem values naming what is wrong.
//
// The body must arrive within timeout: a client trickling it in would
// otherwise hold a connection and a decoder until the request's deadline.
func decodeJSON(w http.ResponseWriter, r *http.Request, maxBytes int64, timeout time.Duration, dst any, allowEmpty bool) error {
	body, err := readBody(w, r, maxBytes, timeout)
	if err != nil {
		return err
	}
	return decodeBody(body, dst, allowEmpty)
}

// readBody reads r's body, at most maxBytes, within timeout (see decodeJSON).
func readBody(w http.ResponseWriter, r *http.Request, maxBytes int64, timeout time.Duration) ([]byte, error) {
	rc := http.NewResponseController(w)
	// Where the writer cannot set deadlines (tests' recorders), the
	// server's own timeouts still apply.
	deadlineSet := rc.SetReadDeadline(time.Now().Add(timeout)) == nil
	var (
		body []byte
		err  error
	)
	if n := r.ContentLength; n >= 0 && n <= maxBytes {
		// The server reads no more than Content-Length: the limit holds,
		// and the body's size is known.
		body, err = readAtMost(r.Body, n)
	} else {
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxBytes))
	}
	if deadlineSet {
		_ = rc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, problemf(http.StatusRequestEntityTooLarge, "payload_too_large", "request body is larger than %d bytes", maxBytes)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The rest of the body may still come: do not read it.
			w.Header().Set("Connection", "close")
			return nil, problemf(http.StatusRequestTimeout, "request_timeout", "the request body did not arrive within %s", timeout)
		}
		return nil, problemf(http.StatusBadRequest, "invalid_json", "reading request body: %v", err)
	}
	return body, nil
}

// readAtMost reads body to its end into a buffer sized for n bytes, what
// its Content-Length says it holds.
func readAtMost(body io.Reader, n int64) ([]byte, error) {
	buf := make([]byte, 0, n+1) // +1: the read that finds the end
	for {
		m, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)] // more than announced: grow
		}
	}
}

// decodeBody decodes body into dst as decodeJSON does.
func decodeBody(body []byte, dst any, allowEmpty bool) error {
	if len(bytes.TrimSpace(body)) == 0 {
		if allowEmpty {
			return nil
		}
		return newProblem(http.StatusBadRequest, "invalid_json", "request body is empty: a JSON object is required")
	}
	if err := checkIJSON(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return newProblem(http.StatusBadRequest, "invalid_json", describeJSONError(err))
	}
	if dec.More() {
		return newProblem(http.StatusBadRequest, "invalid_json", "request body holds more than one JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return newProblem(http.StatusBadRequest, "invalid_json", "request body has data after its JSON value")
	}
	return nil
}

// checkIJSON holds a body to I-JSON (RFC 7493), the same for both
// databases: valid UTF-8, escapes that decode to valid code points (no lone
// surrogates), unique member names in every object, and no NUL in any
// string (PostgreSQL cannot store it in text; SQLite would). encoding/json
// alone would replace bad UTF-8 with U+FFFD and let the last duplicate win,
// so what is stored would not be what was sent.
func checkIJSON(body []byte) error {
	if !jsontext.Value(body).IsValid() {
		dec := jsontext.NewDecoder(bytes.NewReader(body))
		if _, err := dec.ReadValue(); err != nil {
			return describeIJSON(err)
		}
		// One valid value and more after it: decodeJSON words that.
		return nil
	}
	// The common case has no escaped NUL at all; only then look closer
	// (a `\\u0000` is text, not a NUL).
	if !bytes.Contains(body, []byte(`\u0000`)) {
		return nil
	}
	dec := jsontext.NewDecoder(bytes.NewReader(body))
	for {
		kind := dec.PeekKind()
		if kind == 0 {
			return nil
		}
		tok, err := dec.ReadToken()
		if err != nil {
			return describeIJSON(err)
		}
		if kind == '"' && strings.IndexByte(tok.String(), 0) >= 0 {
			return problemf(http.StatusBadRequest, "invalid_json", "a string at %q holds a NUL character (\\u0000), which is not allowed", where(dec))
		}
	}
}

// describeIJSON words a jsontext error with where it happened.
func describeIJSON(err error) error {
	var syn *jsontext.SyntacticError
	if errors.As(err, &syn) {
		at := string(syn.JSONPointer)
		if at == "" {
			at = "/"
		}
		return problemf(http.StatusBadRequest, "invalid_json", "malformed JSON at %q (byte %d): %v", at, syn.ByteOffset, syn.Err)
	}
	return problemf(http.StatusBadRequest, "invalid_json", "malformed JSON: %v", err)
}

// where is the JSON Pointer of the value dec just read.
func where(dec *jsontext.Decoder) string {
	if p := string(dec.StackPointer()); p != "" {
		return p
	}
	return "/"
}

// describeJSONError words a decoding error for a client.
func describeJSONError(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d: %v", syntax.Offset, err)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %q must be %s, not %s", typ.Field, typ.Type, typ.Value)
		}
		return fmt.Sprintf("the body must be a JSON object, not %s", typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: the body ends early"
	default:
		// encoding/json words unknown fields as `json: unknown field "x"`.
		return err.Error()
	}
}
