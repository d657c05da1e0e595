package portproxy

import (
	"encoding/binary"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/ids"
)

const fuzzDomain = "wrenn.example"

func fuzzProxy() *Proxy { return &Proxy{suffix: "." + fuzzDomain} }

// FuzzCapsuleHost feeds arbitrary Host headers to the proxy's parser: it
// must not panic, must accept only ports 1-65535, and what it accepts is
// the canonical <port>-<capsule_id> label of what it returns.
func FuzzCapsuleHost(f *testing.F) {
	for _, h := range []string{
		"8080-cl-0k4xq2m9d8e7r6t5y4u3i2o1p." + fuzzDomain,
		"49983-cl-0k4xq2m9d8e7r6t5y4u3i2o1p." + fuzzDomain + ":443",
		"0-cl-0k4xq2m9d8e7r6t5y4u3i2o1p." + fuzzDomain,
		"65536-cl-0k4xq2m9d8e7r6t5y4u3i2o1p." + fuzzDomain,
		"080-cl-0k4xq2m9d8e7r6t5y4u3i2o1p." + fuzzDomain,
		"+80-cl-0k4xq2m9d8e7r6t5y4u3i2o1p." + fuzzDomain,
		"-1-cl-0k4xq2m9d8e7r6t5y4u3i2o1p." + fuzzDomain,
		"99999999999999999999-cl-0k4xq2m9d8e7r6t5y4u3i2o1p." + fuzzDomain,
		"80-CL-0K4XQ2M9D8E7R6T5Y4U3I2O1P." + strings.ToUpper(fuzzDomain) + ".",
		"80-cl-zzzzzzzzzzzzzzzzzzzzzzzzz." + fuzzDomain,
		"80-cl0k4xq2m9d8e7r6t5y4u3i2o1p." + fuzzDomain,
		"80-cl--0k4xq2m9d8e7r6t5y4u3i2o1p." + fuzzDomain,
		"80-clown." + fuzzDomain,
		"a.80-cl-0k4xq2m9d8e7r6t5y4u3i2o1p." + fuzzDomain,
		"[::1]:80", fuzzDomain, "." + fuzzDomain, "",
	} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, host string) {
		label, ok := fuzzProxy().capsuleLabel(host)
		if !ok {
			return
		}
		if label == "" || strings.Contains(label, ".") {
			t.Fatalf("capsuleLabel(%q) = %q", host, label)
		}
		port, id, ae := parseLabel(label)
		if ae != nil {
			if ae.Status < 400 || ae.Status >= 500 {
				t.Fatalf("parseLabel(%q): status %d, want 4xx", label, ae.Status)
			}
			return
		}
		if port < 1 || port > 65535 {
			t.Fatalf("parseLabel(%q) accepted port %d", label, port)
		}
		want := strconv.Itoa(port) + "-" + ids.Capsule.Format(id)
		if label != want && label != strings.Replace(want, "-cl-", "-cl", 1) {
			t.Fatalf("parseLabel(%q) = %d, %s: not the canonical %q or its dash-free form", label, port, id, want)
		}
	})
}

