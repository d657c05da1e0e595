package metadata

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestFileRead(t *testing.T) {
	tests := []struct {
		name    string
		content *string // nil: no file
		want    Metadata
		wantErr bool
	}{
		{name: "missing file", content: nil, want: Metadata{}},
		{name: "both ids", content: ptr(`{"sandbox_id":"cl-abc","template_id":"tpl-1"}`), want: Metadata{SandboxID: "cl-abc", TemplateID: "tpl-1"}},
		{name: "unknown fields ignored", content: ptr(`{"sandbox_id":"cl-x","extra":1}`), want: Metadata{SandboxID: "cl-x"}},
		{name: "empty object", content: ptr(`{}`), want: Metadata{}},
		{name: "bad json", content: ptr(`{"sandbox_id":`), wantErr: true},
		{name: "empty file", content: ptr(``), wantErr: true},
		{name: "wrong type", content: ptr(`{"sandbox_id":5}`), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "metadata.json")
			if tt.content != nil {
				if err := os.WriteFile(path, []byte(*tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := File{Path: path}.Read(context.Background())
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestFileReadUnreadable(t *testing.T) {
	// A directory at the path is an I/O error, not "missing".
	if _, err := (File{Path: t.TempDir()}).Read(context.Background()); err == nil {
		t.Fatal("want error reading a directory")
	}
}

func TestFileReadCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (File{Path: "/nonexistent"}).Read(ctx); err == nil {
		t.Fatal("want context error")
	}
}

func ptr(s string) *string { return &s }
