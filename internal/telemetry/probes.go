package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// ProbeTimeout bounds one readiness check.
const ProbeTimeout = 3 * time.Second

// Check is one readiness condition: Fn returns nil when the condition holds.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Health is the liveness answer: 200 {"status":"ok","version":…} as long as the process serves HTTP.
func Health(version string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": version})
	})
}

// ReadyAnswer is the body of /ready.
type ReadyAnswer struct {
	Status string            `json:"status"` // "ready" or "not ready"
	Checks map[string]string `json:"checks"` // check name → "ok" or what is wrong
}

// Ready runs every check (at once, each bounded by ProbeTimeout) and answers 200 {"status":"ready"}
// when all pass, else 503 {"status":"not ready"}; checks lists each result.
func Ready(checks ...Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ans := RunChecks(r.Context(), checks...)
		status := http.StatusOK
		if ans.Status != "ready" {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, ans)
	})
}

// RunChecks runs checks concurrently and collects their results.
func RunChecks(ctx context.Context, checks ...Check) ReadyAnswer {
	ans := ReadyAnswer{Status: "ready", Checks: make(map[string]string, len(checks))}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, c := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
			defer cancel()
			res := "ok"
			if err := c.Fn(cctx); err != nil {
				res = err.Error()
			}
			mu.Lock()
			ans.Checks[c.Name] = res
			if res != "ok" {
				ans.Status = "not ready"
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return ans
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Executable checks that path (or a bare name, looked up in PATH) is an executable file.
func Executable(path string) func(context.Context) error {
	return func(context.Context) error {
		_, err := exec.LookPath(path)
		return err
	}
}

// Dir checks that path is a directory.
func Dir(path string) func(context.Context) error {
	return func(context.Context) error {
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", path)
		}
		return nil
	}
}

// FileHolds checks that the file at path (a sysctl under /proc/sys, say) holds want, ignoring
// surrounding white space.
func FileHolds(path, want string) func(context.Context) error {
	return func(context.Context) error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if got := strings.TrimSpace(string(b)); got != want {
			return fmt.Errorf("%s is %q, want %q", path, got, want)
		}
		return nil
	}
}

// All combines checks into one that fails with the first failure.
func All(fns ...func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		var errs []error
		for _, fn := range fns {
			if err := fn(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
}

// Gate is a readiness condition that starts not ready with a reason and becomes ready once Open is
// called (e.g. "resuming capsules paused at shutdown").
type Gate struct {
	mu     sync.Mutex
	reason string
	open   bool
}

// NewGate returns a closed gate reporting reason.
func NewGate(reason string) *Gate { return &Gate{reason: reason} }

// Open makes the gate ready.
func (g *Gate) Open() {
	g.mu.Lock()
	g.open = true
	g.mu.Unlock()
}

// Check fails while the gate is closed.
func (g *Gate) Check(context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.open {
		return errors.New(g.reason)
	}
	return nil
}
