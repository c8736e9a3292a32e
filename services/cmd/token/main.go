// Command token runs Token Manager's token service (gRPC).
package main

import (
	"log/slog"

	"github.com/tokenmanager/tokenmanager/services/internal/app"
	"github.com/tokenmanager/tokenmanager/services/token"
)

func main() {
	app.Main("token", token.LoadConfig, func(c token.Config) slog.Level { return c.LogLevel }, token.Run)
}
