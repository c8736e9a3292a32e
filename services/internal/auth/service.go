package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/tokenmanager/tokenmanager/services/internal/errs"
)

// A service credential proves that the caller knows TM_SERVICE_SECRET and
// names the calling service. It is minted for every call and expires after
// ServiceCredentialTTL, so one that leaks into a log is soon worthless.
const (
	servicePrefix = "tmsvc_"
	// ServiceCredentialTTL is how long a service credential is accepted.
	ServiceCredentialTTL = 5 * time.Minute
	// serviceClockSkew tolerates clocks of two hosts that disagree a little.
	serviceClockSkew = 30 * time.Second
)

var (
	errServiceCredential = errs.Unauthenticated("invalid service credential")
	errServiceExpired    = errs.Unauthenticated("service credential expired")
)

// ServiceCredential returns a credential for service, valid for
// ServiceCredentialTTL from now:
// tmsvc_<service>.<unix seconds>.<hex HMAC-SHA256(secret, service+"."+ts)>.
func ServiceCredential(secret []byte, service string) string {
	return serviceCredentialAt(secret, service, time.Now())
}

func serviceCredentialAt(secret []byte, service string, at time.Time) string {
	payload := service + "." + strconv.FormatInt(at.Unix(), 10)
	return servicePrefix + payload + "." + hex.EncodeToString(serviceMAC(secret, payload))
}

func serviceMAC(secret []byte, payload string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// verifyServiceCredential returns the service named by cred if cred was
// minted with secret and is still fresh at now.
func verifyServiceCredential(secret []byte, cred string, now time.Time) (string, error) {
	if len(secret) == 0 {
		// An empty key would let anyone mint credentials.
		return "", errServiceCredential
	}
	body, ok := strings.CutPrefix(cred, servicePrefix)
	if !ok {
		return "", errServiceCredential
	}
	i := strings.LastIndexByte(body, '.')
	if i < 0 {
		return "", errServiceCredential
	}
	payload, macHex := body[:i], body[i+1:]
	mac, err := hex.DecodeString(macHex)
	if err != nil || !hmac.Equal(mac, serviceMAC(secret, payload)) {
		return "", errServiceCredential
	}
	j := strings.LastIndexByte(payload, '.')
	if j <= 0 {
		return "", errServiceCredential
	}
	service := payload[:j]
	ts, err := strconv.ParseInt(payload[j+1:], 10, 64)
	if err != nil {
		return "", errServiceCredential
	}
	minted := time.Unix(ts, 0)
	if now.Sub(minted) > ServiceCredentialTTL || minted.Sub(now) > serviceClockSkew {
		return "", errServiceExpired
	}
	return service, nil
}

// ServiceCallCredentials attaches a fresh service credential to every RPC
// made on a client connection (grpc.WithPerRPCCredentials).
type ServiceCallCredentials struct {
	Secret  []byte
	Service string
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (c ServiceCallCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + ServiceCredential(c.Secret, c.Service)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
// Services talk over loopback or the cluster network without TLS; the
// credential is short-lived for that reason.
func (ServiceCallCredentials) RequireTransportSecurity() bool { return false }
