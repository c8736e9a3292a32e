package audit

import (
	"github.com/tokenmanager/tokenmanager/services/internal/app"
	"github.com/tokenmanager/tokenmanager/services/internal/config"
)

// Config is the audit service's configuration: the common variables only
// (it calls the team service to resolve callers and the token service for
// the counts of /api/stats).
type Config struct {
	app.Common
}

// LoadConfig reads the audit service's configuration.
func LoadConfig(l *config.Loader) Config {
	return Config{Common: app.LoadCommon(l, app.Audit, true)}
}
