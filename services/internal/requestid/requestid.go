// Package requestid carries one request id from the gateway through every
// service a request touches, so the logs of all processes can be joined.
//
// The gateway sets the gRPC metadata key MetadataKey (from the client's
// X-Request-Id header, or a fresh id); the server interceptor puts it in the
// context; clients created with the platform's dial options forward it.
package requestid

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"google.golang.org/grpc/metadata"
)

// MetadataKey is the gRPC metadata key (lower case, as gRPC requires) and,
// spelled X-Request-Id, the HTTP header the gateway reads and echoes.
const MetadataKey = "x-request-id"

// maxLen bounds ids accepted from outside so a client cannot blow up logs.
const maxLen = 128

type ctxKey struct{}

// New returns a fresh random id (128 bits, hex).
func New() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// With returns ctx carrying id.
func With(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// From returns the request id in ctx, or "".
func From(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// FromIncoming returns the id sent by the caller in gRPC metadata, if it is
// acceptable (printable ASCII, bounded length), else a fresh one.
func FromIncoming(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(MetadataKey); len(v) > 0 && Valid(v[0]) {
			return v[0]
		}
	}
	return New()
}

// Valid reports whether id may be used as is.
func Valid(id string) bool {
	if id == "" || len(id) > maxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// Outgoing returns ctx with the id of ctx appended to the outgoing metadata,
// for calls from one service to another.
func Outgoing(ctx context.Context) context.Context {
	if id := From(ctx); id != "" {
		return metadata.AppendToOutgoingContext(ctx, MetadataKey, id)
	}
	return ctx
}
