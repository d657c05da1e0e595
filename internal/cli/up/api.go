package up

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// api is the little of the control plane's REST API `wrenn up` needs.
type api struct {
	url  string
	http *http.Client
}

func newAPI(url string) *api {
	return &api{url: url, http: &http.Client{Timeout: 30 * time.Second}}
}

// apiError is a non-2xx answer.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
	}
	return fmt.Sprintf("status %d", e.Status)
}

// credential is an authentication header: bearer(jwt) or apiKey(key); the zero value sends none.
type credential struct{ header, value string }

func bearer(jwt string) credential { return credential{"Authorization", "Bearer " + jwt} }
func apiKey(key string) credential { return credential{"X-API-Key", key} }

// call sends a JSON request with the credential and decodes the answer into out.
func (a *api) call(ctx context.Context, method, path string, cred credential, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.url+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cred.header != "" {
		req.Header.Set(cred.header, cred.value)
	}
	res, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return err
	}
	if res.StatusCode/100 != 2 {
		e := &apiError{Status: res.StatusCode}
		var env struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(b, &env) == nil {
			e.Code, e.Message = env.Error.Code, env.Error.Message
		}
		return fmt.Errorf("%s %s: %w", method, path, e)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}

// healthy reports whether GET /health answers 200.
func (a *api) healthy(ctx context.Context) bool {
	return a.call(ctx, http.MethodGet, "/health", credential{}, nil, nil) == nil
}

// login returns a fresh user JWT.
func (a *api) login(ctx context.Context, email, password string) (string, error) {
	var res struct {
		Token string `json:"token"`
	}
	err := a.call(ctx, http.MethodPost, "/v1/auth/login", credential{}, map[string]string{"email": email, "password": password}, &res)
	return res.Token, err
}

// keyWorks reports whether the API key is accepted (false when it was deleted).
func (a *api) keyWorks(ctx context.Context, key string) (bool, error) {
	err := a.call(ctx, http.MethodGet, "/v1/capsules", apiKey(key), nil, nil)
	var e *apiError
	if errors.As(err, &e) && e.Status == http.StatusUnauthorized {
		return false, nil
	}
	return err == nil, err
}

// createAPIKey creates an API key of the JWT's team and returns its secret.
func (a *api) createAPIKey(ctx context.Context, jwt, name string) (string, error) {
	var res struct {
		Key string `json:"key"`
	}
	err := a.call(ctx, http.MethodPost, "/v1/api-keys", bearer(jwt), map[string]string{"name": name}, &res)
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
	err = a.call(ctx, http.MethodPost, "/v1/hosts", bearer(jwt), map[string]string{"type": "regular"}, &res)
	return res.Host.ID, res.RegistrationToken, err
}

// hostStatus is what `wrenn up` waits on.
type hostStatus struct {
	Status          string    `json:"status"`
	LastHeartbeatAt time.Time `json:"last_heartbeat_at"`
}

func (a *api) host(ctx context.Context, jwt, id string) (hostStatus, error) {
	var h hostStatus
	err := a.call(ctx, http.MethodGet, "/v1/hosts/"+id, bearer(jwt), nil, &h)
	return h, err
}
