// Package auth authenticates every incoming RPC and says who the caller is.
//
// No service trusts the gateway (or any other caller) to have checked a
// credential: each service runs the Authenticator's interceptor, which reads
// "authorization: Bearer <credential>" from the gRPC metadata and accepts
// three kinds of credential:
//
//   - a Clerk session JWT (people using the dashboard), verified against
//     Clerk's JWKS by ClerkVerifier and then resolved to a Principal with
//     the user's roles;
//   - an admin API key, tmak_…, for machines and internal tools, checked for
//     a well-formed checksum before it is looked up by its SHA-256 hash;
//   - a service credential, tmsvc_…, which one service mints for each call
//     to another with a shared secret, so services never replay a caller's
//     credential.
//
// Roles live in PostgreSQL and are owned by the team service; a Resolver
// (the team service locally, a gRPC client elsewhere) turns an identity into
// a Principal, and CachingResolver keeps that cheap.
package auth
