//! Text rules every process shares: what storage accepts ([`storable`], for message bodies and drafts), and what a
//! name may hold so that it shows as what it is ([`plain_name`], for user and room names).
//!
//! PostgreSQL's `text` takes any UTF-8 except the NUL character. A body with one would be acknowledged, delivered
//! live and then refused by the database: checked here, at the edge, every text is one history can hold.
//!
//! A name is shown beside other text and compared by eye: a right-to-left override turns `evil\u{202E}gpj.exe`
//! into what reads as `evilexe.jpg`, a zero-width space makes `admin\u{200B}` a second "admin", and a control
//! character can move a terminal's cursor. Names hold none of these.

use std::fmt;

/// Why a text cannot be stored, or cannot be a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// It holds a NUL character (`\u0000`), which PostgreSQL's `text` refuses.
    #[error("the text holds a NUL character (\\u0000), which cannot be stored")]
    Nul,
    /// It holds a character that changes how the text around it shows, or shows as nothing.
    #[error("the text holds {0}, which can make one name look like another")]
    Hidden(HiddenChar),
}

/// A character a name may not hold, and what kind it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HiddenChar {
    /// The character.
    pub ch: char,
    /// What kind of character it is.
    pub kind: HiddenKind,
}

impl fmt::Display for HiddenChar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "U+{:04X} ({})", u32::from(self.ch), self.kind)
    }
}

/// The kinds of characters names may not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiddenKind {
    /// A control character (Unicode category Cc: `U+0000`–`U+001F`, `U+007F`–`U+009F`).
    Control,
    /// A bidirectional control: the embeddings and overrides `U+202A`–`U+202E`, the isolates `U+2066`–`U+2069`,
    /// and the marks `U+200E`, `U+200F`, `U+061C`. They reorder the text around them.
    Direction,
    /// An invisible format character (the rest of category Cf: zero-width spaces and joiners `U+200B`–`U+200D`,
    /// word joiner and invisible operators `U+2060`–`U+2064`, the byte-order mark `U+FEFF`, the soft hyphen, tag
    /// characters, …) or a character that shows as blank space without being one (Hangul fillers, the blank
    /// Braille pattern, the combining grapheme joiner).
    Invisible,
    /// A line or paragraph separator (`U+2028`, `U+2029`).
    Separator,
    /// A noncharacter (`U+FDD0`–`U+FDEF`, and the last two code points of every plane).
    Noncharacter,
}

impl fmt::Display for HiddenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Control => "a control character",
            Self::Direction => "a text direction control",
            Self::Invisible => "an invisible character",
            Self::Separator => "a line or paragraph separator",
            Self::Noncharacter => "a noncharacter",
        })
    }
}

/// Format characters (Unicode category Cf, as of Unicode 16) that are not direction controls.
const INVISIBLE_FORMAT: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200D),
    (0x2060, 0x2064),
    (0x206A, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Characters outside Cf that show as nothing or as blank space: the combining grapheme joiner, the Hangul
/// fillers, the Mongolian vowel separator's neighbours (free variation selectors), the blank Braille pattern.
const INVISIBLE_OTHER: &[(u32, u32)] = &[
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180D),
    (0x180F, 0x180F),
    (0x2800, 0x2800),
    (0x3164, 0x3164),
    (0xFFA0, 0xFFA0),
];

fn within(ranges: &[(u32, u32)], c: u32) -> bool {
    ranges.iter().any(|&(low, high)| (low..=high).contains(&c))
}

/// What kind of character a name may not hold `c` is, or `None` when a name may hold it.
pub fn hidden_kind(c: char) -> Option<HiddenKind> {
    let code = u32::from(c);
    if c.is_control() {
        Some(HiddenKind::Control)
    } else if matches!(code, 0x061C | 0x200E | 0x200F | 0x202A..=0x202E | 0x2066..=0x2069) {
        Some(HiddenKind::Direction)
    } else if within(INVISIBLE_FORMAT, code) || within(INVISIBLE_OTHER, code) {
        Some(HiddenKind::Invisible)
    } else if matches!(code, 0x2028 | 0x2029) {
        Some(HiddenKind::Separator)
    } else if (0xFDD0..=0xFDEF).contains(&code) || code & 0xFFFE == 0xFFFE {
        Some(HiddenKind::Noncharacter)
    } else {
        None
    }
}

