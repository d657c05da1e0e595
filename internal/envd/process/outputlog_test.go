package process

import (
	"strings"
	"testing"
)

func TestOutputLog(t *testing.T) {
	l := outputLog{limit: 10}
	l.append(kindStdout, []byte("abcd"))
	l.append(kindStderr, []byte("efgh"))
	l.append(kindStdout, nil)
	if l.oldest() != 0 || l.end != 8 || l.size != 8 {
		t.Fatalf("oldest %d end %d size %d", l.oldest(), l.end, l.size)
	}
	l.append(kindStdout, []byte("ijkl")) // 12 bytes: "ab" evicted from the first chunk
	if l.oldest() != 2 || l.size != 10 {
		t.Fatalf("after eviction oldest %d size %d", l.oldest(), l.size)
	}
	l.append(kindPTY, []byte(strings.Repeat("z", 25))) // larger than the limit
	if l.oldest() != 27 || l.end != 37 || l.size != 10 || len(l.chunks) != 1 {
		t.Fatalf("oversized chunk: oldest %d end %d size %d chunks %d", l.oldest(), l.end, l.size, len(l.chunks))
	}

	l = outputLog{limit: 100}
	for _, s := range []string{"abc", "def", "ghi"} {
		l.append(kindStdout, []byte(s))
	}
	tests := []struct {
		from, max int
		want      []string
		next      uint64
	}{
		{0, 100, []string{"abc", "def", "ghi"}, 9},
		{4, 100, []string{"ef", "ghi"}, 9},
		{3, 1, []string{"def"}, 6},
		{9, 100, nil, 9},
		{50, 100, nil, 50},
	}
	for _, tt := range tests {
		got, next := l.readFrom(uint64(tt.from), tt.max)
		var s []string
		for _, c := range got {
			s = append(s, string(c.data))
		}
		if strings.Join(s, "|") != strings.Join(tt.want, "|") || next != tt.next {
			t.Errorf("readFrom(%d, %d) = %v, %d; want %v, %d", tt.from, tt.max, s, next, tt.want, tt.next)
		}
	}
}
