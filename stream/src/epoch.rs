//! Stream epochs and history positions.
//!
//! A stream's sequences start again at 1 when it is deleted and recreated (an operator's mistake, a new NATS
//! cluster, a restore), while the history in PostgreSQL is kept. Each incarnation of the chat stream is an
//! **epoch**, named by its creation time in Unix microseconds (JetStream keeps it with the stream). A stored
//! message's **position** is its epoch plus its sequence in that stream: the one number clients see as `seq`,
//! increasing across epochs, so a later epoch's messages always come after an earlier one's. That holds while no
//! epoch stores more than one message per microsecond of its life on average (a million a second, sustained from
//! its creation), far beyond what one stream takes. Positions stay below 2^53 (exact in JavaScript) until 2255.
//!
//! Position 0 means "none" (a room with no message, a first message's predecessor) in every epoch.

use async_nats::jetstream::stream;

/// The epoch of a stream whose info is `info`: its creation time in Unix microseconds.
pub fn of(info: &stream::Info) -> u64 {
    u64::try_from(info.created.unix_timestamp_nanos() / 1000).unwrap_or(0)
}

/// The position of the message with stream sequence `seq` in epoch `epoch` (0 stays 0: none).
pub fn position(epoch: u64, seq: u64) -> u64 {
    if seq == 0 { 0 } else { epoch.saturating_add(seq) }
}

/// The stream sequence in epoch `epoch` of `position`, or `None` when the position is from an earlier epoch
/// (0, none, is sequence 0 of any epoch).
pub fn sequence(epoch: u64, position: u64) -> Option<u64> {
    match position {
        0 => Some(0),
        p if p > epoch => Some(p - epoch),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_grow_across_epochs_and_earlier_ones_are_told_apart() {
        let (old, new) = (1_780_000_000_000_000, 1_780_000_060_000_000);
        // A minute of a million messages a second in the old epoch still comes before the new one's first.
        assert!(position(old, 59_999_999) < position(new, 1));
        assert_eq!(sequence(new, position(new, 42)), Some(42));
        assert_eq!(sequence(new, position(old, 42)), None);
        assert_eq!((position(new, 0), sequence(new, 0)), (0, Some(0)));
        assert!(position(u64::MAX, 5) == u64::MAX, "saturates rather than wraps");
    }
}
