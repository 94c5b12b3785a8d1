package handlers_test

// Contract tests, part 1: openapi.yaml is a valid OpenAPI 3.1 document and
// describes exactly the routes the router serves.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	valerrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"

	"github.com/liveshare/liveshare"
	"github.com/liveshare/liveshare/handlers"
	"github.com/liveshare/liveshare/store/storetest"
	"github.com/liveshare/liveshare/web"
)

// spec is openapi.yaml parsed once: the high-level model and a validator.
type spec struct {
	doc       libopenapi.Document
	model     *v3.Document
	validator validator.Validator
}

var (
	specOnce sync.Once
	specVal  *spec
	specErr  error
)

// loadSpec parses the embedded openapi.yaml (the bytes the binary serves).
func loadSpec(t testing.TB) *spec {
	t.Helper()
	specOnce.Do(func() {
		specVal, specErr = parseSpec(liveshare.OpenAPI)
	})
	if specErr != nil {
		t.Fatal(specErr)
	}
	return specVal
}

func parseSpec(data []byte) (*spec, error) {
	doc, err := libopenapi.NewDocument(data)
	if err != nil {
		return nil, fmt.Errorf("parse openapi.yaml: %w", err)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		return nil, fmt.Errorf("build the OpenAPI 3 model of openapi.yaml: %w", err)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		return nil, fmt.Errorf("validator for openapi.yaml: %v", errs)
	}
	return &spec{doc: doc, model: &m.Model, validator: v}, nil
}

// describe words validation errors with what failed and where.
func describe(errs []*valerrors.ValidationError) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "\n  - %s: %s", e.Message, e.Reason)
		for _, se := range e.SchemaValidationErrors {
			fmt.Fprintf(&b, "\n      %s at %q (schema %s)", se.Reason, se.FieldPath, se.KeywordLocation)
		}
	}
	return b.String()
}

func TestContractSpecIsValidOpenAPI31(t *testing.T) {
	s := loadSpec(t)
	if v := s.doc.GetSpecInfo().Version; !strings.HasPrefix(v, "3.1.") {
		t.Fatalf("openapi.yaml is OpenAPI %q, want 3.1.x", v)
	}
	if ok, errs := s.validator.ValidateDocument(); !ok {
		t.Fatalf("openapi.yaml is not a valid OpenAPI 3.1 document:%s", describe(errs))
	}
}

// TestContractSpecExamplesMatchSchemas checks every JSON example in the spec
// against the schema it illustrates, so the docs never show a payload the
// API would not send.
func TestContractSpecExamplesMatchSchemas(t *testing.T) {
	s := loadSpec(t)
	sv := schema_validation.NewSchemaValidator()
	checked := 0
	check := func(where string, mt *v3.MediaType) {
		if mt == nil || mt.Schema == nil {
			return
		}
		sch := mt.Schema.Schema()
		var examples []any
		if mt.Example != nil {
			var v any
			if err := mt.Example.Decode(&v); err != nil {
				t.Errorf("%s: decode example: %v", where, err)
				return
			}
			examples = append(examples, v)
		}
		if mt.Examples != nil {
			for name, ex := range mt.Examples.FromOldest() {
				if ex.Value == nil {
					continue
				}
				var v any
				if err := ex.Value.Decode(&v); err != nil {
					t.Errorf("%s example %s: decode: %v", where, name, err)
					continue
				}
				examples = append(examples, v)
			}
		}
		for _, v := range examples {
			// Round-trip through JSON so YAML's types become JSON's.
			b, err := json.Marshal(v)
			if err != nil {
				t.Errorf("%s: example is not JSON: %v", where, err)
				continue
			}
			checked++
			if ok, errs := sv.ValidateSchemaBytes(sch, b); !ok {
				t.Errorf("%s: example does not match its schema:%s\n%s", where, describe(errs), b)
			}
		}
	}
	for path, item := range s.model.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			where := strings.ToUpper(method) + " " + path
			if op.RequestBody != nil && op.RequestBody.Content != nil {
				if mt, ok := op.RequestBody.Content.Get("application/json"); ok {
					check(where+" request", mt)
				}
			}
			for code, resp := range op.Responses.Codes.FromOldest() {
				if resp.Content == nil {
					continue
				}
				for ct, mt := range resp.Content.FromOldest() {
					if strings.HasSuffix(ct, "json") {
						check(where+" "+code+" "+ct, mt)
					}
				}
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d examples checked; the spec should illustrate every JSON answer", checked)
	}
}

// routeKey names a route by method and path, with every parameter (chi's
// {name} and *, the spec's {name}) written {} and no trailing slash.
var paramRE = regexp.MustCompile(`\{[^}]*\}|\*`)

func routeKey(method, path string) string {
	path = paramRE.ReplaceAllString(path, "{}")
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	return strings.ToUpper(method) + " " + path
}

// routerRoutes lists the routes of the real router, configured as the binary
// configures it (with the browser page).
func routerRoutes(t *testing.T, h http.Handler) []string {
	t.Helper()
	routes, ok := h.(chi.Routes)
	if !ok {
		t.Fatalf("handlers.New returned %T, not a chi router", h)
	}
	var out []string
	err := chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		out = append(out, routeKey(method, route))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// specRoutes lists the operations of the spec.
func specRoutes(m *v3.Document) []string {
	var out []string
	for path, item := range m.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().FromOldest() {
			out = append(out, routeKey(method, path))
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// fullRouter is handlers.New configured with every optional part the binary
// wires in, over a real store.
func fullRouter(t *testing.T) http.Handler {
	st := storetest.Open(t, "sqlite")
	ts := newTestServer(t, st, serverOptions{})
	return handlers.New(handlers.Config{Store: st, Rooms: ts.Rooms, Snapshots: ts.Snapshots, App: web.App(http.HandlerFunc(handlers.NotFound))})
}

// checkRoutes reports the routes served but not described and the routes
// described but not served.
func checkRoutes(served, described []string) (undocumented, unrouted []string) {
	for _, r := range served {
		if !slices.Contains(described, r) {
			undocumented = append(undocumented, r)
		}
	}
	for _, r := range described {
		if !slices.Contains(served, r) {
			unrouted = append(unrouted, r)
		}
	}
	return undocumented, unrouted
}

func TestContractEveryRouteIsInTheSpecAndBack(t *testing.T) {
	s := loadSpec(t)
	served := routerRoutes(t, fullRouter(t))
	described := specRoutes(s.model)
	undocumented, unrouted := checkRoutes(served, described)
	for _, r := range undocumented {
		t.Errorf("the router serves %s, which openapi.yaml does not describe", r)
	}
	for _, r := range unrouted {
		t.Errorf("openapi.yaml describes %s, which the router does not serve", r)
	}
	if len(served) < 20 {
		t.Errorf("only %d routes walked: %v", len(served), served)
	}
}

// TestContractRouteCheckCatchesDrift shows the check above is not vacuous:
// a router with one more route, or a spec with one fewer, is caught.
func TestContractRouteCheckCatchesDrift(t *testing.T) {
	s := loadSpec(t)
	served := routerRoutes(t, fullRouter(t))
	described := specRoutes(s.model)
	if u, _ := checkRoutes(append(slices.Clone(served), "GET /rooms/{}/secret"), described); len(u) != 1 {
		t.Errorf("an extra route was not reported: %v", u)
	}
	if _, u := checkRoutes(served[1:], described); len(u) != 1 {
		t.Errorf("a missing route was not reported: %v", u)
	}
}
