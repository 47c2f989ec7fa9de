//! A configuration file's bytes as text: a UTF-8 byte-order mark skipped, invalid UTF-8
//! reported at its line and column.

use super::error::ConfigError;

const BOM: &str = "\u{feff}";

/// The file's text without a leading UTF-8 byte-order mark; invalid UTF-8 is an error at the
/// line and column (1-based, in characters) of the first bad byte.
pub fn decode_utf8<'b>(bytes: &'b [u8], file: &str) -> Result<&'b str, ConfigError> {
    let bytes = bytes.strip_prefix(BOM.as_bytes()).unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|error| {
        let valid = &bytes[..error.valid_up_to()];
        // The prefix is valid by construction; fall back to counting bytes if it were not.
        let (line, column) = match std::str::from_utf8(valid) {
            Ok(text) => line_and_column(text),
            Err(_) => (1, valid.len() + 1),
        };
        let bad: Vec<String> = bytes[error.valid_up_to()..]
            .iter()
            .take(error.error_len().unwrap_or(1).max(1))
            .map(|b| format!("0x{b:02x}"))
            .collect();
        ConfigError {
            file: file.to_string(),
            line,
            column,
            path: String::new(),
            message: format!(
                "the file is not valid UTF-8 (byte {} here); save it as UTF-8",
                bad.join(" ")
            ),
        }
    })
}

/// The text without a leading byte-order mark.
pub(crate) fn skip_bom(text: &str) -> &str {
    text.strip_prefix(BOM).unwrap_or(text)
}

/// The 1-based line and column just after `prefix`.
pub(crate) fn line_and_column(prefix: &str) -> (usize, usize) {
    let line = prefix.bytes().filter(|b| *b == b'\n').count() + 1;
    let line_start = prefix.rfind('\n').map_or(0, |at| at + 1);
    (line, prefix[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bom_is_skipped() {
        let bytes = b"\xef\xbb\xbftype: task\n";
        assert_eq!(decode_utf8(bytes, "t.yml"), Ok("type: task\n"));
        assert_eq!(skip_bom("\u{feff}a"), "a");
    }

    #[test]
    fn invalid_utf8_is_located() {
        let bytes = b"type: task\nname: \xc3\xa9t\xff\n";
        let error = decode_utf8(bytes, "t.yml").expect_err("invalid");
        assert_eq!((error.line, error.column), (2, 9));
        assert!(error.message.contains("0xff"), "{}", error.message);
        assert_eq!(error.to_string().split(':').next(), Some("t.yml"));
    }

    #[test]
    fn truncated_sequences_are_located_at_their_start() {
        let error = decode_utf8(b"a: \xe2\x82", "t.yml").expect_err("invalid");
        assert_eq!((error.line, error.column), (1, 4));
    }
}
