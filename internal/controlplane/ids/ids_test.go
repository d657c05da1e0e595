package ids

import (
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// bigFormat is the reference encoding: math/big, padded to Len.
func bigFormat(u uuid.UUID) string {
	s := new(big.Int).SetBytes(u[:]).Text(36)
	return strings.Repeat("0", Len-len(s)) + s
}

func TestFormatKnownValues(t *testing.T) {
	max := uuid.UUID{}
	for i := range max {
		max[i] = 0xff
	}
	tests := []struct {
		p    Prefix
		u    uuid.UUID
		want string
	}{
		{Team, uuid.UUID{}, "team-0000000000000000000000000"},
		{Capsule, uuid.MustParse("00000000-0000-0000-0000-000000000001"), "cl-0000000000000000000000001"},
		{Capsule, uuid.MustParse("00000000-0000-0000-0000-000000000024"), "cl-0000000000000000000000010"},
		{User, max, "usr-f5lxx1zz5pnorynqglhzmsp33"},
	}
	for _, tc := range tests {
		if got := tc.p.Format(tc.u); got != tc.want {
			t.Errorf("%s.Format(%s) = %q, want %q", tc.p, tc.u, got, tc.want)
		}
		back, err := tc.p.Parse(tc.want)
		if err != nil || back != tc.u {
			t.Errorf("Parse(%q) = %s, %v; want %s", tc.want, back, err, tc.u)
		}
	}
}

func TestRoundTripMatchesBigInt(t *testing.T) {
	for i := 0; i < 10000; i++ {
		u := uuid.New()
		s := Capsule.Format(u)
		if want := "cl-" + bigFormat(u); s != want {
			t.Fatalf("Format(%s) = %q, want %q", u, s, want)
		}
		back, err := Capsule.Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q): %v", s, err)
		}
		if back != u {
			t.Fatalf("Parse(Format(%s)) = %s", u, back)
		}
	}
}

func TestNew(t *testing.T) {
	u, s := Host.New()
	if u.Version() != 4 {
		t.Errorf("version %d, want 4", u.Version())
	}
	if len(s) != len("host-")+Len || !strings.HasPrefix(s, "host-") {
		t.Errorf("bad id %q", s)
	}
	if back, err := Host.Parse(s); err != nil || back != u {
		t.Errorf("Parse(%q) = %s, %v", s, back, err)
	}
}

func TestParseSpecExample(t *testing.T) {
	const id = "cl-0k4xq2m9d8e7r6t5y4u3i2o1p"
	u, err := Capsule.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	if got := Capsule.Format(u); got != id {
		t.Errorf("Format(Parse(%q)) = %q", id, got)
	}
}

func TestParseRejects(t *testing.T) {
	tooBig := new(big.Int).Lsh(big.NewInt(1), 128).Text(36) // 2^128, 25 digits
	tests := []struct {
		name string
		p    Prefix
		in   string
	}{
		{"empty", Capsule, ""},
		{"prefix only", Capsule, "cl-"},
		{"wrong prefix", Capsule, "team-0000000000000000000000000"},
		{"prefix of another kind", Team, "cl-0000000000000000000000000"},
		{"short", Capsule, "cl-000000000000000000000000"},
		{"long", Capsule, "cl-00000000000000000000000000"},
		{"upper case", Capsule, "cl-0K4XQ2M9D8E7R6T5Y4U3I2O1P"},
		{"bad digit", Capsule, "cl-000000000000000000000000-"},
		{"2^128", Capsule, "cl-" + tooBig},
		{"all z", Capsule, "cl-" + strings.Repeat("z", Len)},
		{"uuid text", Capsule, "cl-" + uuid.New().String()},
		{"no prefix", Capsule, "0k4xq2m9d8e7r6t5y4u3i2o1p"},
		{"unicode", Capsule, "cl-000000000000000000000000é"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.p.Parse(tc.in); !errors.Is(err, ErrInvalid) {
				t.Errorf("Parse(%q) error = %v, want ErrInvalid", tc.in, err)
			}
		})
	}
}

func TestPrefixesAreDistinct(t *testing.T) {
	all := []Prefix{Capsule, Team, User, APIKey, Host, HostToken, HostRefreshToken, AuditLog, Build, Channel}
	u := uuid.New()
	for _, p := range all {
		s := p.Format(u)
		for _, q := range all {
			if _, err := q.Parse(s); (err == nil) != (p == q) {
				t.Errorf("%s.Parse(%q) error = %v", q, s, err)
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("cl-0k4xq2m9d8e7r6t5y4u3i2o1p")
	f.Add("cl-zzzzzzzzzzzzzzzzzzzzzzzzz")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := Capsule.Parse(s)
		if err != nil {
			return
		}
		if got := Capsule.Format(u); got != s {
			t.Fatalf("Format(Parse(%q)) = %q", s, got)
		}
	})
}
