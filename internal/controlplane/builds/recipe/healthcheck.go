package recipe

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Healthcheck defaults and the bound on a check that retries forever.
const (
	DefaultInterval = 3 * time.Second
	DefaultTimeout  = 10 * time.Second
	MaxWait         = 10 * time.Minute
)

// Healthcheck is a parsed build healthcheck: the build waits until Command exits 0.
type Healthcheck struct {
	Interval    time.Duration // between attempts
	Timeout     time.Duration // per attempt
	StartPeriod time.Duration // failures in this initial window do not count
	Retries     int           // counted failures before giving up; 0 = keep trying up to MaxWait
	Command     string        // run with /bin/sh -c as the template's default user
}

// ParseHealthcheck parses "[--interval=d] [--timeout=d] [--start-period=d] [--retries=n] cmd…". Flags come
// first and must be written --key=value; every error starts with "healthcheck: ".
func ParseHealthcheck(s string) (Healthcheck, error) {
	h := Healthcheck{Interval: DefaultInterval, Timeout: DefaultTimeout}
	seen := map[string]bool{}
	rest := strings.TrimSpace(s)
	for strings.HasPrefix(rest, "--") {
		var flag string
		flag, rest = cutSpace(rest)
		name, value, ok := strings.Cut(flag, "=")
		if !ok {
			return Healthcheck{}, fmt.Errorf("healthcheck: flag %q must be written %s=<value>", flag, flag)
		}
		if seen[name] {
			return Healthcheck{}, fmt.Errorf("healthcheck: flag %s given twice", name)
		}
		seen[name] = true
		var err error
		switch name {
		case "--interval":
			h.Interval, err = healthDuration(name, value, false)
		case "--timeout":
			h.Timeout, err = healthDuration(name, value, false)
		case "--start-period":
			h.StartPeriod, err = healthDuration(name, value, true)
		case "--retries":
			n, perr := strconv.Atoi(value)
			if perr != nil || n < 0 {
				err = fmt.Errorf("healthcheck: --retries %q is not a non-negative integer", value)
			}
			h.Retries = n
		default:
			err = fmt.Errorf("healthcheck: unknown flag %s (expected --interval, --timeout, --start-period or --retries)", name)
		}
		if err != nil {
			return Healthcheck{}, err
		}
	}
	if rest == "" {
		return Healthcheck{}, errors.New("healthcheck: a command is required")
	}
	if strings.IndexByte(rest, 0) >= 0 {
		return Healthcheck{}, errors.New("healthcheck: command contains a NUL byte")
	}
	h.Command = rest
	return h, nil
}

func healthDuration(name, value string, zeroOK bool) (time.Duration, error) {
	d, err := time.ParseDuration(value)
	if err != nil || d < 0 || d == 0 && !zeroOK {
		want := "a positive duration"
		if zeroOK {
			want = "a duration ≥ 0"
		}
		return 0, fmt.Errorf("healthcheck: %s %q is not %s (such as 5s, 1m)", name, value, want)
	}
	return d, nil
}

// Deadline is how long the build waits for the check in total: start_period + (retries+1) × interval
// with retries, MaxWait without (saturating instead of overflowing).
func (h Healthcheck) Deadline() time.Duration {
	if h.Retries == 0 {
		return MaxWait
	}
	n := int64(h.Retries) + 1
	if h.Interval > 0 && n > (math.MaxInt64-int64(h.StartPeriod))/int64(h.Interval) {
		return math.MaxInt64
	}
	return h.StartPeriod + time.Duration(n)*h.Interval
}
