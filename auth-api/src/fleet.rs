//! The auth API's side of the gateway fleet, over NATS: answering gateways' room-access checks, and following
//! gateway heartbeats to hand clients the least-loaded gateway.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use natter_proto::bus::{
    GATEWAY_TTL, GatewayInfo, MAX_MEMBERS_ASKED, MembersRequest, MentionRequest, RoomAccess, RoomAccessRequest,
};
use natter_proto::frame::UserRef;
use natter_proto::subject;
use sqlx::PgPool;
use uuid::Uuid;

/// Queue group of the access responders: each check is answered by one auth-api instance.
const QUEUE_GROUP: &str = "natter-auth-api";

/// Answers room-access checks until the subscription ends.
pub async fn answer_room_access(nats: async_nats::Client, db: PgPool) {
    let mut requests = match nats.queue_subscribe(subject::room_access(), QUEUE_GROUP.into()).await {
        Ok(sub) => sub,
        Err(err) => {
            tracing::error!(error = %err, "cannot answer room-access checks; gateways will refuse joins");
            return;
        }
    };
    while let Some(msg) = requests.next().await {
        let (nats, db) = (nats.clone(), db.clone());
        tokio::spawn(async move {
            let Some(reply) = msg.reply else { return };
            let access = match serde_json::from_slice::<RoomAccessRequest>(&msg.payload) {
                Ok(request) => match room_access(&db, &request).await {
                    Ok(access) => access,
                    Err(err) => {
                        // No reply: the gateway times out and tells its client to retry.
                        tracing::warn!(error = %err, "room-access check failed");
                        return;
                    }
                },
                Err(_) => RoomAccess::NotFound,
            };
            if let Ok(payload) = serde_json::to_vec(&access) {
                let _ = nats.publish(reply, payload.into()).await;
            }
        });
    }
}

/// Answers gateways' questions about who a message mentions until the subscription ends.
pub async fn answer_mentions(nats: async_nats::Client, db: PgPool) {
    answer_questions(
        nats,
        db,
        subject::mentions(),
        "mention",
        |db, request: MentionRequest| async move { mentioned_members(&db, &request).await },
    )
    .await;
}

/// Answers gateways' questions about which of a room's connected users are its members (who see its live drafts)
/// until the subscription ends.
pub async fn answer_members(nats: async_nats::Client, db: PgPool) {
    answer_questions(
        nats,
        db,
        subject::members(),
        "members",
        |db, request: MembersRequest| async move { members_among(&db, &request).await },
    )
    .await;
}

/// Answers the questions asked on `subject` (`what` they are about, for the logs) with `answer`, each in a task of
/// its own, until the subscription ends. A question that cannot be read or answered gets no reply: the gateway's
/// question times out.
async fn answer_questions<Q, A, F, Fut>(nats: async_nats::Client, db: PgPool, subject: String, what: &str, answer: F)
where
    Q: serde::de::DeserializeOwned + Send + 'static,
    A: serde::Serialize + Send,
    F: Fn(PgPool, Q) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = Result<A, sqlx::Error>> + Send,
{
    let mut requests = match nats.queue_subscribe(subject, QUEUE_GROUP.into()).await {
        Ok(sub) => sub,
        Err(err) => {
            tracing::error!(error = %err, "cannot answer {what} questions; gateways go without the answers");
            return;
        }
    };
    while let Some(msg) = requests.next().await {
        let (nats, db) = (nats.clone(), db.clone());
        let what = what.to_owned();
        tokio::spawn(async move {
            let Some(reply) = msg.reply else { return };
            let Ok(request) = serde_json::from_slice::<Q>(&msg.payload) else {
                return;
            };
            match answer(db, request).await {
                Ok(answered) => {
                    if let Ok(payload) = serde_json::to_vec(&answered) {
                        let _ = nats.publish(reply, payload.into()).await;
                    }
                }
                Err(err) => tracing::warn!(error = %err, "{what} question failed"),
            }
        });
    }
}

/// Which of `request.users` are members of `request.room` (at most [`MAX_MEMBERS_ASKED`] looked at; an id that is
/// not a UUID is no one's).
pub async fn members_among(db: &PgPool, request: &MembersRequest) -> Result<Vec<String>, sqlx::Error> {
    let users: Vec<Uuid> = request
        .users
        .iter()
        .take(MAX_MEMBERS_ASKED)
        .filter_map(|user| Uuid::parse_str(user).ok())
        .collect();
    let members: Vec<Uuid> =
        sqlx::query_scalar("SELECT user_id FROM memberships WHERE room_id = $1 AND user_id = ANY($2)")
            .bind(request.room.as_str())
            .bind(&users)
            .fetch_all(db)
            .await?;
    Ok(members.iter().map(Uuid::to_string).collect())
}

