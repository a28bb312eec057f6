//! The WebSocket close codes of wire protocol v1: what each means to a client (docs/protocol.md, "Closing").

/// Normal closure.
pub const NORMAL: u16 = 1000;
/// The client broke the WebSocket protocol itself (an unmasked frame, a bad opcode, fragments out of order).
pub const PROTOCOL_ERROR: u16 = 1002;
/// A text message that is not UTF-8.
pub const INVALID_DATA: u16 = 1007;
/// The client kept sending invalid frames.
pub const POLICY: u16 = 1008;
/// A message larger than the gateway's maximum, counted over all of its fragments.
pub const TOO_BIG: u16 = 1009;
/// The gateway lost what it needs (NATS) for the connection's rooms.
pub const UNAVAILABLE: u16 = 1011;
/// The gateway is draining (restart or scale-in): reconnect, preferably to another gateway.
pub const RESTART: u16 = 1012;
/// The access token expired and was not replaced with `refresh` in time.
pub const TOKEN_EXPIRED: u16 = 4001;
/// The session was revoked (logout, or a refresh token used twice): log in again rather than reconnect.
pub const SESSION_REVOKED: u16 = 4003;
/// The client did not read fast enough: its outbound queue overflowed.
pub const SLOW_CONSUMER: u16 = 4008;
/// Nothing received (not even a pong to the gateway's pings) for the idle timeout.
pub const IDLE: u16 = 4009;

/// Whether a client should reconnect after this close (all but a client's own protocol faults and a revoked
/// session).
pub fn reconnect_after(code: u16) -> bool {
    !matches!(code, PROTOCOL_ERROR | INVALID_DATA | POLICY | TOO_BIG | SESSION_REVOKED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_reconnect_after_all_but_their_own_faults() {
        for code in [NORMAL, UNAVAILABLE, RESTART, TOKEN_EXPIRED, SLOW_CONSUMER, IDLE] {
            assert!(reconnect_after(code), "{code}");
        }
        for code in [PROTOCOL_ERROR, INVALID_DATA, POLICY, TOO_BIG, SESSION_REVOKED] {
            assert!(!reconnect_after(code), "{code}");
        }
    }
}
