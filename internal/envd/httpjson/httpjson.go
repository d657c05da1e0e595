// Package httpjson writes envd's plain-HTTP JSON responses and error bodies
// ({"code":<status>,"message":"…"}, docs/envd.md).
package httpjson

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Write sends v as JSON with the given status.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Error sends {"code":status,"message":…}.
func Error(w http.ResponseWriter, status int, format string, args ...any) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	Write(w, status, struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{status, fmt.Sprintf(format, args...)})
}