// FuzzCapsuleHostRoundTrip builds {port}-{capsule_id}.{domain} hosts: every
// port in 1-65535 and every id come back as they went in; any other port is
// refused.
func FuzzCapsuleHostRoundTrip(f *testing.F) {
	f.Add(8080, uint64(1), uint64(2), false, "")
	f.Add(49983, uint64(0), uint64(0), true, ":8443")
	f.Add(65535, ^uint64(0), ^uint64(0), false, "")
	f.Add(0, uint64(5), uint64(6), false, "")
	f.Add(65536, uint64(5), uint64(6), false, "")
	f.Add(-80, uint64(5), uint64(6), true, ":80")
	f.Fuzz(func(t *testing.T, port int, hi, lo uint64, upper bool, suffix string) {
		var id uuid.UUID
		binary.BigEndian.PutUint64(id[:8], hi)
		binary.BigEndian.PutUint64(id[8:], lo)
		host := strconv.Itoa(port) + "-" + ids.Capsule.Format(id) + "." + fuzzDomain
		if upper {
			host = strings.ToUpper(host) + "."
		}
		if suffix != "" {
			if _, err := strconv.ParseUint(suffix[1:], 10, 16); suffix[0] != ':' || err != nil {
				return
			}
			host += suffix
		}
		label, ok := fuzzProxy().capsuleLabel(host)
		if !ok {
			if port >= 0 { // a negative port has a second "-" before "cl-"
				t.Fatalf("capsuleLabel(%q) refused", host)
			}
			return
		}
		gotPort, gotID, ae := parseLabel(label)
		valid := port >= 1 && port <= 65535
		switch {
		case valid && ae != nil:
			t.Fatalf("parseLabel(%q): %v", label, ae)
		case !valid && ae == nil:
			t.Fatalf("parseLabel(%q) accepted port %d", label, gotPort)
		case valid && (gotPort != port || gotID != id):
			t.Fatalf("parseLabel(%q) = %d, %s; want %d, %s", label, gotPort, gotID, port, id)
		}
	})
}

// FuzzE2BHeaders feeds arbitrary E2b-Sandbox-Id / E2b-Sandbox-Port values
// (and an arbitrary Host) to the proxy's router: it must not panic, must
// answer 4xx for what it refuses, and what it accepts is a port in 1-65535
// (49983 without a port header) of an id written in the API form or the
// dash-free form.
func FuzzE2BHeaders(f *testing.F) {
	f.Add("cl-0k4xq2m9d8e7r6t5y4u3i2o1p", "8080", true, "localhost:8080")
	f.Add("cl0k4xq2m9d8e7r6t5y4u3i2o1p", "49983", true, "127.0.0.1")
	f.Add("cl0k4xq2m9d8e7r6t5y4u3i2o1p", "", false, "")
	f.Add("cl--0k4xq2m9d8e7r6t5y4u3i2o1p", "08080", true, "x")
	f.Add(" cl-0k4xq2m9d8e7r6t5y4u3i2o1p ", " 80 ", true, "sandbox.example")
	f.Add("debug_sandbox_id", "-1", true, "localhost")
	f.Add("CL-0K4XQ2M9D8E7R6T5Y4U3I2O1P", "65536", true, "8080-cl-0k4xq2m9d8e7r6t5y4u3i2o1p."+fuzzDomain)
	f.Fuzz(func(t *testing.T, rawID, rawPort string, withPort bool, host string) {
		r, err := http.NewRequest("GET", "http://localhost/", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Host = host
		r.Header[sandboxIDHeader] = []string{rawID}
		if withPort {
			r.Header[sandboxPortHeader] = []string{rawPort}
		}
		tg, ok, ae := fuzzProxy().route(r)
		if _, byHost := fuzzProxy().capsuleLabel(host); byHost {
			return // FuzzCapsuleHost covers Host routing
		}
		if rawID == "" {
			if ok {
				t.Fatalf("no id header routed to %+v", tg)
			}
			return
		}
		if !ok {
			t.Fatalf("id header %q not routed", rawID)
		}
		if ae != nil {
			if ae.Status < 400 || ae.Status >= 500 {
				t.Fatalf("status %d, want 4xx", ae.Status)
			}
			return
		}
		if tg.port < 1 || tg.port > 65535 || (!withPort && tg.port != EnvdPort) {
			t.Fatalf("port %d from %q (header present: %v)", tg.port, rawPort, withPort)
		}
		if withPort && strconv.Itoa(tg.port) != strings.TrimSpace(rawPort) {
			t.Fatalf("port %d from %q", tg.port, rawPort)
		}
		id := strings.TrimSpace(rawID)
		if want := ids.Capsule.Format(tg.id); id != want && id != strings.Replace(want, "-", "", 1) {
			t.Fatalf("id %s from %q", want, rawID)
		}
	})
}
