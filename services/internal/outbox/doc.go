// Package outbox implements the transactional outbox: a service that changes
// its data and must tell someone else about it (push the new state to
// Cloudflare KV, record an audit event) writes the message into an outbox
// table in the same transaction as the change, and a Relay delivers it
// afterwards. The message exists if and only if the change committed, and it
// is retried until delivered, so nothing is lost when the receiver or the
// process fails.
//
// Each service schema owns its table, created by one of the service's own
// migrations (see TableSQL and table.sql). Enqueue writes rows and wakes
// relays with NOTIFY; Relay.Run listens for those notifications (and polls
// as a fallback), hands due rows to a Handler, deletes delivered rows and
// schedules failed ones again with exponential backoff.
//
// Delivery is at least once: a relay that dies between the handler's
// success and its commit delivers the message again later, so handlers must
// be idempotent. Several relays may run on one schema; a row is handed to
// one relay at a time. Messages with the same topic and non-empty key are
// handed out one at a time in id order, so a failing older message holds
// back newer ones for its key (an old "put" cannot overwrite a newer
// "delete"). Ids follow commit order when writers lock the row they change
// before enqueueing, as an UPDATE does.
package outbox
