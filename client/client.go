// Package client is a Go client of the LiveShare API, generated from
// openapi.yaml by oapi-codegen (github.com/oapi-codegen/oapi-codegen/v2,
// pinned as a tool in go.mod). Do not edit client.gen.go: change
// openapi.yaml and run `go generate ./client`; a test fails when the
// committed code is not what the spec generates.
package client

//go:generate go tool oapi-codegen -config oapi-codegen.yaml ../openapi.yaml

import (
	"context"
	"net/http"
)

// JSONBodies says Content-Type: application/json on every POST, PUT and
// PATCH that has none: LiveShare refuses any other (415, so that no
// cross-site form can post), and the generated requests without a body
// (take a snapshot, restore one, sign in) set none. Use it with
// WithRequestEditorFn(JSONBodies).
func JSONBodies(_ context.Context, req *http.Request) error {
	switch req.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		if req.Header.Get("Content-Type") == "" {
			req.Header.Set("Content-Type", "application/json")
		}
	}
	return nil
}
