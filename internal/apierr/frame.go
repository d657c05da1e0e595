package apierr

// WebSocket close codes of docs/api.md.
const (
	CloseNormal             = 1000 // normal end
	CloseInternalError      = 1011 // unexpected server failure
	CloseInactivityTimeout  = 4000 // PTY inactivity timeout (docs/api.md)
	CloseRevoked            = 4001 // the socket's credential was revoked (docs/security.md)
	MessageInactivityClosed = "inactivity timeout"
)

// Frame is a WebSocket error frame (docs/api.md): {"type":"error","data":…,"code"?,"fatal"?}. With Fatal the
// server closes the socket right after sending it.
type Frame struct {
	Type  string `json:"type"`
	Data  string `json:"data"`
	Code  string `json:"code,omitempty"`
	Fatal bool   `json:"fatal,omitempty"`
}

// ErrorFrame renders err as an error frame with its code and message (see From for errors that are
// not *Error: they become internal_error with the generic message).
func ErrorFrame(err error, fatal bool) Frame {
	e := From(err)
	return Frame{Type: "error", Data: e.Message, Code: e.Code, Fatal: fatal}
}
