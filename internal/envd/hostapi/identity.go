package hostapi

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// Environment variables and file names carrying the capsule's identity.
const (
	envSandboxID  = "WRENN_SANDBOX_ID"
	envTemplateID = "WRENN_TEMPLATE_ID"
	fileSandbox   = "sandbox_id"
	fileTemplate  = "template_id"
)

// syncIdentity re-reads the host metadata into the global environment and
// RunDir. A restored capsule gets a new id, so this runs on every /init;
// failures are logged, not returned: the host's /init must not fail over it.
func (h *host) syncIdentity(ctx context.Context) {
	if h.meta == nil {
		return
	}
	m, err := h.meta.Read(ctx)
	if err != nil {
		h.log.Warn("read capsule metadata", "err", err)
		return
	}
	for _, id := range []struct{ env, file, value string }{
		{envSandboxID, fileSandbox, m.SandboxID},
		{envTemplateID, fileTemplate, m.TemplateID},
	} {
		if id.value == "" {
			continue // nothing published: keep what we had
		}
		h.defaults.SetEnv(id.env, id.value)
		if h.runDir == "" {
			continue
		}
		if err := writeAtomic(filepath.Join(h.runDir, id.file), id.value); err != nil {
			h.log.Warn("publish capsule identity", "err", err)
		}
	}
}

// writeAtomic replaces path with content so readers never see a partial id.
func writeAtomic(path, content string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.WriteString(content)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