/// Checks that `name` (a user name, a room name) shows as what it is: no control characters, no direction
/// controls, no invisible or blank-looking format characters, no line separators, no noncharacters. Returns the
/// first such character. Everything else passes, spaces and emoji (with their variation selectors) included;
/// emoji joined by U+200D (a zero-width joiner) do not.
pub fn plain_name(name: &str) -> Result<(), TextError> {
    match name
        .chars()
        .find_map(|ch| hidden_kind(ch).map(|kind| HiddenChar { ch, kind }))
    {
        Some(hidden) => Err(TextError::Hidden(hidden)),
        None => Ok(()),
    }
}

/// Checks that `text` can be stored as it is.
pub fn storable(text: &str) -> Result<(), TextError> {
    if text.contains('\0') {
        return Err(TextError::Nul);
    }
    Ok(())
}

/// Most different emoji one message may carry as reactions: a reaction with one more is refused
/// (`too_many_reactions`); one already there may always be added.
pub const MAX_REACTION_EMOJI: usize = 20;

/// The emoji a reaction palette offers first; any other [`single_emoji`] is accepted too.
pub const REACTION_PALETTE: [&str; 6] = ["👍", "❤️", "😂", "🎉", "😮", "😢"];

/// Most bytes one reaction emoji may take (a family of four with skin tones stays below).
pub const MAX_EMOJI_BYTES: usize = 64;

/// Checks that `text` is one emoji, as a reaction: one pictograph with what may follow it in one emoji
/// (a variation selector, skin tones, zero-width joins to further pictographs, tag characters of a subdivision
/// flag), a flag (two regional indicators), or a keycap (`0`–`9`, `#`, `*` with U+20E3). Nothing else: no
/// letters, no second emoji, no spaces.
pub fn single_emoji(text: &str) -> Result<(), &'static str> {
    if text.is_empty() || text.len() > MAX_EMOJI_BYTES {
        return Err("a reaction is one emoji");
    }
    let chars: Vec<char> = text.chars().collect();
    let regional = |c: char| ('\u{1F1E6}'..='\u{1F1FF}').contains(&c);
    // A flag: exactly two regional indicators.
    if chars.iter().all(|&c| regional(c)) {
        return if chars.len() == 2 {
            Ok(())
        } else {
            Err("a flag is two regional indicators")
        };
    }
    // A keycap.
    if matches!(chars[0], '0'..='9' | '#' | '*') {
        return match chars[1..] {
            ['\u{FE0F}', '\u{20E3}'] | ['\u{20E3}'] => Ok(()),
            _ => Err("a reaction is one emoji"),
        };
    }
    let mut expect_pictograph = true;
    for &c in &chars {
        if expect_pictograph {
            if !pictograph(c) {
                return Err("a reaction is one emoji");
            }
            expect_pictograph = false;
            continue;
        }
        match c {
            '\u{FE0F}' | '\u{1F3FB}'..='\u{1F3FF}' | '\u{E0020}'..='\u{E007F}' => {}
            '\u{200D}' => expect_pictograph = true,
            _ => return Err("a reaction is one emoji"),
        }
    }
    if expect_pictograph {
        return Err("a reaction is one emoji");
    }
    Ok(())
}

