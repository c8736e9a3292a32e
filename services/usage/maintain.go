package usage

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tokenmanager/tokenmanager/services/internal/db"
	"github.com/tokenmanager/tokenmanager/services/usage/store"
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

// dayOf is the UTC day holding t.
func dayOf(t time.Time) time.Time { return t.UTC().Truncate(24 * time.Hour) }

// ensurePartition creates the partition of day unless it exists.
func ensurePartition(ctx context.Context, b db.Beginner, day time.Time) error {
	return db.InTx(ctx, b, func(tx pgx.Tx) error {
		if err := queries.LockPartitionDDL(ctx, tx); err != nil {
			return err
		}
		return queries.CreatePartition(ctx, tx, day)
	})
}

// dropBefore drops the partitions of days before cutoff and the rollup
// rows before it, and returns the dropped partitions' names.
func dropBefore(ctx context.Context, b db.Beginner, q store.DBTX, cutoff time.Time) ([]string, error) {
	cutoff = dayOf(cutoff)
	days, err := queries.PartitionDays(ctx, q)
	if err != nil {
		return nil, err
	}
	var dropped []string
	for _, d := range days {
		if !d.Before(cutoff) {
			break
		}
		err := db.InTx(ctx, b, func(tx pgx.Tx) error {
			if err := queries.LockPartitionDDL(ctx, tx); err != nil {
				return err
			}
			return queries.DropPartition(ctx, tx, d)
		})
		if err != nil {
			return dropped, fmt.Errorf("drop partition %s: %w", store.PartitionName(d), err)
		}
		dropped = append(dropped, store.PartitionName(d))
	}
	if err := queries.TrimDailyRollups(ctx, q, pgtype.Date{Time: cutoff, Valid: true}); err != nil {
		return dropped, fmt.Errorf("trim rollup_daily: %w", err)
	}
	if err := queries.TrimDimRollups(ctx, q, cutoff); err != nil {
		return dropped, fmt.Errorf("trim rollup_dim: %w", err)
	}
	return dropped, nil
}