/// Which of the names a message in `request.room` mentions are the room's members, in the order mentioned.
pub async fn mentioned_members(db: &PgPool, request: &MentionRequest) -> Result<Vec<UserRef>, sqlx::Error> {
    let keys: Vec<String> = request
        .names
        .iter()
        .take(natter_proto::text::MAX_MENTIONS)
        .map(|name| name.to_ascii_lowercase())
        .collect();
    let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT u.id, u.username, u.username_key FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.room_id = $1 AND u.username_key = ANY($2)",
    )
    .bind(request.room.as_str())
    .bind(&keys)
    .fetch_all(db)
    .await?;
    Ok(keys
        .iter()
        .filter_map(|key| rows.iter().find(|(_, _, k)| k == key))
        .map(|(id, name, _)| UserRef {
            id: id.to_string(),
            name: name.clone(),
        })
        .collect())
}

/// What a room-access answer is made of.
#[derive(sqlx::FromRow)]
struct AccessRow {
    private: bool,
    member: bool,
    moderates: bool,
    banned: bool,
    bans_anyone: bool,
    blocked: bool,
}

/// Public rooms are open to every user but those banned from them; private rooms (conversations too) to their
/// members, but a direct conversation to neither of its two people while one blocks the other.
pub async fn room_access(db: &PgPool, request: &RoomAccessRequest) -> Result<RoomAccess, sqlx::Error> {
    let Ok(user) = Uuid::parse_str(&request.user) else {
        return Ok(RoomAccess::Denied);
    };
    let row: Option<AccessRow> = sqlx::query_as(
        "SELECT r.private, m.user_id IS NOT NULL AS member, \
           coalesce(m.role IN ('owner', 'moderator'), false) AS moderates, \
           EXISTS (SELECT 1 FROM room_bans b WHERE b.room_id = r.id AND b.user_id = $2) AS banned, \
           EXISTS (SELECT 1 FROM room_bans b WHERE b.room_id = r.id) AS bans_anyone, \
           r.kind = 'direct' AND EXISTS (SELECT 1 FROM blocks k WHERE \
             (k.blocker = r.direct_low AND k.blocked = r.direct_high) \
             OR (k.blocker = r.direct_high AND k.blocked = r.direct_low)) AS blocked \
         FROM rooms r LEFT JOIN memberships m ON m.room_id = r.id AND m.user_id = $2 WHERE r.id = $1",
    )
    .bind(request.room.as_str())
    .bind(user)
    .fetch_optional(db)
    .await?;
    let access = match row {
        None => RoomAccess::NotFound,
        Some(row) if row.banned => RoomAccess::Banned,
        Some(row) if row.moderates && request.owner => RoomAccess::Owner,
        // A public room with bans is not the same for everyone: answered per user, never for the whole room.
        Some(row) if !row.private && row.bans_anyone => RoomAccess::Allowed,
        Some(row) if !row.private => RoomAccess::Public,
        Some(row) if row.member && row.blocked => RoomAccess::Blocked,
        Some(row) if row.member => RoomAccess::Allowed,
        Some(_) => RoomAccess::Denied,
    };
    if let Some(reaction) = &request.reaction
        && matches!(access, RoomAccess::Public | RoomAccess::Allowed | RoomAccess::Owner)
    {
        let (distinct, has) =
            natter_history::counts::reaction_emoji(db, request.room.as_str(), reaction.target, &reaction.emoji).await?;
        if !has && distinct >= natter_proto::text::MAX_REACTION_EMOJI {
            return Ok(RoomAccess::TooManyReactions);
        }
    }
    Ok(access)
}

/// Gateways heard from recently, by id, with when; and the origins of every gateway heard since start.
#[derive(Clone, Default)]
pub struct GatewayTable {
    /// The URLs a gateway may name (`*`: any run of characters other than `/`); empty: any.
    allowed: Arc<Vec<String>>,
    /// URLs refused, each logged once.
    refused: Arc<Mutex<std::collections::HashSet<String>>>,
    seen: Arc<Mutex<HashMap<String, (GatewayInfo, Instant)>>>,
    /// The origins (`wss://host:port`) of the gateways heard, the most recently heard last, at most
    /// [`MAX_ORIGINS`].
    origins: Arc<Mutex<VecDeque<String>>>,
}

