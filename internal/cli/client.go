package cli

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/coder/websocket"
)

// decodeAnswer decodes a JSON answer of the API.
func decodeAnswer(raw []byte, out any) error {
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("unexpected answer of the API: %w", err)
	}
	return nil
}

// frame is any server frame of the API's WebSockets (docs/api.md).
type frame struct {
	Type        string `json:"type"`
	Data        string `json:"data"`
	Code        string `json:"code"`
	Fatal       bool   `json:"fatal"`
	ExitCode    *int   `json:"exit_code"`
	PID         int    `json:"pid"`
	Tag         string `json:"tag"`
	Offset      int64  `json:"offset"`
	Reconnected bool   `json:"reconnected"`
}

// frameError is a fatal error frame (or a non-fatal one the command cannot continue after).
type frameError struct {
	Code, Message string
}

func (e *frameError) Error() string { return e.Message }

// closedError describes a socket that ended without the frame the command waited for.
func closedError(err error) error {
	switch websocket.CloseStatus(err) {
	case websocket.StatusNormalClosure:
		return errors.New("the server closed the connection")
	case -1:
		return fmt.Errorf("connection lost: %w", err)
	default:
		var ce websocket.CloseError
		if errors.As(err, &ce) && ce.Reason != "" {
			return fmt.Errorf("the server closed the connection: %s", ce.Reason)
		}
		return fmt.Errorf("the server closed the connection (%d)", websocket.CloseStatus(err))
	}
}
