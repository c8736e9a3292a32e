package team

import (
	"embed"

	"github.com/tokenmanager/tokenmanager/services/internal/migrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations is the team schema's numbered migrations, applied by "tmctl migrate".
var Migrations = migrate.Set{Schema: "team", FS: migrations, Dir: "migrations"}