/// Most gateway origins remembered for the page's Content-Security-Policy.
pub const MAX_ORIGINS: usize = 64;

/// The origin of a gateway's WebSocket URL (`wss://gw1.example/ws` → `wss://gw1.example`), fit to be a CSP source:
/// `None` for anything but a `ws:` or `wss:` URL with a plain host (letters, digits, `.`, `-`, an IPv6 address in
/// brackets) and an optional port.
pub fn ws_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "ws" && scheme != "wss" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if authority.is_empty() || !authority.chars().all(plain) || authority.starts_with(':') {
        return None;
    }
    Some(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

/// Whether `url` matches `pattern`, where `*` stands for any run of characters other than `/`; compared without
/// case, as hosts are.
pub fn url_matches(pattern: &str, url: &str) -> bool {
    fn matches(p: &[u8], u: &[u8]) -> bool {
        match p.split_first() {
            None => u.is_empty(),
            Some((b'*', rest)) => (0..=u.len())
                .take_while(|&i| i == 0 || u[i - 1] != b'/')
                .any(|i| matches(rest, &u[i..])),
            Some((c, rest)) => u.first().is_some_and(|b| b.eq_ignore_ascii_case(c)) && matches(rest, &u[1..]),
        }
    }
    matches(pattern.as_bytes(), url.as_bytes())
}

impl GatewayTable {
    /// A table that accepts heartbeats only of gateways whose URL matches one of `patterns` (any when empty).
    pub fn new(patterns: Vec<String>) -> Self {
        if patterns.is_empty() {
            tracing::warn!(
                "--gateway-url-patterns is not set: GET /api/gateway hands out whatever URL a heartbeat on NATS names"
            );
        }
        Self {
            allowed: Arc::new(patterns),
            ..Self::default()
        }
    }

    /// The live, non-draining gateway with the fewest connections, passing over those in `avoid` (gateways a
    /// client just lost, whose heartbeats may not have expired yet) unless no other is left.
    pub fn least_loaded(&self, avoid: &[&str]) -> Option<GatewayInfo> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|_, (_, at)| at.elapsed() < GATEWAY_TTL);
        let live = || seen.values().map(|(info, _)| info).filter(|info| !info.draining);
        live()
            .filter(|info| !avoid.contains(&info.id.as_str()))
            .min_by_key(|info| info.connections)
            .or_else(|| live().min_by_key(|info| info.connections))
            .cloned()
    }

    /// Follows the heartbeats until the subscription ends.
    pub async fn follow(self, nats: async_nats::Client) {
        let mut beats = match nats.subscribe(subject::gateway_heartbeat()).await {
            Ok(sub) => sub,
            Err(err) => {
                tracing::error!(error = %err, "cannot follow gateway heartbeats; no gateway will be assigned");
                return;
            }
        };
        while let Some(msg) = beats.next().await {
            if let Ok(info) = serde_json::from_slice::<GatewayInfo>(&msg.payload) {
                self.record(info);
            }
        }
    }

    /// Notes a gateway's heartbeat; one naming a URL outside the allowed patterns is counted and dropped.
    pub fn record(&self, info: GatewayInfo) {
        if !self.allowed.is_empty() && !self.allowed.iter().any(|p| url_matches(p, &info.url)) {
            metrics::counter!(crate::metrics::GATEWAY_HEARTBEATS_REFUSED).increment(1);
            let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
            if refused.len() < 1024 && refused.insert(info.url.clone()) {
                tracing::warn!(gateway = %info.id, url = %info.url,
                    "a heartbeat names a gateway URL outside --gateway-url-patterns; it is not handed out");
            }
            return;
        }
        match ws_origin(&info.url) {
            Some(origin) => {
                let mut origins = self.origins.lock().unwrap_or_else(|p| p.into_inner());
                if origins.back() != Some(&origin) {
                    origins.retain(|known| *known != origin);
                    origins.push_back(origin);
                    if origins.len() > MAX_ORIGINS {
                        origins.pop_front();
                    }
                }
            }
            None => tracing::warn!(gateway = %info.id, url = %info.url,
                "a gateway's URL is not a plain ws: or wss: URL; browsers are not allowed to connect to it"),
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.insert(info.id.clone(), (info, Instant::now()));
    }

    /// The origins of every gateway heard since start (the [`MAX_ORIGINS`] most recently heard), for the page's
    /// `connect-src`.
    pub fn origins(&self) -> Vec<String> {
        let origins = self.origins.lock().unwrap_or_else(|p| p.into_inner());
        origins.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_origins_are_plain_and_remembered_once_each() {
        assert_eq!(ws_origin("wss://GW1.example/ws").as_deref(), Some("wss://gw1.example"));
        assert_eq!(
            ws_origin("ws://127.0.0.1:9000/ws?x=1").as_deref(),
            Some("ws://127.0.0.1:9000")
        );
        assert_eq!(ws_origin("ws://[::1]:9000/ws").as_deref(), Some("ws://[::1]:9000"));
        for bad in [
            "https://gw.example/ws",
            "ws://",
            "ws://user@gw.example/ws",
            "ws://gw.example; script-src *",
            "ws://gw example/ws",
            "ws://*.example/ws",
            "gw.example",
            "ws://:9000/ws",
        ] {
            assert_eq!(ws_origin(bad), None, "{bad}");
        }
        let table = GatewayTable::default();
        beat(&table, "a", 0, false);
        beat(&table, "b", 0, false);
        beat(&table, "a", 1, false);
        assert_eq!(table.origins(), vec!["ws://b".to_owned(), "ws://a".to_owned()]);
        for i in 0..100 {
            beat(&table, &format!("g{i}"), 0, false);
        }
        assert_eq!(table.origins().len(), MAX_ORIGINS);
        assert_eq!(table.origins().last().map(String::as_str), Some("ws://g99"));
    }

    #[test]
    fn only_gateways_whose_url_matches_a_pattern_are_handed_out() {
        for (pattern, url, matches) in [
            ("wss://gw-*.chat.example/ws", "wss://gw-1.chat.example/ws", true),
            ("wss://gw-*.chat.example/ws", "WSS://GW-2.Chat.Example/ws", true),
            (
                "wss://gw-*.chat.example/ws",
                "wss://gw-1.evil.example/ws?.chat.example/ws",
                false,
            ),
            ("wss://gw-*.chat.example/ws", "wss://gw-1.chat.example.evil/ws", false),
            ("wss://gw-*.chat.example/ws", "wss://gw-/x.chat.example/ws", false),
            ("ws://127.0.0.1:*/ws", "ws://127.0.0.1:9001/ws", true),
            ("ws://127.0.0.1:*/ws", "ws://127.0.0.1:9001/ws/more", false),
            ("ws://127.0.0.1:*/ws", "ws://127.0.0.2:9001/ws", false),
        ] {
            assert_eq!(url_matches(pattern, url), matches, "{pattern} ~ {url}");
        }
        let table = GatewayTable::new(vec!["ws://good-*/ws".into()]);
        beat(&table, "good-1", 5, false);
        beat(&table, "evil", 0, false);
        assert_eq!(table.least_loaded(&[]).map(|g| g.id), Some("good-1".to_owned()));
        assert_eq!(table.origins(), vec!["ws://good-1".to_owned()]);
    }

    fn beat(table: &GatewayTable, id: &str, connections: u64, draining: bool) {
        table.record(GatewayInfo {
            id: id.into(),
            url: format!("ws://{id}/ws"),
            connections,
            draining,
            instance: String::new(),
        });
    }

    #[test]
    fn assigns_the_least_loaded_live_gateway_passing_over_avoided_ones() {
        let table = GatewayTable::default();
        assert!(table.least_loaded(&[]).is_none(), "no gateway heard from");
        beat(&table, "a", 5, false);
        beat(&table, "b", 9, false);
        beat(&table, "c", 1, true);
        let pick = |avoid: &[&str]| table.least_loaded(avoid).map(|g| g.id);
        assert_eq!(pick(&[]).as_deref(), Some("a"), "draining gateways are never assigned");
        assert_eq!(
            pick(&["a"]).as_deref(),
            Some("b"),
            "a gateway the client lost is passed over"
        );
        assert_eq!(
            pick(&["a", "b"]).as_deref(),
            Some("a"),
            "when every live gateway is avoided, the least loaded is still better than none"
        );
        assert_eq!(pick(&["zzz"]).as_deref(), Some("a"), "unknown ids change nothing");
    }
}
