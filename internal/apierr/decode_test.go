package apierr

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

type createReq struct {
	Name  string            `json:"name"`
	Count int               `json:"count"`
	Tags  []string          `json:"tags"`
	Inner struct{ On bool } `json:"inner"`
	Check checked           `json:"check"`
}

// checked rejects "bad" (plain error) and "api" (*Error) to exercise UnmarshalJSON failures.
type checked string

func (c *checked) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case `"bad"`:
		return errors.New("check must not be bad")
	case `"api"`:
		return InvalidRequest("invalid sandbox ID")
	}
	*c = checked(strings.Trim(string(b), `"`))
	return nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func request(body string) *http.Request {
	return httptest.NewRequest(http.MethodPost, "/v1/x", strings.NewReader(body))
}

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		name    string
		req     func() *http.Request
		limit   int64
		status  int // 0 = success
		code    string
		message string
		check   func(t *testing.T, got createReq)
	}{
		{name: "valid", req: func() *http.Request { return request(`{"name":"a","count":2,"tags":["x"],"inner":{"On":true}}`) },
			check: func(t *testing.T, got createReq) {
				if got.Name != "a" || got.Count != 2 || len(got.Tags) != 1 || !got.Inner.On {
					t.Fatalf("decoded %+v", got)
				}
			}},
		{name: "unknown fields ignored", req: func() *http.Request { return request(`{"name":"a","surprise":{"deep":[1,2]}}`) },
			check: func(t *testing.T, got createReq) {
				if got.Name != "a" {
					t.Fatalf("decoded %+v", got)
				}
			}},
		{name: "null body is an empty object", req: func() *http.Request { return request(`null`) }},
		{name: "empty body", req: func() *http.Request { return request("") }, status: 400, code: "invalid_request", message: "invalid JSON body"},
		{name: "whitespace body", req: func() *http.Request { return request(" \n\t") }, status: 400, code: "invalid_request", message: "invalid JSON body"},
		{name: "no body", req: func() *http.Request { return httptest.NewRequest(http.MethodPost, "/", nil) }, status: 400, code: "invalid_request", message: "invalid JSON body"},
		{name: "syntax error", req: func() *http.Request { return request(`{"name":}`) }, status: 400, code: "invalid_request", message: "invalid JSON body"},
		{name: "truncated", req: func() *http.Request { return request(`{"name":"a"`) }, status: 400, code: "invalid_request", message: "invalid JSON body"},
		{name: "trailing garbage", req: func() *http.Request { return request(`{"name":"a"} x`) }, status: 400, code: "invalid_request", message: "invalid JSON body"},
		{name: "two values", req: func() *http.Request { return request(`{} {}`) }, status: 400, code: "invalid_request", message: "invalid JSON body"},
		{name: "wrong type", req: func() *http.Request { return request(`{"count":"two"}`) }, status: 400, code: "invalid_request",
			message: `invalid value for "count": expected integer, got string`},
		{name: "wrong nested type", req: func() *http.Request { return request(`{"inner":{"On":"yes"}}`) }, status: 400, code: "invalid_request",
			message: `invalid value for "inner.On": expected boolean, got string`},
		{name: "array where object expected", req: func() *http.Request { return request(`[1]`) }, status: 400, code: "invalid_request",
			message: `invalid JSON body: expected object, got array`},
		{name: "array field gets object", req: func() *http.Request { return request(`{"tags":{}}`) }, status: 400, code: "invalid_request",
			message: `invalid value for "tags": expected array, got object`},
		{name: "field unmarshaler plain error", req: func() *http.Request { return request(`{"check":"bad"}`) }, status: 400, code: "invalid_request",
			message: "invalid JSON body: check must not be bad"},
		{name: "field unmarshaler api error", req: func() *http.Request { return request(`{"check":"api"}`) }, status: 400, code: "invalid_request",
			message: "invalid sandbox ID"},
		{name: "default limit exceeded", req: func() *http.Request {
			return request(`{"name":"` + strings.Repeat("a", 1<<20) + `"}`)
		}, status: 413, code: "too_large", message: "request body exceeds 1 MiB limit"},
		{name: "declared length over limit", limit: 10, req: func() *http.Request {
			r := request(`{}`)
			r.ContentLength = 11
			return r
		}, status: 413, code: "too_large", message: "request body exceeds 10 bytes limit"},
		{name: "chunked body over limit", limit: 10, req: func() *http.Request {
			r := request(`{"name":"abcdefgh"}`)
			r.ContentLength = -1
			return r
		}, status: 413, code: "too_large", message: "request body exceeds 10 bytes limit"},
		{name: "exactly at limit", limit: 12, req: func() *http.Request { return request(`{"name":"a"}`) },
			check: func(t *testing.T, got createReq) {
				if got.Name != "a" {
					t.Fatalf("decoded %+v", got)
				}
			}},
		{name: "max bytes reader", req: func() *http.Request {
			r := request(`{"name":"abcdefgh"}`)
			r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 4)
			return r
		}, status: 413, code: "too_large", message: "request body exceeds 1 MiB limit"},
		{name: "read error", req: func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/", io.NopCloser(errReader{}))
			return r
		}, status: 400, code: "invalid_request", message: "could not read request body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got createReq
			err := DecodeJSON(tt.req(), tt.limit, &got)
			if tt.status == 0 {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if tt.check != nil {
					tt.check(t, got)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not *Error", err)
			}
			if e.Status != tt.status || e.Code != tt.code || e.Message != tt.message {
				t.Fatalf("got %d %s %q, want %d %s %q", e.Status, e.Code, e.Message, tt.status, tt.code, tt.message)
			}
		})
	}
}