/// Whether `c` is a pictograph an emoji begins with (the blocks Unicode's Extended_Pictographic covers, and
/// the older symbols shown as emoji).
fn pictograph(c: char) -> bool {
    matches!(c,
        '\u{00A9}' | '\u{00AE}' | '\u{203C}' | '\u{2049}' | '\u{2122}' | '\u{2139}'
        | '\u{2194}'..='\u{21AA}'
        | '\u{231A}'..='\u{23FF}'
        | '\u{24C2}'
        | '\u{25AA}'..='\u{25FE}'
        | '\u{2600}'..='\u{27BF}'
        | '\u{2934}' | '\u{2935}'
        | '\u{2B05}'..='\u{2B55}'
        | '\u{3030}' | '\u{303D}' | '\u{3297}' | '\u{3299}'
        | '\u{1F000}'..='\u{1F0FF}'
        | '\u{1F10D}'..='\u{1F1AD}'
        | '\u{1F201}'..='\u{1F2FF}'
        | '\u{1F300}'..='\u{1F3FA}'
        | '\u{1F400}'..='\u{1FAFF}')
}

/// Most different names a message's mentions are resolved for; further `@name`s are plain text.
pub const MAX_MENTIONS: usize = 20;

/// The user names a text mentions: each `@name` that starts the text or follows a character that is not a letter,
/// digit, `_`, `-` or `.` (so an e-mail address mentions no one) and is a valid user name ([`crate::Username`]),
/// once each without regard to case, in order, at most [`MAX_MENTIONS`]. Which of them are the room's members is the
/// auth API's to say.
pub fn mentioned_names(text: &str) -> Vec<crate::Username> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut names: Vec<crate::Username> = Vec::new();
    let mut previous: Option<char> = None;
    for (at, c) in text.char_indices() {
        let starts = c == '@' && previous.is_none_or(|p| !(p.is_alphanumeric() || p == '_' || p == '-' || p == '.'));
        previous = Some(c);
        if !starts {
            continue;
        }
        let rest = &text[at + 1..];
        let end = rest.find(|c: char| !word(c)).unwrap_or(rest.len());
        let Ok(name) = crate::Username::parse(&rest[..end]) else {
            continue;
        };
        if names.iter().all(|n| n.key() != name.key()) {
            names.push(name);
            if names.len() == MAX_MENTIONS {
                break;
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_emoji_is_a_reaction_and_anything_else_is_not() {
        for ok in REACTION_PALETTE.into_iter().chain([
            "🦀",
            "👍🏽",
            "🇫🇷",
            "1️⃣",
            "#⃣",
            "👩‍💻",
            "👨‍👩‍👧‍👦",
            "🏳️‍🌈",
            "🏴\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}",
            "©️",
            "☕",
        ]) {
            assert_eq!(single_emoji(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "",
            "a",
            "👍👍",
            "👍 ",
            " 👍",
            "ok👍",
            "🇫",
            "🇫🇷🇩🇪",
            "1",
            "👩‍",
            "\u{200D}👍",
            "<b>",
            "\u{FE0F}",
            "😀\0",
        ] {
            assert!(single_emoji(bad).is_err(), "{bad:?}");
        }
        assert!(single_emoji(&"👍\u{FE0F}".repeat(20)).is_err());
    }

    fn refused(name: &str) -> Option<HiddenKind> {
        match plain_name(name) {
            Err(TextError::Hidden(hidden)) => Some(hidden.kind),
            Err(TextError::Nul) => unreachable!("plain_name reports NUL as a control character"),
            Ok(()) => None,
        }
    }

    #[test]
    fn direction_controls_are_refused_in_names() {
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
        ]
        .into_iter()
        .chain(['\u{200E}', '\u{200F}', '\u{061C}'])
        {
            assert_eq!(
                refused(&format!("evil{c}gpj.exe")),
                Some(HiddenKind::Direction),
                "{c:?}"
            );
        }
    }

    #[test]
    fn invisible_format_characters_are_refused_in_names() {
        let invisible = [
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{2060}',
            '\u{2061}',
            '\u{2062}',
            '\u{2063}',
            '\u{2064}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{180E}',
            '\u{206A}',
            '\u{206F}',
            '\u{FFF9}',
            '\u{E0001}',
            '\u{E0041}',
            '\u{1D173}',
            '\u{034F}',
            '\u{115F}',
            '\u{3164}',
            '\u{FFA0}',
            '\u{2800}',
        ];
        for c in invisible {
            assert_eq!(refused(&format!("admin{c}")), Some(HiddenKind::Invisible), "{c:?}");
            assert_eq!(refused(&c.to_string()), Some(HiddenKind::Invisible), "{c:?} alone");
        }
    }

    #[test]
    fn control_characters_separators_and_noncharacters_are_refused_in_names() {
        for c in [
            '\u{0}', '\u{7}', '\t', '\n', '\r', '\u{1B}', '\u{7F}', '\u{85}', '\u{9F}',
        ] {
            assert_eq!(refused(&format!("a{c}b")), Some(HiddenKind::Control), "{c:?}");
        }
        assert_eq!(refused("a\u{2028}b"), Some(HiddenKind::Separator));
        assert_eq!(refused("a\u{2029}b"), Some(HiddenKind::Separator));
        for c in [
            '\u{FDD0}',
            '\u{FDEF}',
            '\u{FFFE}',
            '\u{FFFF}',
            '\u{1FFFF}',
            '\u{10FFFE}',
        ] {
            assert_eq!(refused(&format!("a{c}")), Some(HiddenKind::Noncharacter), "{c:?}");
        }
    }

    #[test]
    fn ordinary_names_of_any_script_pass() {
        for fine in [
            "General",
            "Team chat",
            "café au lait",
            "Ελληνικά",
            "Русский",
            "עברית",
            "العربية",
            "日本語のルーム",
            "हिन्दी",
            "ไทย",
            "emoji 😀 ❤\u{FE0F}",
            "a-b_c.d (e)",
            "\u{00A0}no-break",
        ] {
            assert_eq!(plain_name(fine), Ok(()), "{fine:?}");
        }
    }

    #[test]
    fn the_first_hidden_character_is_named_in_the_error() {
        let err = plain_name("ab\u{202E}cd\u{200B}").expect_err("refused");
        assert_eq!(
            err,
            TextError::Hidden(HiddenChar {
                ch: '\u{202E}',
                kind: HiddenKind::Direction
            })
        );
        assert_eq!(
            err.to_string(),
            "the text holds U+202E (a text direction control), which can make one name look like another"
        );
    }

    #[test]
    fn only_nul_is_refused() {
        assert_eq!(storable("a\u{0}b"), Err(TextError::Nul));
        assert_eq!(storable("\u{0}"), Err(TextError::Nul));
        for fine in [
            "",
            "hi",
            "tab\there\nnewline",
            "\u{7f}\u{1b}[31m",
            "ä 😀 \u{feff}",
            "\\u0000",
        ] {
            assert_eq!(storable(fine), Ok(()), "{fine:?}");
        }
    }

    #[test]
    fn mentions_are_at_names_that_start_a_word_once_each() {
        let names = |text: &str| -> Vec<String> {
            mentioned_names(text)
                .into_iter()
                .map(|n| n.as_str().to_owned())
                .collect()
        };
        assert_eq!(names("@ann hi @bob, and @Ann again"), ["ann", "bob"]);
        assert_eq!(names("(@cyd) @dee: @eve!"), ["cyd", "dee", "eve"]);
        // Not mentions: an address, a name too short or too long, a bare @, one glued to a word.
        assert!(names("mail ann@example.com or x@bob").is_empty());
        assert!(names("@al @ and @").is_empty());
        assert!(names(&format!("@{}", "a".repeat(33))).is_empty());
        assert_eq!(names("ünï@bob @élan @zed"), ["zed"]);
        let many: String = (0..30).map(|i| format!("@user{i} ")).collect();
        assert_eq!(names(&many).len(), MAX_MENTIONS);
    }
}
