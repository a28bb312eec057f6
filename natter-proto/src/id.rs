//! Identifier newtypes whose parsers are the only way in: an invalid value cannot exist past the edge.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Why a string was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The value was empty (after trimming, where the type trims).
    #[error("{what} must not be empty")]
    Empty {
        /// The kind of identifier.
        what: &'static str,
    },
    /// The value was shorter than the minimum, in characters.
    #[error("{what} must be at least {min} characters long")]
    TooShort {
        /// The kind of identifier.
        what: &'static str,
        /// The minimum length.
        min: usize,
    },
    /// The value was longer than the maximum, in characters.
    #[error("{what} must be at most {max} characters long")]
    TooLong {
        /// The kind of identifier.
        what: &'static str,
        /// The maximum length.
        max: usize,
    },
    /// The value contained a character outside the allowed set.
    #[error("{what} may only contain {allowed}")]
    BadCharacter {
        /// The kind of identifier.
        what: &'static str,
        /// A human description of the allowed characters.
        allowed: &'static str,
    },
    /// The value must start with a letter or digit.
    #[error("{what} must start with a letter or a digit")]
    BadStart {
        /// The kind of identifier.
        what: &'static str,
    },
    /// The name holds a character that would make it show as something else ([`crate::text::plain_name`]).
    #[error("{what} must not hold {found}: it can make one name look like another")]
    Hidden {
        /// The kind of identifier.
        what: &'static str,
        /// The first such character.
        found: crate::text::HiddenChar,
    },
}

/// Refuses a name holding a character [`crate::text::plain_name`] refuses.
fn plain(what: &'static str, value: &str) -> Result<(), IdError> {
    match crate::text::plain_name(value) {
        Err(crate::text::TextError::Hidden(found)) => Err(IdError::Hidden { what, found }),
        _ => Ok(()),
    }
}

/// Checks `value` against a length range and an ASCII character class shared by all token-like ids.
fn check_token(
    what: &'static str,
    value: &str,
    min: usize,
    max: usize,
    allowed: &'static str,
    ok: impl Fn(u8) -> bool,
) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { what });
    }
    if !value.bytes().all(&ok) {
        return Err(IdError::BadCharacter { what, allowed });
    }
    // All bytes are ASCII past the check above, so bytes == characters.
    if value.len() < min {
        return Err(IdError::TooShort { what, min });
    }
    if value.len() > max {
        return Err(IdError::TooLong { what, max });
    }
    Ok(())
}

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The validated value.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Consumes the id, returning the validated string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_newtype!(
    /// A room id: 1 to 64 characters of `A-Z a-z 0-9 _ -`.
    ///
    /// Every valid room id is a safe NATS subject token: it can contain none of `.`, `*`, `>`, whitespace or
    /// control characters, so a subject built from it always has exactly the intended shape.
    RoomId
);

impl RoomId {
    /// The longest room id accepted.
    pub const MAX_LEN: usize = 64;

    /// Parses a room id, refusing anything that is not a safe subject token.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        check_token(
            "room id",
            value,
            1,
            Self::MAX_LEN,
            "letters, digits, '_' and '-'",
            |b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-',
        )?;
        Ok(Self(value.to_owned()))
    }
}

string_newtype!(
    /// A user name: 3 to 32 characters of `A-Z a-z 0-9 _ -`, starting with a letter or digit.
    ///
    /// Names are unique without regard to case; [`Username::key`] gives the form uniqueness is checked on.
    Username
);

impl Username {
    /// The shortest user name accepted.
    pub const MIN_LEN: usize = 3;
    /// The longest user name accepted.
    pub const MAX_LEN: usize = 32;

    /// Parses a user name.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        const WHAT: &str = "username";
        // The character class below keeps these out already; checked first so the error names what was found.
        plain(WHAT, value)?;
        check_token(
            WHAT,
            value,
            Self::MIN_LEN,
            Self::MAX_LEN,
            "letters, digits, '_' and '-'",
            |b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-',
        )?;
        if !value.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(IdError::BadStart { what: WHAT });
        }
        Ok(Self(value.to_owned()))
    }

    /// The case-folded form two names are compared by.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

string_newtype!(
    /// A message id chosen by the sending client: 1 to 64 characters of `A-Z a-z 0-9 _ - . :`.
    ///
    /// Together with the author it forms the JetStream `Nats-Msg-Id`, so a resend of the same message is stored
    /// once. The character set keeps it safe as a header value.
    ClientMsgId
);

impl ClientMsgId {
    /// The longest client message id accepted.
    pub const MAX_LEN: usize = 64;

    /// Parses a client message id.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        check_token(
            "message id",
            value,
            1,
            Self::MAX_LEN,
            "letters, digits, '_', '-', '.' and ':'",
            |b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'),
        )?;
        Ok(Self(value.to_owned()))
    }
}