func TestDecodeJSONBadTarget(t *testing.T) {
	tests := []struct {
		name string
		dst  any
	}{
		{"non-pointer", createReq{}},
		{"nil pointer", (*createReq)(nil)},
		{"nil", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := DecodeJSON(request(`{"name":"a"}`), 0, tt.dst)
			var e *Error
			if !errors.As(err, &e) || e.Status != 500 || e.Code != CodeInternalError {
				t.Fatalf("got %v, want 500 internal_error", err)
			}
		})
	}
}

func TestDecodeOptionalJSON(t *testing.T) {
	tests := []struct {
		name   string
		req    *http.Request
		want   string
		status int
	}{
		{"empty body keeps defaults", request(""), "Unnamed API Key", 0},
		{"no body keeps defaults", httptest.NewRequest(http.MethodPost, "/", nil), "Unnamed API Key", 0},
		{"value overrides", request(`{"name":"ci"}`), "ci", 0},
		{"invalid JSON still fails", request(`{`), "", 400},
		{"too large still fails", request(strings.Repeat(" ", 1<<20) + "{}"), "", 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := createReq{Name: "Unnamed API Key"}
			err := DecodeOptionalJSON(tt.req, 0, &got)
			if tt.status != 0 {
				var e *Error
				if !errors.As(err, &e) || e.Status != tt.status {
					t.Fatalf("got %v, want status %d", err, tt.status)
				}
				return
			}
			if err != nil || got.Name != tt.want {
				t.Fatalf("got %q, %v", got.Name, err)
			}
		})
	}
}

func TestCapsuleRef(t *testing.T) {
	type snapshotReq struct {
		CapsuleRef
		Name string `json:"name"`
	}
	tests := []struct {
		name string
		body string
		want string
	}{
		{"capsule_id", `{"capsule_id":"cl-a","name":"n"}`, "cl-a"},
		{"sandbox_id alias", `{"sandbox_id":"cl-b","name":"n"}`, "cl-b"},
		{"capsule_id wins", `{"sandbox_id":"cl-b","capsule_id":"cl-a","name":"n"}`, "cl-a"},
		{"empty capsule_id falls back", `{"capsule_id":"","sandbox_id":"cl-b","name":"n"}`, "cl-b"},
		{"null capsule_id falls back", `{"capsule_id":null,"sandbox_id":"cl-b","name":"n"}`, "cl-b"},
		{"neither", `{"name":"n"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got snapshotReq
			if err := DecodeJSON(request(tt.body), 0, &got); err != nil {
				t.Fatal(err)
			}
			if got.CapsuleID() != tt.want || got.Name != "n" {
				t.Fatalf("CapsuleID() = %q, Name = %q", got.CapsuleID(), got.Name)
			}
		})
	}
	var bad snapshotReq
	err := DecodeJSON(request(`{"sandbox_id":5}`), 0, &bad)
	var e *Error
	if !errors.As(err, &e) || e.Message != `invalid value for "sandbox_id": expected string, got number` {
		t.Fatalf("got %v", err)
	}
}

func TestJSONKind(t *testing.T) {
	tests := []struct {
		typ  reflect.Type
		want string
	}{
		{reflect.TypeFor[map[string]int](), "object"},
		{reflect.TypeFor[struct{}](), "object"},
		{reflect.TypeFor[[2]int](), "array"},
		{reflect.TypeFor[*bool](), "boolean"},
		{reflect.TypeFor[**string](), "string"},
		{reflect.TypeFor[uint16](), "integer"},
		{reflect.TypeFor[float64](), "number"},
		{reflect.TypeFor[complex64](), "complex64"},
		{nil, "a different type"},
	}
	for _, tt := range tests {
		if got := jsonKind(tt.typ); got != tt.want {
			t.Errorf("jsonKind(%v) = %q, want %q", tt.typ, got, tt.want)
		}
	}
}
