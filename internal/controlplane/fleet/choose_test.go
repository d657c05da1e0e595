package fleet

import (
	"testing"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// choose prefers a fitting host with a ready pool member, then headroom.
func TestChoose(t *testing.T) {
	mem := func(v int32) *int32 { return &v }
	row := func(memMB, reserved int32) db.ListSchedulableHostsRow {
		return db.ListSchedulableHostsRow{Host: db.Host{ID: uuid.New(), MemoryMB: mem(memMB)}, MemoryMBReserved: reserved}
	}
	empty, half, full := row(8192, 0), row(8192, 4096), row(8192, 8000)
	rows := []db.ListSchedulableHostsRow{half, empty, full}
	id := func(r *db.ListSchedulableHostsRow) uuid.UUID {
		if r == nil {
			return uuid.Nil
		}
		return r.Host.ID
	}
	for _, c := range []struct {
		name   string
		pooled []uuid.UUID
		mem    int32
		avoid  []uuid.UUID
		want   uuid.UUID
	}{
		{"no pool: most headroom", nil, 512, nil, empty.Host.ID},
		{"pooled host first", []uuid.UUID{half.Host.ID}, 512, nil, half.Host.ID},
		{"most headroom among pooled hosts", []uuid.UUID{half.Host.ID, empty.Host.ID}, 512, nil, empty.Host.ID},
		{"pooled host that does not fit", []uuid.UUID{full.Host.ID}, 512, nil, empty.Host.ID},
		{"pooled host avoided", []uuid.UUID{half.Host.ID}, 512, []uuid.UUID{half.Host.ID}, empty.Host.ID},
		{"pooled host of another fleet", []uuid.UUID{uuid.New()}, 512, nil, empty.Host.ID},
		{"only the pooled host fits", []uuid.UUID{half.Host.ID}, 4096, []uuid.UUID{empty.Host.ID}, half.Host.ID},
		{"none fits", []uuid.UUID{half.Host.ID}, 9000, nil, uuid.Nil},
	} {
		if got := id(choose(rows, c.pooled, c.mem, 0, c.avoid)); got != c.want {
			t.Errorf("%s: chose %v, want %v", c.name, got, c.want)
		}
	}
	// The order of the rows does not matter.
	rev := []db.ListSchedulableHostsRow{full, empty, half}
	if got := id(choose(rev, []uuid.UUID{half.Host.ID}, 512, 0, nil)); got != half.Host.ID {
		t.Errorf("reversed rows: chose %v, want the pooled host", got)
	}
}
