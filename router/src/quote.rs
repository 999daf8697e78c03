//! Client input quoted in error messages, cut short: a reply must fit any client's metadata
//! limit (grpcio's is 8 KiB), whatever the client sent.

/// Longest piece of client input an error message quotes, in bytes.
pub const MAX_QUOTE_BYTES: usize = 128;

/// `text` quoted for an error message: whole if at most [`MAX_QUOTE_BYTES`] long, else its
/// first bytes (cut at a character boundary) and its length.
pub fn quote(text: &str) -> String {
    if text.len() <= MAX_QUOTE_BYTES {
        return format!("{text:?}");
    }
    let mut end = MAX_QUOTE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_cut_at_a_character_boundary() {
        assert_eq!(quote("abc"), "\"abc\"");
        let long = "é".repeat(100);
        let quoted = quote(&long);
        assert!(quoted.len() < MAX_QUOTE_BYTES + 30, "{quoted}");
        assert!(quoted.ends_with("(200 bytes)"), "{quoted}");
    }
}
