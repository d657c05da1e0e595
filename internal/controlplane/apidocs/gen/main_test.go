package main

import (
	"bytes"
	"os"
	"testing"
)

// TestGeneratedIsUpToDate fails when openapi.yaml was edited by hand or openapi.src.yaml changed
// without `go generate ./internal/controlplane/apidocs`.
func TestGeneratedIsUpToDate(t *testing.T) {
	src, err := os.ReadFile("../openapi.src.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want, err := Generate(src)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("internal/controlplane/apidocs/openapi.yaml is stale: run go generate ./internal/controlplane/apidocs")
	}
}

func TestGenerateRejectsAliasInSource(t *testing.T) {
	src := []byte(`openapi: 3.0.3
paths:
  /v1/capsules:
    get: {operationId: list, summary: x, responses: {"200": {description: ok}}}
  /v1/sandboxes:
    get: {operationId: list2, summary: x, responses: {"200": {description: ok}}}
`)
	if _, err := Generate(src); err == nil {
		t.Fatal("Generate accepted a source that already has alias paths")
	}
}
