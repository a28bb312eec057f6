//! Free text that is stored (message bodies) or shown beside stored text (drafts): what storage accepts.
//!
//! PostgreSQL's `text` takes any UTF-8 except the NUL character. A body with one would be acknowledged, delivered
//! live and then refused by the database: checked here, at the edge, every text is one history can hold.

/// Why a text cannot be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// It holds a NUL character (`\u0000`), which PostgreSQL's `text` refuses.
    #[error("the text holds a NUL character (\\u0000), which cannot be stored")]
    Nul,
}

/// Checks that `text` can be stored as it is.
pub fn storable(text: &str) -> Result<(), TextError> {
    if text.contains('\0') {
        return Err(TextError::Nul);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
