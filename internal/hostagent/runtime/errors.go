package runtime

import "errors"

// The kinds of error of the host agent: the runtime, the agent core
// (internal/hostagent/capsules) and the packages below it return these,
// wrapped, or errors made with NewError that are of one of them. The
// Connect API maps each kind to its code in one place
// (internal/hostagent/rpc/errors.go); everything else is an internal error.
// The messages reach API users, so they speak of sandboxes.
var (
	ErrNotFound = errors.New("sandbox not found")
	ErrExists   = errors.New("sandbox already exists")
	ErrInvalid  = errors.New("invalid argument")
	ErrState    = errors.New("sandbox is not in a state that allows this")
)

// NewError returns an error with its own message that is of kind (one of
// the Err values above): errors.Is(err, kind) holds for it and for every
// error wrapping it. Packages use it for sentinels more specific than a
// kind, e.g. a network that already exists.
func NewError(kind error, msg string) error {
	return &kindError{msg: msg, kind: kind}
}

type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }
