package e2bapi

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// E2BUser is the default user of sandboxes made through the facade when their template's build chose
// none (docs/e2b.md): programs written for E2B expect /home/user.
const E2BUser = "user"

// Values of capsules.on_timeout.
const (
	onTimeoutKill  = "kill"
	onTimeoutPause = "pause"
)

// newSandbox is E2B's NewSandbox / NewSandboxV2 body.
type newSandbox struct {
	TemplateID          string            `json:"templateID"`
	Timeout             *int64            `json:"timeout"`
	Metadata            map[string]string `json:"metadata"`
	EnvVars             map[string]string `json:"envVars"`
	Secure              *bool             `json:"secure"`
	AllowInternetAccess *bool             `json:"allow_internet_access"`
	AutoPause           *bool             `json:"autoPause"`
	AutoPauseMemory     *bool             `json:"autoPauseMemory"`
	AutoResume          *struct {
		Enabled bool `json:"enabled"`
	} `json:"autoResume"`
	Network      json.RawMessage `json:"network"`
	IAM          json.RawMessage `json:"iam"`
	MCP          json.RawMessage `json:"mcp"`
	VolumeMounts json.RawMessage `json:"volumeMounts"`
}

// given reports whether an optional JSON value was sent with content (not absent, null, {} or []).
func given(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	return len(v) > 0 && !bytes.Equal(v, []byte("null")) && !bytes.Equal(v, []byte("{}")) && !bytes.Equal(v, []byte("[]"))
}

// check rejects the settings Wrenn does not implement (docs/e2b.md): a security-relevant setting is
// never ignored silently.
func (b newSandbox) check() error {
	switch {
	case given(b.Network):
		return apierr.InvalidRequest("network settings (allowOut, denyOut, allowPublicTraffic, …) are not supported by Wrenn; use allowInternetAccess")
	case given(b.IAM):
		return apierr.InvalidRequest("iam is not supported by Wrenn")
	case given(b.MCP):
		return apierr.InvalidRequest("mcp is not supported by Wrenn")
	case given(b.VolumeMounts):
		return apierr.InvalidRequest("volumeMounts are not supported by Wrenn")
	case b.AutoResume != nil && b.AutoResume.Enabled:
		return apierr.InvalidRequest("autoResume is not supported by Wrenn: resume a paused sandbox with Sandbox.connect()")
	case b.AutoPauseMemory != nil && !*b.AutoPauseMemory:
		return apierr.InvalidRequest("filesystem-only pauses (keepMemory: false) are not supported by Wrenn")
	}
	for k := range b.Metadata {
		if k == "" {
			return apierr.InvalidRequest("metadata keys must not be empty")
		}
	}
	return nil
}

// timeoutOf returns the lifetime a request asks for: def when absent, 400 outside 0…MaxTimeout.
func timeoutOf(sec *int64, def time.Duration) (time.Duration, error) {
	if sec == nil {
		return def, nil
	}
	if *sec < 0 || *sec > int64(MaxTimeout/time.Second) {
		return 0, apierr.InvalidRequestf("timeout must be between 0 and %d seconds", int64(MaxTimeout/time.Second))
	}
	return time.Duration(*sec) * time.Second, nil
}

