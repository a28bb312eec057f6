//! One sweep over every connection of the gateway, each second: the pings that keep connections alive through
//! proxies, and the closes of connections silent for too long (4009) or whose token expired unreplaced (4001).
//!
//! One task for the whole gateway instead of a timer per connection: a connection then costs no timer, and an
//! idle one no wake-up at all between pings.

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
        let pinging = seconds.is_multiple_of(ping_every);
        for peer in gw.peers() {
            if peer.expires() <= now {
                peer.close(close::TOKEN_EXPIRED, "access token expired; reconnect with a fresh one");
            } else if peer.silent_for(now) >= idle {
                peer.close(close::IDLE, "idle too long");
            } else if pinging {
                peer.push(Outbound::Frame(ping.clone()));
            }
        }
    }
}
