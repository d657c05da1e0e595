package files

import (
	"strconv"
	"strings"
)

// Content codings a download can be sent in.
const (
	codingIdentity = "identity"
	codingGzip     = "gzip"
)

// negotiate picks the response coding for the Accept-Encoding values:
// gzip whenever it is acceptable, else identity unless that is refused
// too (ok false: 406).
func negotiate(values []string) (coding string, ok bool) {
	gzipQ, identityQ, anyQ := -1.0, -1.0, -1.0
	for _, v := range values {
		for item := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(item, ";")
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" {
				continue
			}
			q := 1.0
			for p := range strings.SplitSeq(params, ";") {
				k, val, found := strings.Cut(strings.TrimSpace(p), "=")
				if found && strings.EqualFold(strings.TrimSpace(k), "q") {
					if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
						q = f
					}
				}
			}
			switch name {
			case codingGzip, "x-gzip":
				gzipQ = max(gzipQ, q)
			case codingIdentity:
				identityQ = max(identityQ, q)
			case "*":
				anyQ = max(anyQ, q)
			}
		}
	}
	if gzipQ < 0 {
		gzipQ = anyQ
	}
	if gzipQ > 0 {
		return codingGzip, true
	}
	// identity is acceptable unless refused by name, or by * without a name.
	if identityQ > 0 || (identityQ < 0 && anyQ != 0) {
		return codingIdentity, true
	}
	return "", false
}
