// Package auth enforces envd's access token (docs/envd.md): the
// X-Access-Token header on every route but the exempt ones, and header or
// URL signature on /files.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/internal/envd/httpjson"
)

// Header carries the access token.
const Header = "X-Access-Token"

// ErrUnauthorized is returned when a request does not prove the token.
var ErrUnauthorized = errors.New("unauthorized")

// TokenSource returns the current token; "" means envd is open.
type TokenSource func() string

// Equal compares two tokens in constant time.
func Equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// exempt lists the routes that check access themselves or need none.
func exempt(r *http.Request) bool {
	switch {
	case r.Method == http.MethodOptions:
		return true // CORS preflight
	case r.URL.Path == "/health":
		return true
	case r.URL.Path == "/files" && (r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodPost):
		return true // header or signature, checked by the files handler
	case r.URL.Path == "/init" || r.URL.Path == "/snapshot/prepare":
		return true
	}
	return false
}

// Middleware requires the token on every non-exempt route once one is set.
func Middleware(token TokenSource, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want := token()
		if want == "" || exempt(r) || Equal(r.Header.Get(Header), want) {
			next.ServeHTTP(w, r)
			return
		}
		if isConnect(r) {
			writeConnectUnauthenticated(w, r)
			return
		}
		httpjson.Error(w, http.StatusUnauthorized, "missing or invalid access token")
	})
}

func isConnect(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/process.Process/") || strings.HasPrefix(r.URL.Path, "/filesystem.Filesystem/")
}

func writeConnectUnauthenticated(w http.ResponseWriter, r *http.Request) {
	cerr := connect.NewError(connect.CodeUnauthenticated, errors.New("missing or invalid access token"))
	ct := r.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "application/connect+") {
		// Streams report errors in the end-of-stream envelope with HTTP 200.
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(http.StatusOK)
		body := []byte(`{"error":{"code":"unauthenticated","message":"missing or invalid access token"}}`)
		head := []byte{0x02, 0, 0, 0, 0}
		n := len(body)
		head[1], head[2], head[3], head[4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
		_, _ = w.Write(append(head, body...))
		return
	}
	_ = connect.NewErrorWriter().Write(w, r, cerr)
}

// Signature returns the /files URL signature for the given values; an
// expiration of 0 means none.
func Signature(path, operation, username, token string, expiration int64) string {
	s := path + ":" + operation + ":" + username + ":" + token
	if expiration != 0 {
		s += ":" + strconv.FormatInt(expiration, 10)
	}
	sum := sha256.Sum256([]byte(s))
	return "v1_" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// CheckFiles authorizes a /files request for operation "read" or "write":
// with no token everything passes; a present header must match; otherwise a
// valid, unexpired signature over the raw query values is required.
func CheckFiles(r *http.Request, token, operation string, now time.Time) error {
	if token == "" {
		return nil
	}
	if h, ok := r.Header[http.CanonicalHeaderKey(Header)]; ok && len(h) > 0 {
		if Equal(h[0], token) {
			return nil
		}
		return ErrUnauthorized
	}
	q := r.URL.Query()
	sig := q.Get("signature")
	if sig == "" {
		return ErrUnauthorized
	}
	var exp int64
	if raw := q.Get("signature_expiration"); raw != "" {
		v, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || now.Unix() > v {
			return ErrUnauthorized
		}
		exp = v
	}
	if !Equal(sig, Signature(q.Get("path"), operation, q.Get("username"), token, exp)) {
		return ErrUnauthorized
	}
	return nil
}
