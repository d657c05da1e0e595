package apierr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
)

// DefaultBodyLimit is the JSON request body limit of docs/api.md.
const DefaultBodyLimit int64 = 1 << 20

// MessageInvalidJSON is the message of docs/api.md for a body that is not valid JSON.
const MessageInvalidJSON = "invalid JSON body"

// DecodeJSON reads r's body (at most limit bytes; limit <= 0 means DefaultBodyLimit) and unmarshals it
// into dst, a pointer. Unknown fields are ignored. It returns an *Error:
//   - 413 too_large when the body (or its declared Content-Length) exceeds the limit;
//   - 400 invalid_request "invalid JSON body" when the body is empty or not valid JSON;
//   - 400 invalid_request naming the field when a value has the wrong type;
//   - 500 internal_error when dst is not a non-nil pointer (a programming error).
//
// An *Error returned by an UnmarshalJSON method of dst passes through unchanged.
// Request bodies naming a capsule embed CapsuleRef to accept the sandbox_id alias of docs/api.md.
func DecodeJSON(r *http.Request, limit int64, dst any) error {
	body, err := readBody(r, limit)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return InvalidRequest(MessageInvalidJSON)
	}
	return unmarshal(body, dst)
}

// DecodeOptionalJSON is DecodeJSON for routes whose body fields are all optional (`{name?}`): an empty
// body leaves dst unchanged instead of failing.
func DecodeOptionalJSON(r *http.Request, limit int64, dst any) error {
	body, err := readBody(r, limit)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	return unmarshal(body, dst)
}

func readBody(r *http.Request, limit int64) ([]byte, error) {
	if limit <= 0 {
		limit = DefaultBodyLimit
	}
	tooLarge := TooLarge(fmt.Sprintf("request body exceeds %s limit", FormatBytes(limit)))
	if r.ContentLength > limit {
		return nil, tooLarge
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, tooLarge
		}
		return nil, InvalidRequest("could not read request body").WithCause(err)
	}
	if int64(len(body)) > limit {
		return nil, tooLarge
	}
	return body, nil
}

func unmarshal(body []byte, dst any) error {
	err := json.Unmarshal(body, dst)
	if err == nil {
		return nil
	}
	var (
		apiErr    *Error
		typeErr   *json.UnmarshalTypeError
		syntaxErr *json.SyntaxError
		targetErr *json.InvalidUnmarshalError
	)
	switch {
	case errors.As(err, &apiErr):
		return apiErr
	case errors.As(err, &targetErr):
		return Internal(fmt.Errorf("decode JSON body: %w", err))
	case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF):
		return InvalidRequest(MessageInvalidJSON).WithCause(err)
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return InvalidRequestf("%s: expected %s, got %s", MessageInvalidJSON, jsonKind(typeErr.Type), typeErr.Value).WithCause(err)
		}
		// The path names embedded structs by their Go type; CapsuleRef's fields are top-level keys.
		field := strings.ReplaceAll(typeErr.Field, "CapsuleRef.", "")
		return InvalidRequestf("invalid value for %q: expected %s, got %s", field, jsonKind(typeErr.Type), typeErr.Value).WithCause(err)
	default:
		// An UnmarshalJSON method of a field rejected its value.
		return InvalidRequestf("%s: %v", MessageInvalidJSON, err).WithCause(err)
	}
}

// jsonKind names a Go type the way a JSON client thinks of it.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "a different type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Bool:
		return "boolean"
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	default:
		return t.String()
	}
}

// CapsuleRef is embedded in request bodies that name a capsule: it accepts "capsule_id" and its alias
// "sandbox_id" (docs/api.md). capsule_id wins when both are set; an empty value counts as not set.
type CapsuleRef struct {
	RawCapsuleID string `json:"capsule_id,omitempty"`
	RawSandboxID string `json:"sandbox_id,omitempty"`
}

// CapsuleID is the capsule named by the request, "" when neither field was set.
func (c CapsuleRef) CapsuleID() string {
	if c.RawCapsuleID != "" {
		return c.RawCapsuleID
	}
	return c.RawSandboxID
}
