package up

import (
	"reflect"
	"testing"
)

func TestParsePools(t *testing.T) {
	got, err := parsePools(" base=2, minimal=0,,")
	if want := []poolSize{{"base", 2}, {"minimal", 0}}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("parsePools = %+v, %v; want %+v", got, err, want)
	}
	if got, err := parsePools(""); err != nil || len(got) != 0 {
		t.Fatalf("empty: %+v, %v", got, err)
	}
	for _, bad := range []string{"base", "base=", "=2", "base=65", "base=-1", "base=x"} {
		if _, err := parsePools(bad); err == nil {
			t.Errorf("parsePools(%q) accepted", bad)
		}
	}
}
