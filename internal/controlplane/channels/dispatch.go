package channels

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/wrenn/wrenn/internal/controlplane/audit"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

const (
	// leaseSeconds is how long a claimed delivery is held before another worker may take it over;
	// well above DeliveryTimeout.
	leaseSeconds = 60
	// reapInterval is how often deliveries of vanished workers are returned to the queue (and old
	// finished deliveries forgotten).
	reapInterval = 30 * time.Second
	// keepFinished is how long done and failed deliveries stay in the jobs table.
	keepFinished = 7 * 24 * time.Hour
)

// Run delivers queued notifications (audit.NotifyQueue jobs) until ctx ends, then waits for the
// deliveries in flight and returns nil. Every control plane may run it: jobs are leased, so each
// delivery has one worker at a time; a failed attempt is retried with exponential backoff up to
// audit.NotifyMaxAttempts times (at least once delivery). A delivery whose channel was deleted or
// no longer subscribes to the event is dropped.
func (s *Service) Run(ctx context.Context) error {
	worker := workerName()
	log := s.log.With("worker", worker)
	log.Info("notification dispatcher started")
	defer log.Info("notification dispatcher stopped")

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.reapLoop(ctx) })

	slots := make(chan struct{}, s.workers)
	idle := time.NewTimer(0)
	defer idle.Stop()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		job, err := s.store.ClaimJob(ctx, db.ClaimJobParams{Worker: worker, LeaseSeconds: leaseSeconds, Queue: audit.NotifyQueue})
		if err == nil {
			wg.Go(func() {
				defer func() { <-slots }()
				s.deliver(ctx, worker, job)
			})
			continue
		}
		<-slots
		if ctx.Err() != nil {
			return nil
		}
		if !store.IsNotFound(err) {
			log.Warn("claim notification", "err", err)
		}
		idle.Reset(s.pollInterval)
		select {
		case <-idle.C:
		case <-ctx.Done():
			return nil
		}
	}
}

func (s *Service) reapLoop(ctx context.Context) {
	t := time.NewTicker(reapInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if n, err := s.store.ReapExpiredJobs(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("reap expired jobs", "err", err)
			} else if n > 0 {
				s.log.Info("returned jobs of vanished workers to their queues", "jobs", n)
			}
			if _, err := s.store.DeleteFinishedJobsOfQueue(ctx, db.DeleteFinishedJobsOfQueueParams{
				Queue: audit.NotifyQueue, FinishedBefore: time.Now().Add(-keepFinished),
			}); err != nil && ctx.Err() == nil {
				s.log.Warn("delete finished notifications", "err", err)
			}
		case <-ctx.Done():
			return
		}
	}
}

// deliver makes one attempt of job and records its outcome.
func (s *Service) deliver(ctx context.Context, worker string, job db.Job) {
	bg := context.WithoutCancel(ctx)
	log := s.log.With("job_id", job.ID, "attempt", job.Attempts)
	var n audit.Notification
	if err := json.Unmarshal(job.Payload, &n); err != nil {
		log.Error("drop malformed notification", "err", err)
		s.complete(bg, worker, job)
		return
	}
	log = log.With("event", n.Event.Event, "channel_id", ids.Channel.Format(n.ChannelID), "delivery_id", n.DeliveryID)
	ch, err := s.store.GetChannelByID(ctx, n.ChannelID)
	if store.IsNotFound(err) {
		log.Info("drop notification: channel deleted")
		s.complete(bg, worker, job)
		return
	}
	if err == nil && !slices.Contains(ch.Events, n.Event.Event) {
		log.Info("drop notification: channel no longer subscribes to the event")
		s.complete(bg, worker, job)
		return
	}
	if err == nil {
		var cfg map[string]string
		if cfg, err = s.seal.open(ch.ID, ch.Config); err == nil {
			err = s.send(ctx, ch.Provider, cfg, n.Event, n.DeliveryID)
		}
	}
	if err == nil {
		s.complete(bg, worker, job)
		log.Debug("notification delivered", "provider", ch.Provider)
		return
	}
	delay := s.backoff(job.Attempts)
	res, ferr := s.store.FailJob(bg, db.FailJobParams{
		RetryAt: time.Now().Add(delay), LastError: err.Error(), ID: job.ID, Worker: worker,
	})
	switch {
	case store.IsNotFound(ferr):
		log.Warn("notification failed after its lease expired", "err", err)
	case ferr != nil:
		log.Error("record failed notification", "err", ferr, "delivery_err", err)
	case res.Status == store.JobFailed:
		log.Error("notification undeliverable, giving up", "attempts", res.Attempts, "err", err)
	default:
		log.Warn("notification failed, will retry", "retry_in", delay, "err", err)
	}
}

func (s *Service) complete(ctx context.Context, worker string, job db.Job) {
	n, err := s.store.CompleteJob(ctx, db.CompleteJobParams{ID: job.ID, Worker: worker})
	switch {
	case err != nil:
		s.log.Error("complete notification job", "job_id", job.ID, "err", err)
	case n == 0:
		s.log.Warn("notification job completed after its lease expired", "job_id", job.ID)
	}
}

// backoff is the delay after the attempt-th failed attempt: RetryBase doubled per earlier attempt,
// at most MaxRetryDelay.
func (s *Service) backoff(attempt int32) time.Duration {
	d := s.retryBase
	for i := int32(1); i < attempt && d < s.maxRetryDelay; i++ {
		d *= 2
	}
	return min(d, s.maxRetryDelay)
}

// workerName identifies this dispatcher in job leases: host name, pid and a random suffix.
func workerName() string {
	host, err := os.Hostname()
	if err != nil {
		host = "cp"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("notify-%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}
