// Command audit runs Token Manager's audit service (gRPC).
package main

import (
	"log/slog"

	"github.com/tokenmanager/tokenmanager/services/audit"
	"github.com/tokenmanager/tokenmanager/services/internal/app"
)

func main() {
	app.Main("audit", audit.LoadConfig, func(c audit.Config) slog.Level { return c.LogLevel }, audit.Run)
}
