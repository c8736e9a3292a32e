package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// PartitionPrefix begins the name of every partition of usage.events.
const PartitionPrefix = "events_p"

// PartitionName is the partition of usage.events holding day (UTC).
func PartitionName(day time.Time) string { return PartitionPrefix + day.UTC().Format("20060102") }

func dayOf(t time.Time) time.Time { return t.UTC().Truncate(24 * time.Hour) }

// CreatePartition creates the partition of the UTC day holding day unless
// it exists. Run it after LockPartitionDDL, in the same transaction.
func (*Queries) CreatePartition(ctx context.Context, db DBTX, day time.Time) error {
	day = dayOf(day)
	sql := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS usage.%s PARTITION OF usage.events FOR VALUES FROM ('%s') TO ('%s')`,
		PartitionName(day), day.Format("2006-01-02 15:04:05+00"), day.AddDate(0, 0, 1).Format("2006-01-02 15:04:05+00"))
	if _, err := db.Exec(ctx, sql); err != nil {
		return fmt.Errorf("create partition %s: %w", PartitionName(day), err)
	}
	return nil
}

// DropPartition drops the partition of day, if it exists. Run it after
// LockPartitionDDL, in the same transaction.
func (*Queries) DropPartition(ctx context.Context, db DBTX, day time.Time) error {
	_, err := db.Exec(ctx, "DROP TABLE IF EXISTS usage."+PartitionName(day))
	return err
}

// PartitionDays returns the days that have a partition, oldest first.
func (q *Queries) PartitionDays(ctx context.Context, db DBTX) ([]time.Time, error) {
	names, err := q.EventPartitions(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	var days []time.Time
	for _, n := range names {
		d, err := time.Parse("20060102", strings.TrimPrefix(n, PartitionPrefix))
		if err == nil && strings.HasPrefix(n, PartitionPrefix) {
			days = append(days, d)
		}
	}
	slices.SortFunc(days, time.Time.Compare)
	return days, nil
}
