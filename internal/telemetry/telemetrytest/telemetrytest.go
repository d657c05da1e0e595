// Package telemetrytest scrapes /metrics endpoints in tests and looks samples up by name and labels.
package telemetrytest

import (
	"io"
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Sample is one series' value.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Samples are the series of one scrape by name; a histogram or summary "x" appears as "x_count" and
// "x_sum".
type Samples map[string][]Sample

// Scrape GETs url (with "Authorization: Bearer token" when token is set), fails t unless the answer
// is 200, and parses it.
func Scrape(t testing.TB, url, token string) Samples {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("scrape %s: %d %s", url, res.StatusCode, b)
	}
	s, err := Parse(res.Body)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	return s
}

// Parse reads the Prometheus text format.
func Parse(r io.Reader) (Samples, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	out := Samples{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			add := func(n string, v float64) { out[n] = append(out[n], Sample{Labels: labels, Value: v}) }
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				add(name, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add(name, m.GetGauge().GetValue())
			case dto.MetricType_HISTOGRAM:
				add(name+"_count", float64(m.GetHistogram().GetSampleCount()))
				add(name+"_sum", m.GetHistogram().GetSampleSum())
			case dto.MetricType_SUMMARY:
				add(name+"_count", float64(m.GetSummary().GetSampleCount()))
				add(name+"_sum", m.GetSummary().GetSampleSum())
			default:
				add(name, m.GetUntyped().GetValue())
			}
		}
	}
	return out, nil
}

// Get returns the value of the series name whose labels include every key=value pair of kv (given as
// alternating keys and values); with several matches their values are summed. ok is false when no
// series matches.
func (s Samples) Get(name string, kv ...string) (v float64, ok bool) {
	for _, smp := range s[name] {
		match := true
		for i := 0; i+1 < len(kv); i += 2 {
			if smp.Labels[kv[i]] != kv[i+1] {
				match = false
				break
			}
		}
		if match {
			v += smp.Value
			ok = true
		}
	}
	return v, ok
}

// Cond is a condition on a sample value.
type Cond struct {
	What string
	OK   func(float64) bool
}

// Eq holds for exactly n.
func Eq(n float64) Cond {
	return Cond{"== " + model.SampleValue(n).String(), func(v float64) bool { return v == n }}
}

// AtLeast holds for n or more.
func AtLeast(n float64) Cond {
	return Cond{">= " + model.SampleValue(n).String(), func(v float64) bool { return v >= n }}
}

// Want fails t unless series name with labels kv (alternating keys and values) exists and its value
// satisfies c.
func (s Samples) Want(t testing.TB, c Cond, name string, kv ...string) {
	t.Helper()
	v, ok := s.Get(name, kv...)
	if !ok {
		t.Errorf("%s%v: no such series", name, kv)
		return
	}
	if !c.OK(v) {
		t.Errorf("%s%v = %v, want %s", name, kv, v, c.What)
	}
}
