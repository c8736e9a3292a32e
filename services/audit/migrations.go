package audit

import (
	"embed"

	"github.com/tokenmanager/tokenmanager/services/internal/migrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations is the audit schema's numbered migrations, applied by "tmctl migrate".
var Migrations = migrate.Set{Schema: "audit", FS: migrations, Dir: "migrations"}
