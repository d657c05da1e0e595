package apierr

import "context"

type requestIDKey struct{}

// WithRequestID returns ctx carrying the id of the API request it serves (the X-Request-Id the
// router answers with); errors logged for the request name it, and agent errors quote it.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the id WithRequestID put in ctx, or "" (background work).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}
