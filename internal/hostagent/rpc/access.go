package rpc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/wrenn/wrenn/api/envd/process"
	"github.com/wrenn/wrenn/internal/hostagent/envdclient"
)

// access is what a file call needs of the default user.
type access int

const (
	accessRead   access = iota // read the path (if it exists)
	accessWrite                // write the path, or create it (and parents)
	accessRemove               // remove the path from its directory
)

// accessScript decides access as the user inside the capsule with test(1),
// so the capsule's own users, groups and modes decide. envd works as root
// (the reference protocol); file calls of the API run as the default user.
// $1 is the path, $2 the access kind. A path that really is missing passes
// read and remove checks (the call then answers NotFound); one the user
// cannot see because an ancestor is closed to it does not.
const accessScript = `p=$1
case "$p" in "~") p=$HOME ;; "~/"*) p=$HOME/${p#"~/"} ;; esac
# up prints the nearest ancestor of $1 the user sees.
up() { d=$(dirname "$1"); while [ ! -e "$d" ]; do d=$(dirname "$d"); done; echo "$d"; }
if [ -e "$p" ]; then
	case $2 in
	read) [ -r "$p" ] && { [ ! -d "$p" ] || [ -x "$p" ]; } ;;
	write) [ -w "$p" ] ;;
	remove) d=$(dirname "$p"); [ -w "$d" ] && [ -x "$d" ] ;;
	esac
else
	# Missing, or hidden from the user by an ancestor it may not search.
	d=$(up "$p")
	case $2 in
	write) [ -w "$d" ] && [ -x "$d" ] ;;
	*) [ -x "$d" ] && [ -r "$d" ] ;;
	esac
fi`

var errAccessCheck = errors.New("access check did not finish")

// checkAccess answers PermissionDenied when user may not do a with path.
// root (and an unset default user, which envd runs as root) may do all.
func checkAccess(ctx context.Context, c *envdclient.Client, user, path string, a access) error {
	if user == "" || user == "root" {
		return nil
	}
	kind := [...]string{"read", "write", "remove"}[a]
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	home := "~"
	st, _, err := startStream(ctx, c, &process.StartRequest{
		Process: &process.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", accessScript, "sh", path, kind}, Cwd: &home},
		Stdin:   proto.Bool(false),
	}, user)
	if err != nil {
		return err
	}
	code := -1
	ended, err := follow(st, events{end: func(e *process.ProcessEvent_EndEvent) error { code = int(e.GetExitCode()); return nil }})
	if err != nil {
		return err
	}
	if !ended {
		return errAccessCheck
	}
	if code != 0 {
		return connect.NewError(connect.CodePermissionDenied, fmt.Errorf("permission denied: user %s may not %s %s", user, kind, path))
	}
	return nil
}
