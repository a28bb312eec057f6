//! What a room listing reads of `messages`: a room's newest position and a member's unread count. Each is an SQL
//! expression the auth API's room query embeds, so a listing of 500 rooms is one query; both are index range scans
//! on `messages (room_id, position)`. And how many different emoji a message's reactions have, asked before a
//! reaction is added.

use sqlx::PgPool;

/// Unread counts stop here (a client shows "999+"): counting further would cost a scan per room and listing.
pub const UNREAD_MAX: i64 = 1000;

/// The newest position in the room whose id the SQL expression `room` gives, 0 when it has none.
pub fn last_position(room: &str) -> String {
    format!("(SELECT coalesce(max(msg.position), 0) FROM messages msg WHERE msg.room_id = {room})")
}

/// How many messages not by `user` follow position `after` in `room` (each an SQL expression): only messages, not
/// the changes to them (edits, deletions, reactions), among the [`UNREAD_MAX`] events after `after` whoever wrote
/// them, so the cost is bounded.
pub fn unread(room: &str, after: &str, user: &str) -> String {
    format!(
        "(SELECT count(*) FILTER (WHERE n.user_id <> {user} AND n.kind = 'message') \
         FROM (SELECT msg.user_id, msg.kind FROM messages msg WHERE msg.room_id = {room} AND msg.position > {after} \
         ORDER BY msg.position LIMIT {UNREAD_MAX}) n)"
    )
}

/// How many messages mentioning `user` (a user id, as text) follow position `after` in `room` (each an SQL
/// expression), among the same [`UNREAD_MAX`] events [`unread`] counts in, so the cost is bounded the same way.
pub fn unread_mentions(room: &str, after: &str, user: &str) -> String {
    format!(
        "(SELECT count(*) FILTER (WHERE n.kind = 'message' AND n.deleted_at IS NULL \
           AND n.mentions @> jsonb_build_array(jsonb_build_object('id', {user}))) \
         FROM (SELECT msg.kind, msg.mentions, msg.deleted_at FROM messages msg \
           WHERE msg.room_id = {room} AND msg.position > {after} ORDER BY msg.position LIMIT {UNREAD_MAX}) n)"
    )
}

/// How many different emoji the message at `target` in `room` carries as reactions now, and whether `emoji` is one
/// of them: a range of the `reactions` primary key.
pub async fn reaction_emoji(db: &PgPool, room: &str, target: u64, emoji: &str) -> Result<(usize, bool), sqlx::Error> {
    let target = i64::try_from(target).unwrap_or(i64::MAX);
    let (distinct, has): (i64, bool) = sqlx::query_as(
        "SELECT count(DISTINCT emoji), coalesce(bool_or(emoji = $3), false) FROM reactions \
         WHERE room_id = $1 AND target = $2 AND present",
    )
    .bind(room)
    .bind(target)
    .bind(emoji)
    .fetch_one(db)
    .await?;
    Ok((usize::try_from(distinct).unwrap_or(0), has))
}