func (s *Service) handleCreate(w http.ResponseWriter, r *http.Request, c caller) error {
	var b newSandbox
	if err := decodeBody(r, &b); err != nil {
		return err
	}
	if err := b.check(); err != nil {
		return err
	}
	timeout, err := timeoutOf(b.Timeout, DefaultTimeout)
	if err != nil {
		return err
	}
	p := capsules.CreateParams{Template: b.TemplateID, VCPUs: capsules.DefaultVCPUs, MemoryMB: capsules.DefaultMemoryMB,
		AllowInternet: true, Env: b.EnvVars, FallbackUser: E2BUser}
	if p.Template == "" {
		p.Template = capsules.DefaultTemplate
	}
	if b.AllowInternetAccess != nil {
		p.AllowInternet = *b.AllowInternetAccess
	}
	onTimeout := onTimeoutKill
	if b.AutoPause != nil && *b.AutoPause {
		onTimeout = onTimeoutPause
	}
	ctx := r.Context()
	capsule, err := s.caps.Create(ctx, c.id, c.team, p)
	if err != nil {
		return err
	}
	// The capsule exists: its lifetime is recorded even if the caller went away meanwhile.
	ctx = context.WithoutCancel(ctx)
	end := time.Now().Add(timeout)
	capsule, err = s.caps.Store.SetCapsuleLifetime(ctx, db.SetCapsuleLifetimeParams{
		UserMetadata: b.Metadata, EndAt: &end, OnTimeout: onTimeout, TeamID: c.team, ID: capsule.ID,
	})
	if err != nil {
		// Without its lifetime the sandbox would live forever: it goes.
		if derr := s.caps.Destroy(ctx, c.id, c.team, capsuleID(SandboxID(capsule.ID))); derr != nil {
			s.log.Error("destroy sandbox whose lifetime was not recorded", "sandbox_id", SandboxID(capsule.ID), "err", derr)
		}
		return apierr.Internal(err)
	}
	out, err := s.sandbox(r, capsule)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// connectBody is the body of connect and of the older resume.
type connectBody struct {
	Timeout   *int64 `json:"timeout"`
	Memory    *bool  `json:"memory"`
	AutoPause *bool  `json:"autoPause"`
}

// handleConnect resumes a paused sandbox (201) or extends a running one's lifetime (200).
func (s *Service) handleConnect(w http.ResponseWriter, r *http.Request, c caller) error {
	return s.connect(w, r, c, false)
}

// handleResume is the older SDKs' resume: like connect, but 409 for a running sandbox.
func (s *Service) handleResume(w http.ResponseWriter, r *http.Request, c caller) error {
	return s.connect(w, r, c, true)
}

func (s *Service) connect(w http.ResponseWriter, r *http.Request, c caller, pausedOnly bool) error {
	var b connectBody
	if err := decodeBody(r, &b); err != nil {
		return err
	}
	if b.Memory != nil && !*b.Memory {
		return apierr.InvalidRequest("rebooting from a filesystem-only snapshot (onResume: reboot) is not supported by Wrenn")
	}
	timeout, err := timeoutOf(b.Timeout, DefaultTimeout)
	if err != nil {
		return err
	}
	ctx := r.Context()
	raw := r.PathValue("id")
	capsule, err := s.get(r, c, raw)
	if err != nil {
		return err
	}
	status := http.StatusOK
	switch capsule.Status {
	case store.CapsulePaused:
		// The end is set before the resume too, so that no earlier end makes it expire at once.
		if _, err := s.caps.Store.SetCapsuleEndAt(ctx, db.SetCapsuleEndAtParams{
			EndAt: time.Now().Add(timeout), TeamID: c.team, ID: capsule.ID,
		}); err != nil {
			return apierr.Internal(err)
		}
		if capsule, err = s.caps.Resume(ctx, c.id, c.team, capsuleID(raw)); err != nil {
			return err
		}
		status = http.StatusCreated
	case store.CapsuleRunning:
		if pausedOnly {
			return apierr.Conflict("sandbox " + raw + " is already running")
		}
	default:
		return apierr.Conflict("sandbox " + raw + " is changing state (" + capsule.Status + "); try again")
	}
	capsule, err = s.caps.Store.SetCapsuleEndAt(ctx, db.SetCapsuleEndAtParams{
		EndAt: time.Now().Add(timeout), ExtendOnly: status == http.StatusOK, TeamID: c.team, ID: capsule.ID,
	})
	if err != nil {
		return apierr.Internal(err)
	}
	if b.AutoPause != nil && *b.AutoPause && capsule.OnTimeout != onTimeoutPause {
		end := capsule.EndAt
		if capsule, err = s.caps.Store.SetCapsuleLifetime(ctx, db.SetCapsuleLifetimeParams{
			UserMetadata: capsule.UserMetadata, EndAt: end, OnTimeout: onTimeoutPause, TeamID: c.team, ID: capsule.ID,
		}); err != nil {
			return apierr.Internal(err)
		}
	}
	out, err := s.sandbox(r, capsule)
	if err != nil {
		return err
	}
	writeJSON(w, status, out)
	return nil
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request, c caller) error {
	capsule, err := s.get(r, c, r.PathValue("id"))
	if err != nil {
		return err
	}
	out, err := s.detail(r, capsule)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Service) handleKill(w http.ResponseWriter, r *http.Request, c caller) error {
	raw := r.PathValue("id")
	if _, err := s.get(r, c, raw); err != nil {
		return err
	}
	if err := s.caps.Destroy(r.Context(), c.id, c.team, capsuleID(raw)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleTimeout sets the end of the sandbox's lifetime to now + timeout (it may shorten it).
func (s *Service) handleTimeout(w http.ResponseWriter, r *http.Request, c caller) error {
	var b struct {
		Timeout *int64 `json:"timeout"`
	}
	if err := decodeBody(r, &b); err != nil {
		return err
	}
	if b.Timeout == nil {
		return apierr.InvalidRequest("timeout is required")
	}
	timeout, err := timeoutOf(b.Timeout, 0)
	if err != nil {
		return err
	}
	capsule, err := s.get(r, c, r.PathValue("id"))
	if err != nil {
		return err
	}
	if _, err := s.caps.Store.SetCapsuleEndAt(r.Context(), db.SetCapsuleEndAtParams{
		EndAt: time.Now().Add(timeout), TeamID: c.team, ID: capsule.ID,
	}); err != nil {
		return apierr.Internal(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handlePause pauses a running sandbox (memory and disk); 409 when it is not running (already paused).
func (s *Service) handlePause(w http.ResponseWriter, r *http.Request, c caller) error {
	var b struct {
		Memory *bool `json:"memory"`
	}
	if err := decodeBody(r, &b); err != nil {
		return err
	}
	if b.Memory != nil && !*b.Memory {
		return apierr.InvalidRequest("filesystem-only pauses (keepMemory: false) are not supported by Wrenn")
	}
	raw := r.PathValue("id")
	if _, err := s.get(r, c, raw); err != nil {
		return err
	}
	capsule, err := s.caps.Pause(r.Context(), c.id, c.team, capsuleID(raw))
	if err != nil {
		return err
	}
	if err := s.endLifetime(r.Context(), capsule); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// sandboxMetric is E2B's SandboxMetric.
type sandboxMetric struct {
	Timestamp     time.Time `json:"timestamp"`
	TimestampUnix int64     `json:"timestampUnix"`
	CPUCount      int32     `json:"cpuCount"`
	CPUUsedPct    float64   `json:"cpuUsedPct"`
	MemUsed       int64     `json:"memUsed"`
	MemTotal      int64     `json:"memTotal"`
	MemCache      int64     `json:"memCache"`
	DiskUsed      int64     `json:"diskUsed"`
	DiskTotal     int64     `json:"diskTotal"`
}

// handleMetrics answers the samples of the last 24 h between ?start and ?end (Unix seconds).
func (s *Service) handleMetrics(w http.ResponseWriter, r *http.Request, c caller) error {
	q := r.URL.Query()
	bound := func(name string) (int64, error) {
		v := q.Get(name)
		if v == "" {
			return 0, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, apierr.InvalidRequestf("%s must be Unix seconds", name)
		}
		return n, nil
	}
	start, err := bound("start")
	if err != nil {
		return err
	}
	end, err := bound("end")
	if err != nil {
		return err
	}
	raw := r.PathValue("id")
	capsule, err := s.get(r, c, raw)
	if err != nil {
		return err
	}
	rng := "10m"
	if start > 0 && time.Since(time.Unix(start, 0)) > 10*time.Minute {
		rng = "24h"
	}
	m, err := s.caps.Metrics(r.Context(), c.team, capsuleID(raw), rng)
	if err != nil {
		return err
	}
	out := make([]sandboxMetric, 0, len(m.Points))
	for _, p := range m.Points {
		if (start > 0 && p.TimestampUnix < start) || (end > 0 && p.TimestampUnix > end) {
			continue
		}
		out = append(out, sandboxMetric{
			Timestamp: time.Unix(p.TimestampUnix, 0).UTC(), TimestampUnix: p.TimestampUnix, CPUCount: capsule.VCPUs,
			CPUUsedPct: p.CPUPct, MemUsed: p.MemBytes, MemTotal: int64(capsule.MemoryMB) << 20,
			DiskUsed: p.DiskBytes, DiskTotal: int64(capsule.DiskMB) << 20,
		})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// endLifetime clears the end of a paused sandbox's lifetime: paused sandboxes do not expire, and
// connect gives a resumed one a new end (a resume through /v1 leaves it without one, as /v1 capsules).
func (s *Service) endLifetime(ctx context.Context, c db.Capsule) error {
	_, err := s.caps.Store.SetCapsuleLifetime(ctx, db.SetCapsuleLifetimeParams{
		UserMetadata: c.UserMetadata, EndAt: nil, OnTimeout: c.OnTimeout, TeamID: c.TeamID, ID: c.ID,
	})
	if err != nil {
		return apierr.Internal(err)
	}
	return nil
}
