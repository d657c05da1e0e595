package recipe

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseHealthcheck(t *testing.T) {
	tests := []struct {
		in   string
		want Healthcheck
	}{
		{"curl -sf http://127.0.0.1:8888/", Healthcheck{Interval: 3 * time.Second, Timeout: 10 * time.Second, Command: "curl -sf http://127.0.0.1:8888/"}},
		{"--interval=5s --timeout=5s --start-period=60s --retries=5 curl -sf http://127.0.0.1:8888/api/status",
			Healthcheck{Interval: 5 * time.Second, Timeout: 5 * time.Second, StartPeriod: time.Minute, Retries: 5, Command: "curl -sf http://127.0.0.1:8888/api/status"}},
		{"  --retries=0   test -f /x  ", Healthcheck{Interval: 3 * time.Second, Timeout: 10 * time.Second, Command: "test -f /x"}},
		{"--start-period=0 true --interval=1s", Healthcheck{Interval: 3 * time.Second, Timeout: 10 * time.Second, Command: "true --interval=1s"}},
	}
	for _, tt := range tests {
		got, err := ParseHealthcheck(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseHealthcheck(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseHealthcheckErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "healthcheck: a command is required"},
		{"--interval=1s", "healthcheck: a command is required"},
		{"--interval 1s curl", `healthcheck: flag "--interval" must be written --interval=<value>`},
		{"--bogus=1 curl", "healthcheck: unknown flag --bogus"},
		{"--interval=x curl", `healthcheck: --interval "x" is not a positive duration`},
		{"--interval=0s curl", `healthcheck: --interval "0s" is not a positive duration`},
		{"--timeout=-1s curl", `healthcheck: --timeout "-1s" is not a positive duration`},
		{"--start-period=-1s curl", `healthcheck: --start-period "-1s" is not a duration ≥ 0`},
		{"--retries=-1 curl", `healthcheck: --retries "-1" is not a non-negative integer`},
		{"--retries=two curl", `healthcheck: --retries "two" is not a non-negative integer`},
		{"--retries=1 --retries=2 curl", "healthcheck: flag --retries given twice"},
		{"true \x00", "healthcheck: command contains a NUL byte"},
	}
	for _, tt := range tests {
		_, err := ParseHealthcheck(tt.in)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("ParseHealthcheck(%q) error = %v, want %q", tt.in, err, tt.want)
		}
	}
}

func TestHealthcheckDeadline(t *testing.T) {
	h := Healthcheck{Interval: 5 * time.Second, StartPeriod: time.Minute, Retries: 5}
	if got := h.Deadline(); got != 90*time.Second {
		t.Errorf("Deadline = %v, want 90s", got)
	}
	if got := (Healthcheck{Interval: time.Second}).Deadline(); got != MaxWait {
		t.Errorf("Deadline without retries = %v, want %v", got, MaxWait)
	}
	huge := Healthcheck{Interval: time.Hour, StartPeriod: time.Hour, Retries: math.MaxInt}
	if got := huge.Deadline(); got <= 0 {
		t.Errorf("Deadline overflowed: %v", got)
	}
}

func FuzzParseHealthcheck(f *testing.F) {
	for _, s := range []string{"curl x", "--interval=5s --timeout=5s --start-period=60s --retries=5 curl", "--retries=", "--", "--x=1 y", "  "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHealthcheck(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "healthcheck: ") {
				t.Fatalf("error %q lacks the prefix", err)
			}
			return
		}
		if h.Command == "" || h.Command != strings.TrimSpace(h.Command) || h.Interval <= 0 || h.Timeout <= 0 ||
			h.StartPeriod < 0 || h.Retries < 0 || h.Deadline() <= 0 {
			t.Fatalf("ParseHealthcheck(%q) = %+v", s, h)
		}
	})
}
