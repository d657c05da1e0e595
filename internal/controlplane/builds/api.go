package builds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"regexp"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/builds/archive"
	"github.com/wrenn/wrenn/internal/controlplane/builds/recipe"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Creation defaults (docs/api.md).
const (
	defaultBase     = "base"
	defaultVCPUs    = 1
	defaultMemoryMB = 512
	minMemoryMB     = 128
	// prePostSteps is the number of steps of the pre-build and post-build phases.
	prePostSteps = 7
	// chunkSize is the size of the archive's rows in build_archives.
	chunkSize = 1 << 20
)

// templateName is the template name syntax of docs/api.md.
var templateName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$`)

// Register adds the admin build routes to rt.
func (s *Service) Register(rt *httpapi.Router) {
	rt.HandleStream(http.MethodPost, "/v1/admin/builds", auth.KindAdmin, httpapi.Errors(s.handleCreate))
	rt.Handle(http.MethodGet, "/v1/admin/builds", auth.KindAdmin, httpapi.Errors(s.handleList))
	rt.Handle(http.MethodGet, "/v1/admin/builds/{id}", auth.KindAdmin, httpapi.Errors(s.handleGet))
	rt.Handle(http.MethodPost, "/v1/admin/builds/{id}/cancel", auth.KindAdmin, httpapi.Errors(s.handleCancel))
	rt.HandleWS("/v1/admin/builds/{id}/events", auth.KindAdmin, s.handleEvents(rt.Authenticator()))
}

// createRequest is the JSON of POST /v1/admin/builds (or its multipart config field).
type createRequest struct {
	Name         string   `json:"name"`
	BaseTemplate string   `json:"base_template"`
	Recipe       []string `json:"recipe"`
	Healthcheck  string   `json:"healthcheck"`
	VCPUs        *int32   `json:"vcpus"`
	MemoryMB     *int32   `json:"memory_mb"`
	SkipPrePost  bool     `json:"skip_pre_post"`
}

// CreateParams are the settings of a new build.
type CreateParams struct {
	Name, BaseTemplate, Healthcheck string
	Recipe                          []string
	VCPUs, MemoryMB                 int32
	SkipPrePost                     bool
}

func (r createRequest) params() CreateParams {
	p := CreateParams{Name: r.Name, BaseTemplate: r.BaseTemplate, Healthcheck: r.Healthcheck, Recipe: r.Recipe,
		VCPUs: defaultVCPUs, MemoryMB: defaultMemoryMB, SkipPrePost: r.SkipPrePost}
	if p.BaseTemplate == "" {
		p.BaseTemplate = defaultBase
	}
	if r.VCPUs != nil {
		p.VCPUs = *r.VCPUs
	}
	if r.MemoryMB != nil {
		p.MemoryMB = *r.MemoryMB
	}
	return p
}

// validate checks p as docs/api.md says and returns its number of steps.
func (p CreateParams) validate() (int32, error) {
	switch {
	case p.Name == "":
		return 0, apierr.InvalidRequest("name is required")
	case !templateName.MatchString(p.Name):
		return 0, apierr.InvalidRequest("invalid template name: 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit")
	case p.VCPUs < 1:
		return 0, apierr.InvalidRequest("vcpus must be at least 1")
	case p.MemoryMB < minMemoryMB:
		return 0, apierr.InvalidRequestf("memory_mb must be at least %d", minMemoryMB)
	}
	steps, err := recipe.Parse(p.Recipe)
	if err != nil {
		return 0, apierr.InvalidRequest(err.Error())
	}
	if p.Healthcheck != "" {
		if _, err := recipe.ParseHealthcheck(p.Healthcheck); err != nil {
			return 0, apierr.InvalidRequest(err.Error())
		}
	}
	n := int32(len(steps))
	if !p.SkipPrePost {
		n += prePostSteps
	}
	return n, nil
}

func (s *Service) handleCreate(w http.ResponseWriter, r *http.Request) error {
	var (
		req  createRequest
		file *os.File
		size int64
	)
	defer func() {
		if file != nil {
			_ = file.Close()
			_ = os.Remove(file.Name())
		}
	}()
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "multipart/form-data" {
		var err error
		if req, file, size, err = readMultipart(r); err != nil {
			return err
		}
	} else if err := apierr.DecodeJSON(r, 0, &req); err != nil {
		return err
	}
	var arc io.ReaderAt
	if file != nil {
		arc = file
	}
	b, err := s.Create(r.Context(), httpapi.Identity(r), req.params(), arc, size)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusCreated, view(b))
	return nil
}

// readMultipart reads the config field and streams the archive part (if any) into a temporary file,
// at most archive.MaxUpload bytes. The caller removes the file.
func readMultipart(r *http.Request) (req createRequest, file *os.File, size int64, err error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return req, nil, 0, apierr.InvalidRequest("invalid multipart form")
	}
	var config []byte
	for {
		part, perr := mr.NextPart()
		if errors.Is(perr, io.EOF) {
			break
		}
		if perr != nil {
			return req, file, 0, apierr.InvalidRequest("invalid multipart form")
		}
		switch part.FormName() {
		case "config":
			config, err = io.ReadAll(io.LimitReader(part, apierr.DefaultBodyLimit+1))
			if err != nil {
				return req, file, 0, apierr.InvalidRequest("invalid multipart form")
			}
			if int64(len(config)) > apierr.DefaultBodyLimit {
				return req, file, 0, apierr.TooLarge("config exceeds 1 MB limit")
			}
		case "archive":
			if file != nil {
				return req, file, 0, apierr.InvalidRequest("multipart form has more than one 'archive' file")
			}
			if file, err = os.CreateTemp("", "wrenn-build-archive-*"); err != nil {
				return req, nil, 0, apierr.Internal(err)
			}
			size, err = io.Copy(file, io.LimitReader(part, archive.MaxUpload+1))
			if err != nil {
				return req, file, 0, apierr.InvalidRequest("archive upload failed")
			}
			if size > archive.MaxUpload {
				return req, file, 0, apierr.TooLarge("archive exceeds 100 MB limit")
			}
		}
		_ = part.Close()
	}
	if config == nil {
		return req, file, 0, apierr.InvalidRequest("multipart form requires a 'config' JSON field")
	}
	if err := json.Unmarshal(config, &req); err != nil {
		return req, file, 0, apierr.InvalidRequest("invalid config JSON in multipart form")
	}
	return req, file, size, nil
}

// Create validates and queues a build of p; arc (size bytes, may be nil) is its archive, checked and
// stored with the build in PostgreSQL.
func (s *Service) Create(ctx context.Context, actor auth.Identity, p CreateParams, arc io.ReaderAt, size int64) (db.Build, error) {
	steps, err := p.validate()
	if err != nil {
		return db.Build{}, err
	}
	if _, err := s.store.GetTemplate(ctx, db.GetTemplateParams{TeamID: store.PlatformTeamID, Name: p.BaseTemplate}); store.IsNotFound(err) {
		return db.Build{}, apierr.NotFound("template not found")
	} else if err != nil {
		return db.Build{}, apierr.Internal(err)
	}
	if _, err := s.store.GetTemplate(ctx, db.GetTemplateParams{TeamID: store.PlatformTeamID, Name: p.Name}); err == nil {
		return db.Build{}, apierr.TemplateNameTaken("a template named " + p.Name + " already exists")
	} else if !store.IsNotFound(err) {
		return db.Build{}, apierr.Internal(err)
	}
	if arc != nil {
		if _, err := archive.Check(arc, size); err != nil {
			switch {
			case errors.Is(err, archive.ErrTooLarge):
				return db.Build{}, apierr.TooLarge("archive exceeds 100 MB limit")
			case errors.Is(err, archive.ErrInvalid):
				return db.Build{}, apierr.InvalidArchive(err.Error())
			}
			return db.Build{}, apierr.Internal(fmt.Errorf("check archive: %w", err))
		}
	}
	var hc *string
	if p.Healthcheck != "" {
		hc = &p.Healthcheck
	}
	var b db.Build
	err = s.store.Tx(ctx, func(q *db.Queries) error {
		var err error
		b, err = q.CreateBuild(ctx, db.CreateBuildParams{
			Name: p.Name, BaseTemplate: p.BaseTemplate, Recipe: p.Recipe, Healthcheck: hc, VCPUs: p.VCPUs,
			MemoryMB: p.MemoryMB, SkipPrePost: p.SkipPrePost, TotalSteps: steps, CreatedBy: userOf(actor),
		})
		if err != nil || arc == nil {
			return err
		}
		buf := make([]byte, chunkSize)
		for seq, off := int32(0), int64(0); off < size; seq++ {
			n, rerr := arc.ReadAt(buf[:min(int64(chunkSize), size-off)], off)
			if rerr != nil && !errors.Is(rerr, io.EOF) {
				return fmt.Errorf("read archive: %w", rerr)
			}
			if n == 0 {
				return fmt.Errorf("read archive: short read at %d", off)
			}
			if err := q.PutBuildArchiveChunk(ctx, db.PutBuildArchiveChunkParams{BuildID: b.ID, Seq: seq, Data: buf[:n]}); err != nil {
				return err
			}
			off += int64(n)
		}
		if err := q.SetBuildArchiveSize(ctx, db.SetBuildArchiveSizeParams{ID: b.ID, ArchiveBytes: size}); err != nil {
			return err
		}
		b.ArchiveBytes = size
		return nil
	})
	if store.IsUniqueViolation(err, "builds_active_name_key") {
		return db.Build{}, apierr.TemplateNameTaken("a build of " + p.Name + " is already pending or running")
	}
	if err != nil {
		return db.Build{}, apierr.BuildError("build could not be queued").WithCause(err)
	}
	s.log.Info("build queued", "build_id", buildID(b.ID), "name", b.Name, "steps", steps, "archive_bytes", size)
	s.nudge()
	return b, nil
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request) error {
	bs, err := s.store.ListBuilds(r.Context())
	if err != nil {
		return apierr.Internal(err)
	}
	out := make([]Build, 0, len(bs))
	for _, b := range bs {
		out = append(out, view(b))
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
	return nil
}

// Get returns build rawID (bld-…).
func (s *Service) Get(ctx context.Context, rawID string) (db.Build, error) {
	id, err := ids.Build.Parse(rawID)
	if err != nil {
		return db.Build{}, apierr.InvalidRequest("invalid build ID")
	}
	b, err := s.store.GetBuild(ctx, id)
	if store.IsNotFound(err) {
		return db.Build{}, apierr.NotFound("build not found")
	}
	if err != nil {
		return db.Build{}, apierr.Internal(err)
	}
	return b, nil
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) error {
	b, err := s.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, view(b))
	return nil
}

// Cancel cancels build rawID: cancelled at once; a running build's command is aborted and its
// capsule destroyed by its worker (docs/api.md).
func (s *Service) Cancel(ctx context.Context, rawID string) error {
	b, err := s.Get(ctx, rawID)
	if err != nil {
		return err
	}
	if _, err := s.store.CancelBuild(ctx, b.ID); store.IsNotFound(err) {
		now, gerr := s.store.GetBuild(ctx, b.ID)
		if gerr == nil {
			b = now
		}
		return apierr.InvalidRequest("build is already " + b.Status)
	} else if err != nil {
		return apierr.Internal(err)
	}
	s.abort(b.ID)
	if _, err := s.store.DeleteBuildArchive(context.WithoutCancel(ctx), b.ID); err != nil {
		s.log.Warn("delete archive of a cancelled build", "build_id", rawID, "err", err)
	}
	s.log.Info("build cancelled", "build_id", rawID)
	return nil
}

func (s *Service) handleCancel(w http.ResponseWriter, r *http.Request) error {
	if err := s.Cancel(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	httpapi.NoContent(w)
	return nil
}

// userOf returns the user behind actor (nil for the system).
func userOf(actor auth.Identity) *uuid.UUID {
	if actor.Method != auth.MethodJWT {
		return nil
	}
	u, err := ids.User.Parse(actor.UserID)
	if err != nil {
		return nil
	}
	return &u
}
