//! RouterOS string quoting for SSH scripts.
//!
//! Every string value is written inside double quotes and every byte outside a small safe set
//! becomes a `\XX` hex escape (two uppercase hex digits of the UTF-8 byte). Quotes, `$`, `[`,
//! `]`, `\`, `;`, braces, newlines and non-ASCII therefore never appear raw, so a value can
//! neither end the string nor start a variable or command substitution.

/// Bytes written as-is inside a quoted string.
fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'.' | b'_' | b':' | b'/' | b'@' | b'+' | b'=' | b',' | b'-' | b' '
        )
}

/// Quotes `value` as one RouterOS string token.
pub fn quote(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for &b in value.as_bytes() {
        if is_plain(b) {
            out.push(char::from(b));
        } else {
            out.push('\\');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out.push('"');
    out
}

/// Escapes POSIX extended-regex metacharacters so `value` matches literally in `~` filters.
pub fn regex_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(
            c,
            '\\' | '.' | '^' | '$' | '|' | '?' | '*' | '+' | '(' | ')' | '[' | ']' | '{' | '}'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A decoder for RouterOS quoted strings, used by tests to prove that quoting round-trips.
/// It follows the device's lexer: the token ends at the first unescaped `"`, and `\XX`,
/// `\"`, `\\`, `\n`, `\r`, `\t`, `\$`, `\?`, `\_` are escapes.
#[cfg(test)]
pub(crate) fn lex_quoted(input: &str) -> Option<(Vec<u8>, &str)> {
    let bytes = input.as_bytes();
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Some((out, &input[i + 1..])),
            b'\\' => {
                let next = *bytes.get(i + 1)?;
                let hex = |b: u8| char::from(b).to_digit(16);
                if let (Some(h), Some(l)) = (hex(next), bytes.get(i + 2).and_then(|&b| hex(b))) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                out.push(match next {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'_' => b' ',
                    b'"' | b'\\' | b'$' | b'?' => next,
                    _ => return None,
                });
                i += 2;
            }
            // A raw `$` or `[` inside a string would start a substitution on the device.
            b'$' | b'[' => return None,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}

#[cfg(test)]
pub(crate) const HOSTILE: &[&str] = &[
    "\"",
    "\";/system reboot;\"",
    ";",
    "[",
    "]",
    "[/system reboot]",
    "$",
    "$x",
    "\\",
    "\\\"",
    "\n",
    "a\r\nb",
    "{}",
    "{/system reboot}",
    "ünïcødé ✓ 日本",
    "",
    "?",
    "\t",
    "\u{7f}",
    "tab\there",
    "  leading and trailing  ",
    "#comment",
    "a=b c=d",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_stay_readable() {
        assert_eq!(quote("pvc-1.img"), "\"pvc-1.img\"");
        assert_eq!(quote("storage-pool/x.img"), "\"storage-pool/x.img\"");
        assert_eq!(quote("nqn.2000-02.com.x:a"), "\"nqn.2000-02.com.x:a\"");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("a b"), "\"a b\"");
    }

    #[test]
    fn specials_become_uppercase_hex_escapes() {
        assert_eq!(quote("\"$[]\\;{}\n"), r#""\22\24\5B\5D\5C\3B\7B\7D\0A""#);
        assert_eq!(quote("é"), r#""\C3\A9""#);
    }

    #[test]
    fn hostile_strings_quote_to_one_token_that_decodes_back() {
        let long = "x\"[;$".repeat(5000);
        let inputs = HOSTILE.iter().copied().chain([long.as_str()]);
        for input in inputs {
            let quoted = quote(input);
            // Only the delimiting quotes appear raw; nothing inside can start code.
            let inner = &quoted[1..quoted.len() - 1];
            assert!(
                !inner.contains(['"', '$', '[', ']', ';', '{', '}', '\n', '\r']),
                "{quoted}"
            );
            assert!(inner.is_ascii(), "{quoted}");
            let (decoded, rest) = lex_quoted(&quoted).expect("lexes");
            assert_eq!(rest, "", "the token ends exactly at the closing quote");
            assert_eq!(decoded, input.as_bytes());
            // Followed by more script, the token still ends where it should.
            let script = format!("{quoted};:put 1");
            let (decoded, rest) = lex_quoted(&script).unwrap();
            assert_eq!(decoded, input.as_bytes());
            assert_eq!(rest, ";:put 1");
        }
    }

    #[test]
    fn regex_escape_makes_metacharacters_literal() {
        assert_eq!(regex_escape("pvc-"), "pvc-");
        assert_eq!(regex_escape("a.b"), "a\\.b");
        assert_eq!(
            regex_escape("^$|?*+()[]{}\\"),
            "\\^\\$\\|\\?\\*\\+\\(\\)\\[\\]\\{\\}\\\\"
        );
        // Escaped and quoted, the prefix is still one safe token.
        let q = quote(&format!("^{}", regex_escape("a.b")));
        assert_eq!(q, r#""\5Ea\5C.b""#);
        assert_eq!(lex_quoted(&q).unwrap().0, b"^a\\.b");
    }
}
