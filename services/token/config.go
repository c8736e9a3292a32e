package token

import (
	"encoding/base64"
	"strings"

	"github.com/tokenmanager/tokenmanager/services/internal/app"
	"github.com/tokenmanager/tokenmanager/services/internal/config"
)

// Config is the token service's configuration.
type Config struct {
	app.Common
	Cloudflare app.CloudflareConfig
	// EncryptionKey (TOKEN_ENCRYPTION_KEY) encrypts tokens for reveal. It is
	// required: v2.7 silently used a throw-away key when it was missing, and
	// every reveal failed afterwards.
	EncryptionKey config.Secret
}

// LoadConfig reads the token service's configuration.
func LoadConfig(l *config.Loader) Config {
	c := Config{
		Common:        app.LoadCommon(l, app.Token, true),
		Cloudflare:    app.LoadCloudflare(l),
		EncryptionKey: l.RequiredSecret("TOKEN_ENCRYPTION_KEY", 1),
	}
	if k := c.EncryptionKey.Reveal(); k != "" && !validKey(k) {
		l.Problem("TOKEN_ENCRYPTION_KEY", "must be 32 bytes in URL-safe base64 (a Fernet key, as v2.7 used)")
	}
	return c
}

// validKey accepts a Fernet-style key: 32 bytes, URL-safe base64, padded or not.
func validKey(k string) bool {
	b, err := base64.URLEncoding.DecodeString(k)
	if err != nil {
		b, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(k, "="))
	}
	return err == nil && len(b) == 32
}