string_newtype!(
    /// A room's display name: 1 to 64 characters after trimming, none of which hides or reorders text (no control,
    /// direction or invisible characters: [`crate::text::plain_name`]).
    RoomName
);

impl RoomName {
    /// The longest room name accepted, in characters.
    pub const MAX_LEN: usize = 64;

    /// Parses a room name, trimming surrounding white space.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        const WHAT: &str = "room name";
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(IdError::Empty { what: WHAT });
        }
        plain(WHAT, trimmed)?;
        if trimmed.chars().count() > Self::MAX_LEN {
            return Err(IdError::TooLong {
                what: WHAT,
                max: Self::MAX_LEN,
            });
        }
        Ok(Self(trimmed.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_that_are_safe_subject_tokens_parse() {
        for ok in ["a", "lobby", "Room_42", "x-y-z", &"r".repeat(64)] {
            assert_eq!(RoomId::parse(ok).map(|r| r.into_string()).as_deref(), Ok(ok));
        }
    }

    #[test]
    fn hostile_room_ids_are_refused() {
        let long = "r".repeat(65);
        for bad in [
            "", "a.b", "*", ">", "a*", "a>", "a b", " a", "a\t", "a\n", "a\0", "a\u{7f}", "ä", "a/b", &long,
        ] {
            assert!(RoomId::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn room_id_errors_say_why() {
        assert_eq!(RoomId::parse(""), Err(IdError::Empty { what: "room id" }));
        assert_eq!(
            RoomId::parse(&"r".repeat(65)),
            Err(IdError::TooLong {
                what: "room id",
                max: 64
            })
        );
        assert!(matches!(RoomId::parse("a.b"), Err(IdError::BadCharacter { .. })));
    }

    #[test]
    fn usernames_are_validated_and_compared_without_case() {
        assert!(Username::parse("al").is_err());
        assert!(Username::parse("_alice").is_err());
        assert!(Username::parse("alice smith").is_err());
        assert!(Username::parse("alice'; DROP TABLE users;--").is_err());
        assert!(Username::parse(&"a".repeat(33)).is_err());
        let name = Username::parse("Alice_1").expect("valid name");
        assert_eq!(name.key(), "alice_1");
    }

    #[test]
    fn deserializing_validates() {
        let ok: RoomId = serde_json::from_str("\"lobby\"").expect("valid id");
        assert_eq!(ok.as_str(), "lobby");
        let err = serde_json::from_str::<RoomId>("\"a.b\"").expect_err("invalid id");
        assert!(err.to_string().contains("room id"), "{err}");
    }

    #[test]
    fn room_names_are_trimmed_and_refuse_control_characters() {
        assert_eq!(
            RoomName::parse("  General  ").map(|n| n.into_string()).as_deref(),
            Ok("General")
        );
        assert!(RoomName::parse("   ").is_err());
        assert!(RoomName::parse("a\u{0}b").is_err());
        assert!(matches!(
            RoomName::parse("a\u{7}b"),
            Err(IdError::Hidden { what: "room name", .. })
        ));
        assert!(RoomName::parse(&"é".repeat(64)).is_ok());
        assert!(RoomName::parse(&"é".repeat(65)).is_err());
    }

    #[test]
    fn names_that_could_pass_for_others_are_refused() {
        for (name, found) in [
            ("evil\u{202E}gpj.exe", '\u{202E}'),
            ("\u{2067}lobby\u{2069}", '\u{2067}'),
            ("admin\u{200B}", '\u{200B}'),
            ("\u{FEFF}General", '\u{FEFF}'),
            ("a\u{2060}b", '\u{2060}'),
            ("\u{3164}", '\u{3164}'),
        ] {
            let err = RoomName::parse(name).expect_err(name);
            assert!(
                matches!(err, IdError::Hidden { found: f, .. } if f.ch == found),
                "{name:?}: {err:?}"
            );
            assert!(err.to_string().starts_with("room name must not hold U+"), "{err}");
            let err = Username::parse(name).expect_err(name);
            assert!(
                matches!(err, IdError::Hidden { what: "username", .. }),
                "{name:?}: {err:?}"
            );
        }
        // Only whitespace around a name is trimmed; a zero-width space is not whitespace.
        assert!(RoomName::parse(" \u{200B} ").is_err());
        assert!(RoomName::parse("Café ☕ 日本").is_ok());
    }

    #[test]
    fn client_message_ids_are_header_safe() {
        assert!(ClientMsgId::parse("m-1:2.3_x").is_ok());
        assert!(ClientMsgId::parse("a b").is_err());
        assert!(ClientMsgId::parse("a\r\nX-Evil: 1").is_err());
        assert!(ClientMsgId::parse(&"m".repeat(65)).is_err());
    }
}
