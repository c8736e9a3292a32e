package team

import (
	"time"

	"github.com/tokenmanager/tokenmanager/services/internal/app"
	"github.com/tokenmanager/tokenmanager/services/internal/auth"
	"github.com/tokenmanager/tokenmanager/services/internal/config"
)

// Config is the team service's configuration.
type Config struct {
	app.Common
	// BootstrapAdminKey (TM_BOOTSTRAP_ADMIN_KEY) is seeded at start-up as a
	// global-admin admin key, so a fresh stack can be driven without Clerk.
	BootstrapAdminKey config.Secret
	// UserCacheTTL (TM_USER_CACHE_TTL, default 10m) is how long a Clerk
	// profile (e-mail, name) is reused before it is fetched again.
	UserCacheTTL time.Duration
	// InvitationRedirectURL (TM_INVITATION_REDIRECT_URL, default none) is
	// where Clerk's invitation e-mail sends the invitee: the dashboard.
	InvitationRedirectURL string
}

// LoadConfig reads the team service's configuration.
func LoadConfig(l *config.Loader) Config {
	c := Config{
		Common:                app.LoadCommon(l, app.Team, true),
		BootstrapAdminKey:     l.Secret("TM_BOOTSTRAP_ADMIN_KEY"),
		UserCacheTTL:          l.Duration("TM_USER_CACHE_TTL", 10*time.Minute),
		InvitationRedirectURL: l.URL("TM_INVITATION_REDIRECT_URL", "", "https", "http"),
	}
	if k := c.BootstrapAdminKey.Reveal(); k != "" && !auth.ParseAdminKey(k) {
		l.Problem("TM_BOOTSTRAP_ADMIN_KEY", "is not a valid admin key (tmak_ + 32 base62 + 6-character checksum; generate one with: tmctl admin-key new)")
	}
	return c
}
