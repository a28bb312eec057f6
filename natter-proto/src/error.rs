//! The codes of the `error` frames a gateway sends: one definition, which the gateway answers with, the harness
//! matches and the web client mirrors (`web/src/natter/errors.ts`). Token refusals have their own codes
//! ([`crate::token::TokenError::code`]).

use serde::{Deserialize, Serialize};

/// Why a frame could not be done: the `code` of a [`crate::frame::ServerFrame::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not JSON or not a frame of the protocol.
    BadFrame,
    /// A binary frame: frames are JSON text.
    BinaryFrame,
    /// Too many frames of this kind too fast.
    RateLimited,
    /// The gateway sheds sends while it is overloaded.
    Overloaded,
    /// The body is empty, too long, or holds what history cannot store.
    InvalidBody,
    /// The room must be joined first.
    NotJoined,
    /// The room is joined already.
    AlreadyJoined,
    /// The connection is in as many rooms as it may be.
    TooManyRooms,
    /// There is no such room.
    RoomNotFound,
    /// The room is private and the user is not a member.
    RoomPrivate,
    /// The user is banned from the room (until its owner or a moderator lifts the ban).
    Banned,
    /// A direct conversation one of whose two people blocked the other: closed to both until unblocked.
    Blocked,
    /// Something the gateway depends on did not answer: retry.
    Unavailable,
    /// The send's outcome is unknown: send it again with the same id.
    PublishFailed,
    /// A refreshed token is of another session.
    TokenWrongSession,
    /// A refreshed token is of another user.
    TokenWrongUser,
    /// The target of an edit, delete, reaction or reply is not a message of this room.
    NotFound,
    /// Only a message's author may edit it, and only its author, the room's owner or a moderator delete it.
    NotAuthor,
    /// The target message was deleted.
    AlreadyDeleted,
    /// A reaction is not one emoji.
    InvalidEmoji,
    /// The message has as many different emoji as it may ([`crate::text::MAX_REACTION_EMOJI`]); add one of them.
    TooManyReactions,
}

impl ErrorCode {
    /// Every code, for tests and documentation.
    pub const ALL: [ErrorCode; 21] = [
        Self::BadFrame,
        Self::BinaryFrame,
        Self::RateLimited,
        Self::Overloaded,
        Self::InvalidBody,
        Self::NotJoined,
        Self::AlreadyJoined,
        Self::TooManyRooms,
        Self::RoomNotFound,
        Self::RoomPrivate,
        Self::Banned,
        Self::Blocked,
        Self::Unavailable,
        Self::PublishFailed,
        Self::TokenWrongSession,
        Self::TokenWrongUser,
        Self::NotFound,
        Self::NotAuthor,
        Self::AlreadyDeleted,
        Self::InvalidEmoji,
        Self::TooManyReactions,
    ];

    /// The code as it is on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadFrame => "bad_frame",
            Self::BinaryFrame => "binary_frame",
            Self::RateLimited => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::InvalidBody => "invalid_body",
            Self::NotJoined => "not_joined",
            Self::AlreadyJoined => "already_joined",
            Self::TooManyRooms => "too_many_rooms",
            Self::RoomNotFound => "room_not_found",
            Self::RoomPrivate => "room_private",
            Self::Banned => "banned",
            Self::Blocked => "blocked",
            Self::Unavailable => "unavailable",
            Self::PublishFailed => "publish_failed",
            Self::TokenWrongSession => "token_wrong_session",
            Self::TokenWrongUser => "token_wrong_user",
            Self::NotFound => "not_found",
            Self::NotAuthor => "not_author",
            Self::AlreadyDeleted => "already_deleted",
            Self::InvalidEmoji => "invalid_emoji",
            Self::TooManyReactions => "too_many_reactions",
        }
    }

    /// The code of a wire string, if it is one.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_is_its_serde_name_and_parses_back() {
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).expect("serializes"), code.as_str());
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::parse("nonsense"), None);
    }

    #[test]
    fn the_web_client_mirrors_every_code() {
        let mirror = include_str!("../../web/src/natter/errors.ts");
        for code in ErrorCode::ALL {
            assert!(
                mirror.contains(&format!("\"{}\"", code.as_str())),
                "web/src/natter/errors.ts lacks {code}"
            );
        }
    }
}
