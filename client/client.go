// Package client is a Go client of the LiveShare API, generated from
// openapi.yaml by oapi-codegen (github.com/oapi-codegen/oapi-codegen/v2,
// pinned as a tool in go.mod). Do not edit client.gen.go: change
// openapi.yaml and run `go generate ./client`; a test fails when the
// committed code is not what the spec generates.
package client

//go:generate go tool oapi-codegen -config oapi-codegen.yaml ../openapi.yaml
