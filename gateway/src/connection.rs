//! One client connection, as one task: its reader and session, and its writer, side by side.
//!
//! The session reads and handles the client's messages (and may wait, on a room-access check or a JetStream
//! ack); meanwhile the writer puts out what the outbox holds. Whichever ends first ends the connection: the
//! session on a close or a protocol fault (after which the writer gets the close frame out, briefly), the writer
//! once a close asked for from elsewhere (a drain, a slow consumer, the sweep) is written or the socket failed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use natter_proto::close;
use natter_proto::frame::{ServerFrame, UserRef};
use natter_proto::token::AccessClaims;
use tokio::net::TcpStream;

use crate::metrics;
use crate::outbox::Outbox;
use crate::peer::{Outbound, Peer};
use crate::room::encode;
use crate::session::Session;
use crate::socket::Reader;
use crate::state::{Gateway, Slot};

/// How long a connection ending from its side may take to get its close frame out.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Runs an upgraded connection to its end. `prefix` holds bytes read past the HTTP handshake.
pub async fn serve(gw: Gateway, tcp: TcpStream, prefix: Bytes, claims: AccessClaims, slot: Slot) {
    let _ = tcp.set_nodelay(true);
    let tcp = Arc::new(tcp);
    let conn = slot.conn;
    let user = UserRef {
        id: claims.sub.clone(),
        name: claims.name.clone(),
    };
    let outbox = Outbox::new(tcp.clone(), gw.config.outbound_queue);
    let expires = i64::try_from(claims.exp).unwrap_or(i64::MAX);
    let peer = Peer::new(conn, user.clone(), &claims.sid, outbox, expires);
    gw.register(conn, peer.clone());
    // An upgrade that passed the draining check just before the drain began would otherwise miss it.
    if gw.draining.load(Ordering::Relaxed) {
        peer.close(close::RESTART, "gateway restarting; reconnect");
    }
    // Encoded and dropped here: anything alive at an await below stays in every connection's task for good.
    peer.push(Outbound::Frame(encode(&ServerFrame::Hello {
        conn: conn.to_string(),
        gateway: gw.id.clone(),
        user,
        personal_recovered: false,
    })));

    let mut reader = Reader::new(tcp, &prefix, gw.config.max_message_bytes);
    drop(prefix);
    // The session needs nothing more of the token: its user is the peer's, its expiry the peer's.
    drop(claims);
    let mut session = Session::new(gw.clone(), peer.clone());
    let ended_here = tokio::select! {
        reason = session.run(&mut reader) => Some(reason),
        () = peer.outbox().run() => None,
    };
    // This side closes (the client's own close answered, a protocol fault): the close frame goes out first. A
    // client that went away needs nothing more written.
    if let Some(Some(reason)) = ended_here {
        peer.close(reason.code, &reason.reason);
        peer.outbox().finish(CLOSE_GRACE).await;
    }
    peer.outbox().shut();
    session.leave_all();
    gw.unregister(conn);
    drop(slot);
    let code = peer.close_reason().map_or(close::NORMAL, |r| r.code);
    ::metrics::counter!(metrics::CONNECTIONS_CLOSED, "code" => code.to_string()).increment(1);
}
