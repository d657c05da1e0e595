package strmap

import "testing"

func TestValue(t *testing.T) {
	for _, tc := range []struct {
		m    Map
		want string
	}{
		{nil, "{}"},
		{Map{}, "{}"},
		{Map{"A": "1", "B": "x y"}, `{"A":"1","B":"x y"}`},
	} {
		v, err := tc.m.Value()
		if err != nil || v != tc.want {
			t.Errorf("Value(%v) = %v, %v; want %q", tc.m, v, err, tc.want)
		}
	}
}
