package apierr

// WebSocket close codes of §1.5.
const (
	CloseNormal             = 1000 // normal end
	CloseInternalError      = 1011 // unexpected server failure
	CloseInactivityTimeout  = 4000 // PTY inactivity timeout (§6.12)
	MessageInactivityClosed = "inactivity timeout"
)

// Frame is a WebSocket error frame (§1.5): {"type":"error","data":…,"code"?,"fatal"?}. With Fatal the
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
