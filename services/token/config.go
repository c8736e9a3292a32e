package token

import (
	"time"

	"github.com/tokenmanager/tokenmanager/services/internal/app"
	"github.com/tokenmanager/tokenmanager/services/internal/config"
	"github.com/tokenmanager/tokenmanager/services/token/keyring"
)

// Config is the token service's configuration.
type Config struct {
	app.Common
	Cloudflare app.CloudflareConfig
	// EncryptionKey (TOKEN_ENCRYPTION_KEY) encrypts tokens for reveal. It is
	// required: v2.7 silently used a throw-away key when it was missing, and
	// every reveal failed afterwards. It is also the Fernet key of v2.7's
	// ciphertexts, and ring key "k1" unless EncryptionKeys defines k1.
	EncryptionKey config.Secret
	// EncryptionKeys (TOKEN_ENCRYPTION_KEYS, optional) is a key ring
	// "id:key,id:key"; the first seals new values, all open.
	EncryptionKeys config.Secret
	// KVReconcileInterval (TM_KV_RECONCILE_INTERVAL) is how often KV is
	// compared with PostgreSQL (also once at start-up).
	KVReconcileInterval time.Duration
	// KVRateLimit (TM_KV_RATE_LIMIT) bounds Cloudflare API calls per second.
	KVRateLimit int
	// KVMaxBackoff (TM_KV_RETRY_MAX_BACKOFF) caps the wait between retries of a KV change.
	KVMaxBackoff time.Duration
	// ExpirySweepInterval (TM_TOKEN_EXPIRY_SWEEP_INTERVAL) is how often expired
	// tokens and ended grace periods are removed from KV.
	ExpirySweepInterval time.Duration
}

// LoadConfig reads the token service's configuration.
func LoadConfig(l *config.Loader) Config {
	c := Config{
		Common:              app.LoadCommon(l, app.Token, true),
		Cloudflare:          app.LoadCloudflare(l),
		EncryptionKey:       l.RequiredSecret("TOKEN_ENCRYPTION_KEY", 1),
		EncryptionKeys:      l.Secret("TOKEN_ENCRYPTION_KEYS"),
		KVReconcileInterval: l.Duration("TM_KV_RECONCILE_INTERVAL", 5*time.Minute),
		KVRateLimit:         l.Int("TM_KV_RATE_LIMIT", 4, 1, 1000),
		KVMaxBackoff:        l.Duration("TM_KV_RETRY_MAX_BACKOFF", 30*time.Second),
		ExpirySweepInterval: l.Duration("TM_TOKEN_EXPIRY_SWEEP_INTERVAL", 30*time.Second),
	}
	if k := c.EncryptionKey.Reveal(); k != "" && !validKey(k) {
		l.Problem("TOKEN_ENCRYPTION_KEY", "must be 32 bytes in URL-safe base64 (a Fernet key, as v2.7 used)")
	}
	if k := c.EncryptionKeys.Reveal(); k != "" {
		if _, err := keyring.ParseKeyList(k); err != nil {
			l.Problem("TOKEN_ENCRYPTION_KEYS", "%s", err.Error())
		}
	}
	for name, d := range map[string]time.Duration{"TM_KV_RECONCILE_INTERVAL": c.KVReconcileInterval,
		"TM_KV_RETRY_MAX_BACKOFF": c.KVMaxBackoff, "TM_TOKEN_EXPIRY_SWEEP_INTERVAL": c.ExpirySweepInterval} {
		if d <= 0 {
			l.Problem(name, "must be positive")
		}
	}
	return c
}

// Ring builds the key ring of c.
func (c Config) Ring() (*keyring.Ring, error) {
	legacy := c.EncryptionKey.Reveal()
	keys := []keyring.Key{{ID: keyring.DefaultKeyID, Fernet: legacy}}
	if k := c.EncryptionKeys.Reveal(); k != "" {
		ring, err := keyring.ParseKeyList(k)
		if err != nil {
			return nil, err
		}
		keys = ring
		hasDefault := false
		for _, k := range ring {
			hasDefault = hasDefault || k.ID == keyring.DefaultKeyID
		}
		if !hasDefault {
			keys = append(keys, keyring.Key{ID: keyring.DefaultKeyID, Fernet: legacy})
		}
	}
	return keyring.New(legacy, keys)
}

// validKey accepts a Fernet-style key: 32 bytes, URL-safe base64, padded or not.
func validKey(k string) bool {
	_, err := keyring.DecodeKey(k)
	return err == nil
}
