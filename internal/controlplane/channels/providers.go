package channels

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/audit"
)

// Providers (docs/api.md).
const (
	ProviderDiscord    = "discord"
	ProviderSlack      = "slack"
	ProviderTeams      = "teams"
	ProviderGoogleChat = "googlechat"
	ProviderTelegram   = "telegram"
	ProviderMatrix     = "matrix"
	ProviderWebhook    = "webhook"
)

// Providers lists every provider, in the contract's order.
var Providers = []string{
	ProviderDiscord, ProviderSlack, ProviderTeams, ProviderGoogleChat, ProviderTelegram, ProviderMatrix, ProviderWebhook,
}

// Webhook delivery headers (docs/api.md).
const (
	HeaderSignature = "X-Wrenn-Signature"
	HeaderDelivery  = "X-Wrenn-Delivery"
	HeaderTimestamp = "X-Wrenn-Timestamp"
)

// DeliveryTimeout bounds one delivery attempt (docs/api.md).
const DeliveryTimeout = 10 * time.Second

// TestEvent is the event name of the message POST /v1/channels/test sends.
const TestEvent = "channel.test"

// providerSpec says which config keys a provider takes. Keys outside required and optional are
// dropped.
type providerSpec struct {
	required []string
	optional []string
	urls     []string // keys holding http(s) URLs
}

var specs = map[string]providerSpec{
	ProviderDiscord:    {required: []string{"webhook_url"}, urls: []string{"webhook_url"}},
	ProviderSlack:      {required: []string{"webhook_url"}, urls: []string{"webhook_url"}},
	ProviderTeams:      {required: []string{"webhook_url"}, urls: []string{"webhook_url"}},
	ProviderGoogleChat: {required: []string{"webhook_url"}, urls: []string{"webhook_url"}},
	ProviderTelegram:   {required: []string{"bot_token", "chat_id"}},
	ProviderMatrix:     {required: []string{"homeserver_url", "access_token", "room_id"}, urls: []string{"homeserver_url"}},
	ProviderWebhook:    {required: []string{"url"}, optional: []string{"secret"}, urls: []string{"url"}},
}

// parseProvider checks p is a known provider.
func parseProvider(p string) (providerSpec, error) {
	spec, ok := specs[p]
	if !ok {
		if p == "" {
			return spec, apierr.InvalidRequestf("provider is required: one of %s", strings.Join(Providers, ", "))
		}
		return spec, apierr.InvalidRequestf("invalid provider %q: must be one of %s", p, strings.Join(Providers, ", "))
	}
	return spec, nil
}

// parseConfig validates the config object of provider: every required key present and non-empty,
// URLs absolute http(s). Values may be JSON strings or numbers (telegram chat ids); unknown keys are
// dropped.
func parseConfig(provider string, raw json.RawMessage) (map[string]string, error) {
	spec, err := parseProvider(provider)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, apierr.InvalidRequestf("config is required: provider %s needs %s", provider, keyList(spec.required))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var in map[string]any
	if err := dec.Decode(&in); err != nil {
		return nil, apierr.InvalidRequest("config must be a JSON object")
	}
	out := make(map[string]string, len(spec.required)+len(spec.optional))
	for _, k := range append(append([]string(nil), spec.required...), spec.optional...) {
		v, ok := in[k]
		if !ok || v == nil {
			continue
		}
		switch v := v.(type) {
		case string:
			if v = strings.TrimSpace(v); v != "" {
				out[k] = v
			}
		case json.Number:
			out[k] = v.String()
		default:
			return nil, apierr.InvalidRequestf("config.%s must be a string", k)
		}
	}
	for _, k := range spec.required {
		if out[k] == "" {
			return nil, apierr.InvalidRequestf("config.%s is required for provider %s", k, provider)
		}
	}
	for _, k := range spec.urls {
		u, err := url.Parse(out[k])
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, apierr.InvalidRequestf("config.%s must be an absolute http or https URL", k)
		}
	}
	return out, nil
}

func keyList(keys []string) string {
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = "config." + k
	}
	return strings.Join(q, ", ")
}

