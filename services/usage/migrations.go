package usage

import (
	"embed"

	"github.com/tokenmanager/tokenmanager/services/internal/migrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations is the usage schema's numbered migrations, applied by "tmctl migrate".
var Migrations = migrate.Set{Schema: "usage", FS: migrations, Dir: "migrations"}
