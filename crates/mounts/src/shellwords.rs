//! Splitting a user-supplied option string (a StorageClass parameter such as
//! `-m 0 -L "my data"`) into arguments the way a POSIX shell would, without ever running one:
//! no expansion, no substitution, no globbing. The result goes straight into argv.

use crate::{Error, Result};

/// Splits `text` into words. Whitespace separates words; single quotes keep everything
/// literally; double quotes keep everything but let a backslash escape `"` and `\`; a backslash
/// outside quotes escapes the next character.
pub fn split(text: &str) -> Result<Vec<String>> {
    let unterminated = |what: &str| Error::invalid(text, format!("unterminated {what}"));
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(character) = chars.next() {
        match character {
            '\0' => return Err(Error::invalid(text, "contains a NUL byte")),
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next().ok_or_else(|| unterminated("single quote"))? {
                        '\'' => break,
                        '\0' => return Err(Error::invalid(text, "contains a NUL byte")),
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next().ok_or_else(|| unterminated("double quote"))? {
                        '"' => break,
                        '\\' => match chars.next().ok_or_else(|| unterminated("double quote"))? {
                            c @ ('"' | '\\') => word.push(c),
                            c => {
                                word.push('\\');
                                word.push(c);
                            }
                        },
                        '\0' => return Err(Error::invalid(text, "contains a NUL byte")),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\0') => return Err(Error::invalid(text, "contains a NUL byte")),
                    Some(c) => word.push(c),
                    None => return Err(Error::invalid(text, "ends with a lone backslash")),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_any_whitespace() {
        assert_eq!(
            split("  -m 0\t-N\n1000 ").unwrap(),
            ["-m", "0", "-N", "1000"]
        );
        assert!(split("   ").unwrap().is_empty());
    }

    #[test]
    fn quotes_group_and_are_removed() {
        assert_eq!(
            split(r#"-L "my data" -E 'a=1,b=2' x"y"'z'"#).unwrap(),
            ["-L", "my data", "-E", "a=1,b=2", "xyz"]
        );
        assert_eq!(split(r#""""#).unwrap(), [""]);
    }

    #[test]
    fn nothing_is_expanded() {
        assert_eq!(
            split(r#"$(reboot) `id` *.img ~ ; && |"#).unwrap(),
            ["$(reboot)", "`id`", "*.img", "~", ";", "&&", "|"]
        );
    }

    #[test]
    fn backslashes_escape() {
        assert_eq!(split(r"a\ b").unwrap(), ["a b"]);
        assert_eq!(split(r#""a\"b\\c\d""#).unwrap(), [r#"a"b\c\d"#]);
        assert_eq!(split(r"'a\b'").unwrap(), [r"a\b"]);
    }

    #[test]
    fn unterminated_input_is_an_error() {
        for bad in [r#"-L "x"#, "-L 'x", r"x\", "a\0b"] {
            assert!(
                matches!(split(bad), Err(Error::InvalidOption { .. })),
                "{bad:?}"
            );
        }
    }
}
