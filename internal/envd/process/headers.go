package process

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/internal/envd/osuser"
)

// ReplayFromHeader opts a Connect call into Wrenn's output replay: its
// decimal value is the output offset to replay from; data events then carry
// end_offset, and the selector may match a retained exited process.
const ReplayFromHeader = "X-Wrenn-Replay-From"

const (
	keepaliveHeader  = "Keepalive-Ping-Interval" // seconds
	timeoutHeader    = "Connect-Timeout-Ms"
	defaultKeepalive = 90 * time.Second
)

// keepaliveInterval reads Keepalive-Ping-Interval; missing or unusable → 90 s.
func keepaliveInterval(h http.Header) time.Duration {
	n, err := strconv.ParseUint(strings.TrimSpace(h.Get(keepaliveHeader)), 10, 32)
	if err != nil || n == 0 {
		return defaultKeepalive
	}
	return time.Duration(n) * time.Second
}

// lifetimeFrom reads Connect-Timeout-Ms as a process lifetime; 0 or absent
// means none.
func lifetimeFrom(h http.Header) (time.Duration, error) {
	v := h.Get(timeoutHeader)
	if v == "" {
		return 0, nil
	}
	ms, err := strconv.ParseUint(v, 10, 63)
	if err != nil || len(v) > 10 {
		return 0, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("invalid %s %q", timeoutHeader, v))
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// replayFrom reads ReplayFromHeader; ok is false when replay was not asked for.
func replayFrom(h http.Header) (offset uint64, ok bool, err error) {
	v := h.Get(ReplayFromHeader)
	if v == "" {
		return 0, false, nil
	}
	offset, err = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, false, connect.NewError(connect.CodeInvalidArgument,
			fmt.Errorf("invalid %s %q: want a non-negative decimal offset", ReplayFromHeader, v))
	}
	return offset, true, nil
}

var errInvalidUser = errors.New("invalid username")

// resolveUser returns the user of a request: the Basic-auth username, else
// the default user (docs/envd.md). Other Authorization schemes are ignored.
func (s *Service) resolveUser(h http.Header) (*osuser.User, error) {
	name := s.defaults.DefaultUser()
	if v := h.Get("Authorization"); v != "" {
		scheme, cred, _ := strings.Cut(v, " ")
		if strings.EqualFold(scheme, "Basic") {
			raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
			if err != nil {
				return nil, connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("%w: malformed basic credentials", errInvalidUser))
			}
			name, _, _ = strings.Cut(string(raw), ":")
		}
	}
	u, err := osuser.Lookup(name)
	if errors.Is(err, osuser.ErrUnknownUser) {
		return nil, connect.NewError(connect.CodeUnauthenticated, errInvalidUser)
	}
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("look up user %q: %w", name, err))
	}
	return u, nil
}
