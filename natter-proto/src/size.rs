//! The byte-size format of Natter's settings: `1048576` (bytes), `512MiB`, `8GiB`, `1TiB`.

/// Parses a byte-size setting (at least 1 MiB: a smaller chat stream could not hold a burst).
pub fn parse(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 512MiB, 8GiB or a number of bytes"))?;
    let shift = match unit {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        "TiB" => 40,
        _ => return Err(format!("{text:?} has an unknown unit; use KiB, MiB, GiB or TiB")),
    };
    let bytes = n
        .checked_mul(1 << shift)
        .filter(|b| *b <= i64::MAX as u64)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if bytes < 1 << 20 {
        return Err(format!("{text:?} is under 1MiB"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_nonsense_is_refused() {
        assert_eq!(parse("8GiB"), Ok(8 << 30));
        assert_eq!(parse("512MiB"), Ok(512 << 20));
        assert_eq!(parse("1048576"), Ok(1 << 20));
        for bad in ["", "GiB", "8GB", "-1", "1KiB", "99999999TiB", "8 GiB"] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
