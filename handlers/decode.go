package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// decodeJSON reads r's body, at most maxBytes, into dst: exactly one JSON
// value, no unknown fields. An empty body is allowed when allowEmpty is set
// and leaves dst untouched. Errors are *Problem values naming what is wrong.
func decodeJSON(w http.ResponseWriter, r *http.Request, maxBytes int64, dst any, allowEmpty bool) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return problemf(http.StatusRequestEntityTooLarge, "payload_too_large", "request body is larger than %d bytes", maxBytes)
		}
		return problemf(http.StatusBadRequest, "invalid_json", "reading request body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if allowEmpty {
			return nil
		}
		return newProblem(http.StatusBadRequest, "invalid_json", "request body is empty: a JSON object is required")
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
