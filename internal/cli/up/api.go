package up

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/wrenn/wrenn/internal/cli/apiclient"
)

// callTimeout bounds one call of `wrenn up` to the control plane.
const callTimeout = 30 * time.Second

// api is the little of the control plane's REST API `wrenn up` needs.
type api struct {
	anon *apiclient.Client // no credentials; WithCredentials adds them per call
}

func newAPI(url string) *api { return &api{anon: apiclient.New(url, "", "")} }

// call sends a JSON request with the user JWT (none when empty) and decodes the answer into out.
func (a *api) call(ctx context.Context, method, path, jwt string, auth apiclient.Auth, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if _, err := a.anon.WithCredentials("", jwt).CallInto(ctx, method, path, auth, body, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// healthy reports whether GET /health answers 200.
func (a *api) healthy(ctx context.Context) bool {
	return a.call(ctx, http.MethodGet, "/health", "", apiclient.AuthNone, nil, nil) == nil
}

// login returns a fresh user JWT.
func (a *api) login(ctx context.Context, email, password string) (string, error) {
	var res struct {
		Token string `json:"token"`
	}
	err := a.call(ctx, http.MethodPost, "/v1/auth/login", "", apiclient.AuthNone, map[string]string{"email": email, "password": password}, &res)
	return res.Token, err
}

// keyWorks reports whether the API key is accepted (false when it was deleted).
func (a *api) keyWorks(ctx context.Context, key string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	_, err := a.anon.WithCredentials(key, "").Call(ctx, http.MethodGet, "/v1/capsules", apiclient.AuthKey, nil)
	var e *apiclient.APIError
	if errors.As(err, &e) && e.Status == http.StatusUnauthorized {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("GET /v1/capsules: %w", err)
	}
	return true, nil
}

// createAPIKey creates an API key of the JWT's team and returns its secret.
func (a *api) createAPIKey(ctx context.Context, jwt, name string) (string, error) {
	var res struct {
		Key string `json:"key"`
	}
	err := a.call(ctx, http.MethodPost, "/v1/api-keys", jwt, apiclient.AuthUser, map[string]string{"name": name}, &res)
	return res.Key, err
}

// createHost creates a regular (platform) host and returns its id and one-time registration token.
func (a *api) createHost(ctx context.Context, jwt string) (id, token string, err error) {
	var res struct {
		Host struct {
			ID string `json:"id"`
		} `json:"host"`
		RegistrationToken string `json:"registration_token"`
	}
	err = a.call(ctx, http.MethodPost, "/v1/hosts", jwt, apiclient.AuthUser, map[string]string{"type": "regular"}, &res)
	return res.Host.ID, res.RegistrationToken, err
}

// hostStatus is what `wrenn up` waits on.
type hostStatus struct {
	Status          string    `json:"status"`
	LastHeartbeatAt time.Time `json:"last_heartbeat_at"`
}

func (a *api) host(ctx context.Context, jwt, id string) (hostStatus, error) {
	var h hostStatus
	err := a.call(ctx, http.MethodGet, "/v1/hosts/"+id, jwt, apiclient.AuthUser, nil, &h)
	return h, err
}

// setPool sets a platform template's warm pool size (PUT /v1/admin/templates/{name}/pool).
func (a *api) setPool(ctx context.Context, jwt, template string, size int) error {
	return a.call(ctx, http.MethodPut, "/v1/admin/templates/"+url.PathEscape(template)+"/pool", jwt, apiclient.AuthUser, map[string]int{"size": size}, nil)
}
