package rpc

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// FuzzSplitProxyPath feeds arbitrary escaped paths to the agent proxy's
// parser: it must not panic, rest always starts with "/", parsePort accepts
// only 1-65535, and a path built from an id, an accepted port and a rest
// splits back into them.
func FuzzSplitProxyPath(f *testing.F) {
	for _, p := range []string{
		"/proxy/cl-0k4xq2m9d8e7r6t5y4u3i2o1p/8080/",
		"/proxy/cl-0k4xq2m9d8e7r6t5y4u3i2o1p/49983/files?x",
		"/proxy/cl-0k4xq2m9d8e7r6t5y4u3i2o1p/0",
		"/proxy/cl-0k4xq2m9d8e7r6t5y4u3i2o1p/65536/a/../b",
		"/proxy/cl-%2e%2e/80/%2e%2e/%2f",
		"/proxy/%zz/+80/", "/proxy//", "/proxy/", "", "/",
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		id, portStr, rest := splitProxyPath(p)
		if !strings.HasPrefix(rest, "/") {
			t.Fatalf("splitProxyPath(%q): rest %q does not start with /", p, rest)
		}
		port, ok := parsePort(portStr)
		if !ok {
			return
		}
		if port < 1 || port > 65535 || strconv.Itoa(port) != strings.TrimLeft(portStr, "0") {
			t.Fatalf("parsePort(%q) = %d", portStr, port)
		}
		// Round trip: the same id (escaped), port and rest split back.
		if strings.Contains(id, "/") {
			return // an escaped "/" in the id: not what clients send
		}
		built := ProxyPrefix + url.PathEscape(id) + "/" + portStr + rest
		gid, gport, grest := splitProxyPath(built)
		if gid != id || gport != portStr || grest != rest {
			t.Fatalf("splitProxyPath(%q) = %q %q %q; want %q %q %q", built, gid, gport, grest, id, portStr, rest)
		}
	})
}

// FuzzParsePort checks parsePort against the number itself.
func FuzzParsePort(f *testing.F) {
	for _, n := range []int{-1, 0, 1, 80, 49983, 65535, 65536, 1 << 40} {
		f.Add(strconv.Itoa(n))
	}
	f.Add("080")
	f.Add("+80")
	f.Add("8 0")
	f.Fuzz(func(t *testing.T, s string) {
		port, ok := parsePort(s)
		n, err := strconv.Atoi(s)
		want := err == nil && n >= 1 && n <= 65535 && len(s) <= 5 && !strings.ContainsAny(s, "+-")
		if ok != want || (ok && port != n) {
			t.Fatalf("parsePort(%q) = %d, %v; want %v", s, port, ok, want)
		}
	})
}
