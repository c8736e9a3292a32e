package usage

import (
	"time"

	"github.com/tokenmanager/tokenmanager/services/internal/app"
	"github.com/tokenmanager/tokenmanager/services/internal/config"
)

// Config is the usage service's configuration.
type Config struct {
	app.Common
	Ingest IngestConfig
	// RetentionDays (USAGE_RETENTION_DAYS, default 90): raw events and
	// rollups older than this many days are dropped.
	RetentionDays int
	// PartitionsAhead (USAGE_PARTITIONS_AHEAD, default 7): daily partitions
	// kept created ahead of today.
	PartitionsAhead int
	// LastUsedInterval (USAGE_LAST_USED_INTERVAL, default 1s): how often the
	// newest use per token is sent to the token service.
	LastUsedInterval time.Duration
}

// IngestConfig is how POST /api/usage-log authenticates the Worker.
type IngestConfig struct {
	// Secret (USAGE_INGEST_SECRET) signs requests; PreviousSecret
	// (USAGE_INGEST_SECRET_PREVIOUS) is still accepted during a rotation.
	Secret, PreviousSecret config.Secret
	// AllowUnsigned (USAGE_ALLOW_UNSIGNED, default false) accepts v2.7's
	// unsigned posts, for token hashes that exist only.
	AllowUnsigned bool
}

// minSecretLen is the shortest ingest secret accepted (HMAC-SHA256 keys
// shorter than this are guessable).
const minSecretLen = 32

// LoadConfig reads the usage service's configuration.
func LoadConfig(l *config.Loader) Config {
	c := Config{
		Common: app.LoadCommon(l, app.Usage, true),
		Ingest: IngestConfig{
			Secret:         l.Secret("USAGE_INGEST_SECRET"),
			PreviousSecret: l.Secret("USAGE_INGEST_SECRET_PREVIOUS"),
			AllowUnsigned:  l.Bool("USAGE_ALLOW_UNSIGNED", false),
		},
		RetentionDays:    l.Int("USAGE_RETENTION_DAYS", 90, 1, 3650),
		PartitionsAhead:  l.Int("USAGE_PARTITIONS_AHEAD", 7, 1, 60),
		LastUsedInterval: l.Duration("USAGE_LAST_USED_INTERVAL", time.Second),
	}
	for _, s := range []struct {
		name  string
		value config.Secret
	}{{"USAGE_INGEST_SECRET", c.Ingest.Secret}, {"USAGE_INGEST_SECRET_PREVIOUS", c.Ingest.PreviousSecret}} {
		if v := s.value.Reveal(); v != "" && len(v) < minSecretLen {
			l.Problem(s.name, "must be at least %d characters long", minSecretLen)
		}
	}
	if c.Ingest.PreviousSecret.Reveal() != "" && c.Ingest.Secret.Reveal() == "" {
		l.Problem("USAGE_INGEST_SECRET_PREVIOUS", "set only together with USAGE_INGEST_SECRET")
	}
	if c.LastUsedInterval < 100*time.Millisecond {
		l.Problem("USAGE_LAST_USED_INTERVAL", "must be at least 100ms")
	}
	return c
}