// newWebhookSecret returns a random signing secret: 64 lower-case hex characters.
func newWebhookSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("webhook secret: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Sign returns the X-Wrenn-Signature value of a webhook delivery: "sha256=" + hex
// HMAC-SHA256(secret, timestamp + "." + body).
func Sign(secret, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// message is the text chat providers receive for ev.
func message(ev audit.Event) string {
	if ev.Event == TestEvent {
		return "Wrenn: test message — this channel receives Wrenn notifications."
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Wrenn: %s", ev.Event)
	if ev.Resource.ID != "" {
		fmt.Fprintf(&b, " — %s %s", ev.Resource.Type, ev.Resource.ID)
	}
	switch {
	case ev.Actor.Name != "":
		fmt.Fprintf(&b, " by %s", ev.Actor.Name)
	case ev.Actor.ID != "":
		fmt.Fprintf(&b, " by %s", ev.Actor.ID)
	case ev.Actor.Type == "system":
		b.WriteString(" by the system")
	}
	fmt.Fprintf(&b, " (team %s, %s)", ev.TeamID, ev.Timestamp)
	return b.String()
}

// send delivers ev to a channel of provider with configuration cfg. deliveryID identifies the
// delivery across retries (webhook header, Matrix transaction id). Errors never contain the target
// URL, which often embeds a credential.
func (s *Service) send(ctx context.Context, provider string, cfg map[string]string, ev audit.Event, deliveryID uuid.UUID) error {
	ctx, cancel := context.WithTimeout(ctx, DeliveryTimeout)
	defer cancel()
	text := message(ev)
	switch provider {
	case ProviderWebhook:
		return s.sendWebhook(ctx, cfg, ev, deliveryID)
	case ProviderDiscord:
		return s.post(ctx, provider, http.MethodPost, cfg["webhook_url"], nil, map[string]string{"content": text})
	case ProviderSlack, ProviderTeams, ProviderGoogleChat:
		return s.post(ctx, provider, http.MethodPost, cfg["webhook_url"], nil, map[string]string{"text": text})
	case ProviderTelegram:
		target := s.telegramURL + "/bot" + url.PathEscape(cfg["bot_token"]) + "/sendMessage"
		return s.post(ctx, provider, http.MethodPost, target, nil, map[string]string{"chat_id": cfg["chat_id"], "text": text})
	case ProviderMatrix:
		target := strings.TrimRight(cfg["homeserver_url"], "/") + "/_matrix/client/v3/rooms/" +
			url.PathEscape(cfg["room_id"]) + "/send/m.room.message/" + deliveryID.String()
		h := http.Header{"Authorization": {"Bearer " + cfg["access_token"]}}
		return s.post(ctx, provider, http.MethodPut, target, h, map[string]string{"msgtype": "m.text", "body": text})
	default:
		return fmt.Errorf("unknown provider %q", provider)
	}
}

func (s *Service) sendWebhook(ctx context.Context, cfg map[string]string, ev audit.Event, deliveryID uuid.UUID) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	ts := time.Now().UTC().Format(time.RFC3339)
	h := http.Header{HeaderDelivery: {deliveryID.String()}, HeaderTimestamp: {ts}}
	if secret := cfg["secret"]; secret != "" {
		h.Set(HeaderSignature, Sign(secret, ts, body))
	}
	return s.do(ctx, ProviderWebhook, http.MethodPost, cfg["url"], h, body)
}

func (s *Service) post(ctx context.Context, provider, method, target string, h http.Header, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s message: %w", provider, err)
	}
	return s.do(ctx, provider, method, target, h, body)
}

// do sends one request; any answer but 2xx (redirects included: they are not followed) is an error.
// Errors name the status code only, never the answer's body or reason phrase: they are shown to users
// and kept with failed deliveries, and the endpoint's answer is not theirs to read.
func (s *Service) do(ctx context.Context, provider, method, target string, h http.Header, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: invalid endpoint URL", provider)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Wrenn-Notifications/1")
	res, err := s.client.Do(req)
	if err != nil {
		if errors.Is(err, errDestination) {
			return fmt.Errorf("%s: endpoint refused: it resolves to a loopback, private, link-local or reserved address (docs/security.md)", provider)
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // without the URL
		}
		return fmt.Errorf("%s: %w", provider, err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%s: endpoint answered HTTP %d", provider, res.StatusCode)
	}
	return nil
}
