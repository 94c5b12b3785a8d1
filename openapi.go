// Package liveshare holds what must live at the repository root: the
// OpenAPI description of the API, embedded in the binary.
package liveshare

import _ "embed"

// OpenAPI is openapi.yaml, the OpenAPI 3.1 description of every endpoint,
// served at GET /openapi.yaml and rendered at GET /docs.
//
//go:embed openapi.yaml
var OpenAPI []byte
