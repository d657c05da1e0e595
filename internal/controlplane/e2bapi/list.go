package e2bapi

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Paging of GET /v2/sandboxes and GET /snapshots.
const (
	defaultLimit = 100
	maxLimit     = 100
	// NextTokenHeader carries the cursor of the next page; absent on the last one.
	NextTokenHeader = "X-Next-Token"
)

// listQuery is the query of GET /v2/sandboxes.
type listQuery struct {
	metadata     map[string]string
	states       map[string]bool // empty: running and paused
	startedAfter time.Time
	template     string
	asc          bool
	limit        int
	after        *cursor
}

// cursor is the position after the last sandbox of a page: its start time and id, in listing order.
type cursor struct {
	at time.Time
	id string
}

func (c cursor) String() string { return strconv.FormatInt(c.at.UnixNano(), 36) + "." + c.id }

func parseCursor(s string) (*cursor, error) {
	ns, id, ok := strings.Cut(s, ".")
	n, err := strconv.ParseInt(ns, 36, 64)
	if !ok || err != nil || id == "" {
		return nil, apierr.InvalidRequest("invalid nextToken")
	}
	return &cursor{at: time.Unix(0, n), id: id}, nil
}

// ParseMetadataQuery decodes E2B's metadata filter: the query value (already query-decoded once) is a
// form-encoded k=v&k2=v2 string whose keys and values are percent-encoded once more (docs/e2b.md).
func ParseMetadataQuery(v string) (map[string]string, error) {
	if v == "" {
		return nil, nil
	}
	form, err := url.ParseQuery(v)
	if err != nil {
		return nil, apierr.InvalidRequest("invalid metadata filter: " + err.Error())
	}
	out := make(map[string]string, len(form))
	for k, vs := range form {
		key, err := url.QueryUnescape(k)
		if err != nil {
			return nil, apierr.InvalidRequest("invalid metadata filter key")
		}
		val, err := url.QueryUnescape(vs[0])
		if err != nil {
			return nil, apierr.InvalidRequest("invalid metadata filter value")
		}
		out[key] = val
	}
	return out, nil
}

func parseListQuery(q url.Values) (listQuery, error) {
	var (
		lq  = listQuery{limit: defaultLimit, states: map[string]bool{}}
		err error
	)
	if lq.metadata, err = ParseMetadataQuery(q.Get("metadata")); err != nil {
		return lq, err
	}
	for _, v := range q["state"] {
		for st := range strings.SplitSeq(v, ",") {
			switch st = strings.TrimSpace(st); st {
			case "running", "paused":
				lq.states[st] = true
			case "":
			default:
				return lq, apierr.InvalidRequestf("invalid state %q: use running or paused", st)
			}
		}
	}
	if v := q.Get("startedAfter"); v != "" {
		if lq.startedAfter, err = time.Parse(time.RFC3339, v); err != nil {
			return lq, apierr.InvalidRequest("startedAfter must be an RFC 3339 time")
		}
	}
	lq.template = q.Get("template")
	switch q.Get("order") {
	case "", "desc":
	case "asc":
		lq.asc = true
	default:
		return lq, apierr.InvalidRequest("order must be asc or desc")
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			return lq, apierr.InvalidRequestf("limit must be between 1 and %d", maxLimit)
		}
		lq.limit = n
	}
	if v := q.Get("nextToken"); v != "" {
		if lq.after, err = parseCursor(v); err != nil {
			return lq, err
		}
	}
	return lq, nil
}

// matches reports whether c passes lq's filters (not the cursor).
func (lq listQuery) matches(c db.Capsule) bool {
	if !visible(c) {
		return false
	}
	if len(lq.states) > 0 && !lq.states[state(c)] {
		return false
	}
	if !lq.startedAfter.IsZero() && !startedAt(c).After(lq.startedAfter) {
		return false
	}
	if lq.template != "" && c.TemplateName != lq.template {
		return false
	}
	for k, v := range lq.metadata {
		if got, ok := c.UserMetadata[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// page orders cs by start time (newest first, or oldest with asc; then by id), keeps the matches after
// the cursor and returns at most limit of them with the cursor of the next page (nil on the last).
func (lq listQuery) page(cs []db.Capsule) ([]db.Capsule, *cursor) {
	keyed := make([]db.Capsule, 0, len(cs))
	for _, c := range cs {
		if lq.matches(c) {
			keyed = append(keyed, c)
		}
	}
	less := func(a, b cursor) int {
		if n := a.at.Compare(b.at); n != 0 {
			if lq.asc {
				return n
			}
			return -n
		}
		return cmp.Compare(a.id, b.id)
	}
	key := func(c db.Capsule) cursor { return cursor{at: startedAt(c), id: SandboxID(c.ID)} }
	slices.SortFunc(keyed, func(a, b db.Capsule) int { return less(key(a), key(b)) })
	if lq.after != nil {
		i := 0
		for i < len(keyed) && less(key(keyed[i]), *lq.after) <= 0 {
			i++
		}
		keyed = keyed[i:]
	}
	if len(keyed) <= lq.limit {
		return keyed, nil
	}
	keyed = keyed[:lq.limit]
	next := key(keyed[len(keyed)-1])
	return keyed, &next
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request, c caller) error {
	lq, err := parseListQuery(r.URL.Query())
	if err != nil {
		return err
	}
	cs, err := s.caps.List(r.Context(), c.team)
	if err != nil {
		return err
	}
	pg, next := lq.page(cs)
	out := make([]listedSandbox, 0, len(pg))
	for _, capsule := range pg {
		out = append(out, listed(capsule))
	}
	if next != nil {
		w.Header().Set(NextTokenHeader, next.String())
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// handleListV1 is the deprecated GET /sandboxes: every running sandbox matching ?metadata, unpaged.
func (s *Service) handleListV1(w http.ResponseWriter, r *http.Request, c caller) error {
	meta, err := ParseMetadataQuery(r.URL.Query().Get("metadata"))
	if err != nil {
		return err
	}
	cs, err := s.caps.List(r.Context(), c.team)
	if err != nil {
		return err
	}
	lq := listQuery{metadata: meta, states: map[string]bool{"running": true}, limit: len(cs)}
	pg, _ := lq.page(cs)
	out := make([]listedSandbox, 0, len(pg))
	for _, capsule := range pg {
		out = append(out, listed(capsule))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
