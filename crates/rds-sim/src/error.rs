//! RouterOS error texts. `Display` gives exactly what the device prints.

use std::fmt;

/// A position in a script, 1-based, as RouterOS reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(line {} column {})", self.line, self.column)
    }
}

/// An error a command (or the parse of a script) ends with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdError {
    /// An unknown word where a command or menu was expected.
    #[error("bad command name {word} {pos}")]
    BadCommandName { word: String, pos: Pos },
    /// An unknown argument or a stray token.
    #[error("expected end of command {pos}")]
    ExpectedEndOfCommand { pos: Pos },
    /// Unparseable input (unknown slash-joined path, unbalanced brackets...).
    #[error("syntax error {pos}")]
    Syntax { pos: Pos },
    /// A bad enum or boolean value.
    #[error("input does not match any value of {0}")]
    NoMatchingValue(String),
    /// A bad number.
    #[error("invalid value for argument {0}")]
    InvalidValue(String),
    /// A mandatory argument is absent.
    #[error("missing value(s) of argument(s) {0}")]
    MissingArguments(String),
    /// A referenced item does not exist.
    #[error("no such item")]
    NoSuchItem,
    /// An `:if` condition (or `!`, `&&`, `||` operand) that is not a boolean.
    #[error("conditional not boolean")]
    NotBoolean,
    /// A runtime failure; printed as `failure: <reason>`.
    #[error("failure: {0}")]
    Failure(String),
    /// An error text injected by fault injection, printed verbatim.
    #[error("{0}")]
    Injected(String),
}

impl CmdError {
    pub fn failure(reason: impl Into<String>) -> Self {
        Self::Failure(reason.into())
    }

    /// A command that was understood but refused (as opposed to a script that does not
    /// parse, or an injected text).
    pub fn is_refusal(&self) -> bool {
        match self {
            CmdError::NoMatchingValue(_)
            | CmdError::InvalidValue(_)
            | CmdError::MissingArguments(_)
            | CmdError::NoSuchItem
            | CmdError::NotBoolean
            | CmdError::Failure(_) => true,
            CmdError::BadCommandName { .. }
            | CmdError::ExpectedEndOfCommand { .. }
            | CmdError::Syntax { .. }
            | CmdError::Injected(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_match_the_device() {
        let pos = Pos {
            line: 1,
            column: 12,
        };
        assert_eq!(
            CmdError::BadCommandName {
                word: "frob".into(),
                pos
            }
            .to_string(),
            "bad command name frob (line 1 column 12)"
        );
        assert_eq!(
            CmdError::ExpectedEndOfCommand { pos }.to_string(),
            "expected end of command (line 1 column 12)"
        );
        assert_eq!(
            CmdError::Syntax { pos }.to_string(),
            "syntax error (line 1 column 12)"
        );
        assert_eq!(
            CmdError::NoMatchingValue("type".into()).to_string(),
            "input does not match any value of type"
        );
        assert_eq!(
            CmdError::InvalidValue("file-size".into()).to_string(),
            "invalid value for argument file-size"
        );
        assert_eq!(CmdError::NoSuchItem.to_string(), "no such item");
        assert_eq!(
            CmdError::failure("file already exists").to_string(),
            "failure: file already exists"
        );
    }
}
