//! One sweep over every connection of the gateway, each second: the pings that keep connections alive through
//! proxies, the closes of connections silent for too long (4009) or whose token expired unreplaced (4001), and
//! the deepest outbound queue (a metric).
//!
//! One task for the whole gateway instead of a timer per connection: a connection then costs no timer, and an
//! idle one no wake-up at all between pings. Pings are spread over the interval, a slice of the connections each
//! second.

use std::time::Duration;

use bytes::Bytes;
use natter_proto::close;

use crate::frame::{self, OpCode};
use crate::peer::{Outbound, unix_now};
use crate::state::Gateway;

/// How often the sweep runs: the resolution of the idle and token-expiry closes.
const EVERY: Duration = Duration::from_secs(1);

/// Runs the sweep until the task is aborted.
pub async fn run(gw: Gateway) {
    let ping: Bytes = frame::encode(OpCode::Ping, b"");
    let idle = gw.config.idle_timeout.as_secs().max(1);
    let ping_every = gw.config.ping_interval.as_secs().max(1);
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seconds: u64 = 0;
    loop {
        tick.tick().await;
        seconds += 1;
        let now = unix_now();
        // The deepest outbound queue seen this sweep: near the slow-consumer limit, clients are about to be cut.
        let mut deepest = 0;
        for peer in gw.peers() {
            deepest = deepest.max(peer.outbox().queued());
            // Each connection is pinged once per interval, a different second for each: pinging them all at
            // once would have every client answer at once (tens of thousands of pongs), a stall every interval.
            let pinging = ping_due(seconds, peer.conn, ping_every);
            if peer.expires() <= now {
                peer.close(close::TOKEN_EXPIRED, "access token expired; reconnect with a fresh one");
            } else if peer.silent_for(now) >= idle {
                peer.close(close::IDLE, "idle too long");
            } else if pinging {
                peer.push(Outbound::Frame(ping.clone()));
            }
        }
        ::metrics::gauge!(crate::metrics::OUTBOUND_QUEUE_MAX).set(deepest as f64);
    }
}

/// Whether connection `conn` is pinged in sweep `second`: once every `every` seconds, in its own slot.
fn ping_due(second: u64, conn: u64, every: u64) -> bool {
    second.wrapping_add(conn).is_multiple_of(every)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_are_spread_over_the_interval_once_each() {
        let every = 20;
        let conns: Vec<u64> = (1..=10_000).collect();
        let mut pinged = vec![0u32; conns.len()];
        for second in 1..=every {
            let now: Vec<usize> = (0..conns.len())
                .filter(|&i| ping_due(second, conns[i], every))
                .collect();
            // No second pings more than its share.
            assert_eq!(now.len(), conns.len() / every as usize, "second {second}");
            for i in now {
                pinged[i] += 1;
            }
        }
        assert!(pinged.iter().all(|&n| n == 1), "each connection once per interval");
    }
}
