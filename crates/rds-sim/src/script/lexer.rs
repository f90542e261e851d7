//! Tokens of the RouterOS scripting language (the subset the simulator runs).

use crate::error::{CmdError, Pos};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// A run of ordinary characters: names, unquoted values, paths, `*1A`.
    Word(String),
    /// A double-quoted string, escapes decoded.
    Str(String),
    /// `$name`.
    Var(String),
    Eq,
    NotEq,
    Tilde,
    Lt,
    Gt,
    Bang,
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Semi,
    Newline,
    Eof,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub tok: Tok,
    pub pos: Pos,
    /// Whitespace came right before this token (`a=b` vs `a= b`).
    pub spaced: bool,
}

fn is_special(c: char) -> bool {
    c.is_whitespace() || "\"=~!<>()[]{};$\\".contains(c)
}

struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: u32,
    column: u32,
}

impl Cursor<'_> {
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }
}

/// Splits a script into tokens. The last token is always [`Tok::Eof`].
pub fn lex(src: &str) -> Result<Vec<Token>, CmdError> {
    let mut cur = Cursor {
        chars: src.chars().peekable(),
        line: 1,
        column: 1,
    };
    let mut tokens: Vec<Token> = Vec::new();
    let mut spaced = false;
    loop {
        let pos = cur.pos();
        let Some(c) = cur.peek() else {
            tokens.push(Token {
                tok: Tok::Eof,
                pos,
                spaced,
            });
            return Ok(tokens);
        };
        let at_statement_start = matches!(
            tokens.last().map(|t| &t.tok),
            None | Some(Tok::Newline | Tok::Semi | Tok::LBrace)
        );
        let tok = match c {
            '\n' => {
                cur.bump();
                Tok::Newline
            }
            c if c.is_whitespace() => {
                cur.bump();
                spaced = true;
                continue;
            }
            '\\' => {
                // A backslash at the end of a line continues the statement.
                cur.bump();
                while cur.peek() == Some('\r') {
                    cur.bump();
                }
                if cur.bump() != Some('\n') {
                    return Err(CmdError::Syntax { pos });
                }
                spaced = true;
                continue;
            }
            '#' if at_statement_start => {
                while cur.peek().is_some_and(|c| c != '\n') {
                    cur.bump();
                }
                continue;
            }
            '"' => {
                cur.bump();
                Tok::Str(lex_string(&mut cur, pos)?)
            }
            '$' => {
                cur.bump();
                let mut name = String::new();
                while let Some(c) = cur
                    .peek()
                    .filter(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
                {
                    name.push(c);
                    cur.bump();
                }
                if name.is_empty() {
                    return Err(CmdError::Syntax { pos });
                }
                Tok::Var(name)
            }
            '!' => {
                cur.bump();
                if cur.peek() == Some('=') {
                    cur.bump();
                    Tok::NotEq
                } else {
                    Tok::Bang
                }
            }
            '=' | '~' | '<' | '>' | '(' | ')' | '[' | ']' | '{' | '}' | ';' => {
                cur.bump();
                match c {
                    '=' => Tok::Eq,
                    '~' => Tok::Tilde,
                    '<' => Tok::Lt,
                    '>' => Tok::Gt,
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    '[' => Tok::LBracket,
                    ']' => Tok::RBracket,
                    '{' => Tok::LBrace,
                    '}' => Tok::RBrace,
                    _ => Tok::Semi,
                }
            }
            _ => {
                let mut word = String::new();
                while let Some(c) = cur.peek().filter(|c| !is_special(*c)) {
                    word.push(c);
                    cur.bump();
                }
                Tok::Word(word)
            }
        };
        tokens.push(Token { tok, pos, spaced });
        spaced = false;
    }
}

/// The body of a `"..."` string after the opening quote. Decodes `\"` `\\`
/// `\n` `\r` `\t` `\$` `\?` `\_` (space) `\a` `\b` `\f` `\v` and `\XX`
/// (two uppercase hex digits: one byte; bytes are joined as UTF-8).
fn lex_string(cur: &mut Cursor<'_>, start: Pos) -> Result<String, CmdError> {
    let mut bytes: Vec<u8> = Vec::new();
    let push_char = |bytes: &mut Vec<u8>, c: char| {
        let mut buf = [0u8; 4];
        bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    };
    loop {
        let Some(c) = cur.bump() else {
            return Err(CmdError::Syntax { pos: start });
        };
        match c {
            '"' => return Ok(String::from_utf8_lossy(&bytes).into_owned()),
            '\\' => {
                let escape_pos = cur.pos();
                let Some(e) = cur.bump() else {
                    return Err(CmdError::Syntax { pos: start });
                };
                let hex = |c: char| c.is_ascii_digit() || ('A'..='F').contains(&c);
                if hex(e) && cur.peek().is_some_and(hex) {
                    let low = cur.bump().expect("peeked");
                    let byte =
                        u8::from_str_radix(&format!("{e}{low}"), 16).expect("two hex digits");
                    bytes.push(byte);
                    continue;
                }
                let decoded = match e {
                    '"' => '"',
                    '\\' => '\\',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    '$' => '$',
                    '?' => '?',
                    '_' => ' ',
                    'a' => '\u{7}',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'v' => '\u{b}',
                    '\n' => continue,
                    _ => {
                        return Err(CmdError::Syntax {
                            pos: Pos {
                                line: escape_pos.line,
                                column: escape_pos.column.saturating_sub(1),
                            },
                        });
                    }
                };
                push_char(&mut bytes, decoded);
            }
            c => push_char(&mut bytes, c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        lex(src).unwrap().into_iter().map(|t| t.tok).collect()
    }

    fn word(s: &str) -> Tok {
        Tok::Word(s.into())
    }

    #[test]
    fn words_arguments_and_separators() {
        assert_eq!(
            toks("/disk add type=file slot=\"x\";:put 1\n"),
            vec![
                word("/disk"),
                word("add"),
                word("type"),
                Tok::Eq,
                word("file"),
                word("slot"),
                Tok::Eq,
                Tok::Str("x".into()),
                Tok::Semi,
                word(":put"),
                word("1"),
                Tok::Newline,
                Tok::Eof
            ]
        );
        assert_eq!(
            toks("[find where slot~\"^a\" and x!=1]"),
            vec![
                Tok::LBracket,
                word("find"),
                word("where"),
                word("slot"),
                Tok::Tilde,
                Tok::Str("^a".into()),
                word("and"),
                word("x"),
                Tok::NotEq,
                word("1"),
                Tok::RBracket,
                Tok::Eof
            ]
        );
    }

    #[test]
    fn string_escapes_including_hex() {
        assert_eq!(
            toks(r#""a\"b\\c\n\r\t\$\?\_""#)[0],
            Tok::Str("a\"b\\c\n\r\t$? ".into())
        );
        // The client's hex escapes: `$`, `[`, `;` and UTF-8 bytes of "é".
        assert_eq!(toks(r#""\24\5B\3B\C3\A9""#)[0], Tok::Str("$[;é".into()));
        // Lowercase letters after a backslash are named escapes, not hex.
        assert_eq!(toks(r#""\a\b""#)[0], Tok::Str("\u{7}\u{8}".into()));
        assert_eq!(toks("\"a\\\nb\"")[0], Tok::Str("ab".into()));
    }

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let tokens = lex("/disk print\n  :put x").unwrap();
        assert_eq!(tokens[1].pos, Pos { line: 1, column: 7 });
        assert_eq!(tokens[3].pos, Pos { line: 2, column: 3 });
        assert!(tokens[1].spaced && !tokens[0].spaced);
    }

    #[test]
    fn errors_carry_positions() {
        assert_eq!(
            lex("  \"open").unwrap_err(),
            CmdError::Syntax {
                pos: Pos { line: 1, column: 3 }
            }
        );
        assert_eq!(
            lex("x \"\\q\"").unwrap_err(),
            CmdError::Syntax {
                pos: Pos { line: 1, column: 4 }
            }
        );
        assert_eq!(
            lex("$ ").unwrap_err(),
            CmdError::Syntax {
                pos: Pos { line: 1, column: 1 }
            }
        );
    }

    #[test]
    fn comments_and_continuations() {
        assert_eq!(
            toks("# note\n:put 1 \\\n 2"),
            vec![Tok::Newline, word(":put"), word("1"), word("2"), Tok::Eof]
        );
        assert_eq!(toks("a#b"), vec![word("a#b"), Tok::Eof]);
        assert_eq!(
            toks("a\r\nb"),
            vec![word("a"), Tok::Newline, word("b"), Tok::Eof]
        );
    }
}
