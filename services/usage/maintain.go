package usage

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// maintainer keeps usage.events' partitions: today and `ahead` days after
// it exist; days older than the retention are dropped, with their rollups.
type maintainer struct {
	pool      *pgxpool.Pool
	log       *slog.Logger
	retention time.Duration
	ahead     int
	ingester  *Ingester
	now       func() time.Time
}

// maintenanceInterval is how often partitions are checked.
const maintenanceInterval = time.Hour

func (m *maintainer) once(ctx context.Context) error {
	today := dayOf(m.now())
	for i := 0; i <= m.ahead; i++ {
		if err := ensurePartition(ctx, m.pool, today.AddDate(0, 0, i)); err != nil {
			return err
		}
	}
	dropped, err := dropBefore(ctx, m.pool, m.pool, m.now().Add(-m.retention))
	if len(dropped) > 0 {
		m.log.Info("usage partitions dropped after retention", "partitions", dropped)
		if m.ingester != nil {
			m.ingester.forgetPartitions()
		}
	}
	return err
}

func (m *maintainer) loop(ctx context.Context) {
	t := time.NewTicker(maintenanceInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.once(ctx); err != nil && ctx.Err() == nil {
				m.log.Error("usage partition maintenance failed", "error", err)
			}
		}
	}
}
