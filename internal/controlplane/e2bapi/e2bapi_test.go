package e2bapi

import (
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// The SDK encodes {"a b":"c&d=e"} as metadata=a%252520b%3Dc%252526d%25253De (docs/e2b.md).
func TestParseMetadataQuery(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want map[string]string
	}{
		{"metadata=a%252520b%3Dc%252526d%25253De", map[string]string{"a b": "c&d=e"}},
		{"metadata=a%3Db", map[string]string{"a": "b"}},
		{"metadata=a%3Db%26k%3Dv", map[string]string{"a": "b", "k": "v"}},
		{"", nil},
	} {
		q, err := url.ParseQuery(tc.raw)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseMetadataQuery(q.Get("metadata"))
		if err != nil || !maps.Equal(got, tc.want) {
			t.Errorf("%s: got %v, %v; want %v", tc.raw, got, err, tc.want)
		}
	}
	if _, err := ParseMetadataQuery("a=%zz"); err == nil {
		t.Error("a bad escape was accepted")
	}
}

func TestSandboxIDRoundTrip(t *testing.T) {
	u := uuid.New()
	sid := SandboxID(u)
	if strings.ContainsAny(sid, "-ABCDEFGHIJKLMNOPQRSTUVWXYZ") || sid == "" {
		t.Fatalf("sandbox id %q is not [a-z0-9]+", sid)
	}
	for _, raw := range []string{sid, ids.Capsule.Format(u)} {
		got, err := ids.Capsule.Parse(capsuleID(raw))
		if err != nil || got != u {
			t.Errorf("capsuleID(%q) → %v, %v; want %v", raw, got, err, u)
		}
	}
}

func capsule(at time.Time, status string, meta map[string]string) db.Capsule {
	return db.Capsule{ID: uuid.New(), Status: status, StartedAt: &at, CreatedAt: at, UserMetadata: meta, TemplateName: "base"}
}

// Paging walks every match exactly once, in order, and nothing else.
func TestListPaging(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var cs []db.Capsule
	want := map[uuid.UUID]bool{}
	for i := range 25 {
		meta := map[string]string{"k": "v"}
		status := store.CapsuleRunning
		switch {
		case i%5 == 0:
			meta = map[string]string{"k": "other"}
		case i%7 == 0:
			status = store.CapsulePaused
		case i%11 == 0:
			status = store.CapsuleStopped
		}
		// Some share a start time: the id breaks the tie.
		c := capsule(base.Add(time.Duration(i/2)*time.Second), status, meta)
		cs = append(cs, c)
		if meta["k"] == "v" && status == store.CapsuleRunning {
			want[c.ID] = true
		}
	}
	for _, asc := range []bool{false, true} {
		lq := listQuery{metadata: map[string]string{"k": "v"}, states: map[string]bool{"running": true}, limit: 3, asc: asc}
		seen := map[uuid.UUID]bool{}
		var last *time.Time
		for pages := 0; ; pages++ {
			if pages > 20 {
				t.Fatal("paging does not end")
			}
			pg, next := lq.page(cs)
			for _, c := range pg {
				if !want[c.ID] || seen[c.ID] {
					t.Fatalf("asc=%v: unexpected or repeated %v", asc, c.ID)
				}
				seen[c.ID] = true
				if last != nil && ((asc && c.StartedAt.Before(*last)) || (!asc && c.StartedAt.After(*last))) {
					t.Fatalf("asc=%v: out of order", asc)
				}
				last = c.StartedAt
			}
			if next == nil {
				break
			}
			tok, err := parseCursor(next.String())
			if err != nil {
				t.Fatal(err)
			}
			lq.after = tok
		}
		if len(seen) != len(want) {
			t.Errorf("asc=%v: saw %d of %d", asc, len(seen), len(want))
		}
	}
}

func TestParseListQuery(t *testing.T) {
	for _, bad := range []string{"state=stopped", "limit=0", "limit=101", "limit=x", "order=up", "nextToken=zz", "startedAfter=yesterday"} {
		q, _ := url.ParseQuery(bad)
		if _, err := parseListQuery(q); apierr.From(err).Status != http.StatusBadRequest {
			t.Errorf("%s: %v, want 400", bad, err)
		}
	}
	q, _ := url.ParseQuery("state=running,paused&limit=5&order=asc")
	lq, err := parseListQuery(q)
	if err != nil || !lq.states["running"] || !lq.states["paused"] || lq.limit != 5 || !lq.asc {
		t.Errorf("got %+v, %v", lq, err)
	}
}

func TestNewSandboxCheck(t *testing.T) {
	f := false
	tr := true
	for name, b := range map[string]newSandbox{
		"network":      {Network: json.RawMessage(`{"denyOut":["0.0.0.0/0"]}`)},
		"mcp":          {MCP: json.RawMessage(`{"x":{}}`)},
		"volumeMounts": {VolumeMounts: json.RawMessage(`[{"name":"v","path":"/v"}]`)},
		"autoResume": {AutoResume: &struct {
			Enabled bool `json:"enabled"`
		}{true}},
		"keepMemory": {AutoPause: &tr, AutoPauseMemory: &f},
		"empty key":  {Metadata: map[string]string{"": "x"}},
	} {
		if err := b.check(); apierr.From(err).Status != http.StatusBadRequest {
			t.Errorf("%s: %v, want 400", name, err)
		}
	}
	ok := newSandbox{Network: json.RawMessage(`null`), MCP: json.RawMessage(`{}`), AutoPause: &tr, Metadata: map[string]string{"a": "b"}}
	if err := ok.check(); err != nil {
		t.Errorf("plain create rejected: %v", err)
	}
}

func TestDomainAndErrors(t *testing.T) {
	s := &Service{domain: "localhost"}
	r := httptest.NewRequest(http.MethodGet, "http://localhost:8080/sandboxes", nil)
	if d := s.domainFor(r); d == nil || *d != "localhost:8080" {
		t.Errorf("domain %v, want localhost:8080", d)
	}
	s.domain = "sbx.example.com"
	r.Host = "api.example.com"
	if d := s.domainFor(r); d == nil || *d != "sbx.example.com" {
		t.Errorf("domain %v, want sbx.example.com", d)
	}
	s.domain = ""
	if d := s.domainFor(r); d != nil {
		t.Errorf("domain %v, want null", *d)
	}

	s.log = slogDiscard()
	w := httptest.NewRecorder()
	s.writeError(w, r, apierr.RateLimited("slow down", 1500*time.Millisecond))
	var body errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Code != 429 || body.Message != "slow down" ||
		w.Code != 429 || w.Header().Get("Retry-After") != "2" {
		t.Errorf("error answer %d %q %v, Retry-After %q", w.Code, w.Body.String(), err, w.Header().Get("Retry-After"))
	}
}

func TestEnvdVersion(t *testing.T) {
	for meta, want := range map[string]string{"0.6.4": "0.6.4", "": minEnvdVersion, "0.0.0-fake": minEnvdVersion} {
		if got := envdVersion(db.Capsule{Metadata: map[string]string{"envd_version": meta}}); got != want {
			t.Errorf("envd_version %q → %q, want %q", meta, got, want)
		}
	}
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
