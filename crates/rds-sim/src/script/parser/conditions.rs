//! `where`/`find` conditions, and the conditions of `:if`.

use regex::Regex;

use super::{Parser, ends_command};
use crate::error::CmdError;
use crate::records::{disk_property_names, file_property_names, subvolume_property_names};
use crate::script::ast::{CmpOp, Cond, Expr, Menu, RelOp, Test};
use crate::script::lexer::Tok;

impl Parser<'_> {
    /// A `where`/`find` condition up to the end of the command.
    pub(super) fn condition(&mut self, menu: Menu) -> Result<Option<Cond>, CmdError> {
        if ends_command(&self.peek().tok) {
            return Ok(None);
        }
        let names = match menu {
            Menu::Disk => disk_property_names(self.version),
            Menu::File => file_property_names(),
            Menu::DiskBtrfsSubvolume => subvolume_property_names(),
            _ => {
                return Err(CmdError::Syntax {
                    pos: self.peek().pos,
                });
            }
        };
        let cond = self.or(menu, &names)?;
        if !ends_command(&self.peek().tok) {
            return Err(self.end_of_command());
        }
        Ok(Some(cond))
    }

    pub(super) fn or(&mut self, menu: Menu, names: &[&str]) -> Result<Cond, CmdError> {
        let mut left = self.and(menu, names)?;
        while matches!(&self.peek().tok, Tok::Word(w) if w == "or") {
            self.next();
            let right = self.and(menu, names)?;
            left = Cond::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    pub(super) fn and(&mut self, menu: Menu, names: &[&str]) -> Result<Cond, CmdError> {
        let mut left = self.unary(menu, names)?;
        loop {
            match &self.peek().tok {
                Tok::Word(w) if w == "and" => {
                    self.next();
                }
                // Juxtaposed conditions (`[find slot=a type=file]`) mean "and".
                Tok::Word(w) if w != "or" => {}
                Tok::Bang | Tok::LParen => {}
                _ => return Ok(left),
            }
            let right = self.unary(menu, names)?;
            left = Cond::And(Box::new(left), Box::new(right));
        }
    }

    pub(super) fn unary(&mut self, menu: Menu, names: &[&str]) -> Result<Cond, CmdError> {
        let token = self.next();
        match token.tok {
            Tok::Bang => Ok(Cond::Not(Box::new(self.unary(menu, names)?))),
            Tok::Word(w) if w == "not" => Ok(Cond::Not(Box::new(self.unary(menu, names)?))),
            Tok::LParen => {
                let inner = self.or(menu, names)?;
                if self.next().tok != Tok::RParen {
                    return Err(CmdError::Syntax { pos: token.pos });
                }
                Ok(inner)
            }
            Tok::Word(prop) => {
                if !names.contains(&prop.as_str()) {
                    return Err(CmdError::Syntax { pos: token.pos });
                }
                let op = match self.peek().tok {
                    Tok::Eq => CmpOp::Eq,
                    Tok::NotEq => CmpOp::NotEq,
                    Tok::Tilde => CmpOp::Match,
                    Tok::Lt => CmpOp::Less,
                    Tok::Gt => CmpOp::Greater,
                    _ => return Ok(Cond::Truthy(prop)),
                };
                self.next();
                let value_pos = self.peek().pos;
                if ends_command(&self.peek().tok) {
                    return Err(CmdError::Syntax { pos: value_pos });
                }
                let value = self.value(menu)?;
                let regex = match (&value, op) {
                    (Expr::Lit(pattern), CmpOp::Match) => {
                        Some(Regex::new(pattern).map_err(|_| CmdError::Syntax { pos: value_pos })?)
                    }
                    _ => None,
                };
                Ok(Cond::Cmp {
                    prop,
                    op,
                    value,
                    regex,
                })
            }
            _ => Err(CmdError::Syntax { pos: token.pos }),
        }
    }

    /// An `:if` condition up to its closing parenthesis: `||` (or `or`) binds loosest,
    /// then `&&` (`and`), then the comparisons, then `!`.
    pub(super) fn test(&mut self, menu: Menu) -> Result<Test, CmdError> {
        let mut left = self.test_and(menu)?;
        while self.at_word(&["||", "or"]) {
            self.next();
            let right = self.test_and(menu)?;
            left = Test::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn test_and(&mut self, menu: Menu) -> Result<Test, CmdError> {
        let mut left = self.test_compare(menu)?;
        while self.at_word(&["&&", "and"]) {
            self.next();
            let right = self.test_compare(menu)?;
            left = Test::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn test_compare(&mut self, menu: Menu) -> Result<Test, CmdError> {
        let mut left = self.test_unary(menu)?;
        while let Some(op) = self.relation() {
            let right = self.test_unary(menu)?;
            left = Test::Compare(Box::new(left), op, Box::new(right));
        }
        Ok(left)
    }

    /// A comparison operator, consumed; `<=` and `>=` are two tokens without space between.
    fn relation(&mut self) -> Option<RelOp> {
        let op = match self.peek().tok {
            Tok::Eq => RelOp::Eq,
            Tok::NotEq => RelOp::NotEq,
            Tok::Lt => RelOp::Less,
            Tok::Gt => RelOp::Greater,
            _ => return None,
        };
        self.next();
        if self.peek().tok != Tok::Eq || self.peek().spaced {
            return Some(op);
        }
        let with_eq = match op {
            RelOp::Less => RelOp::LessEq,
            RelOp::Greater => RelOp::GreaterEq,
            _ => return Some(op),
        };
        self.next();
        Some(with_eq)
    }

    fn test_unary(&mut self, menu: Menu) -> Result<Test, CmdError> {
        let token = self.peek().clone();
        match token.tok {
            Tok::Bang => {
                self.next();
                Ok(Test::Not(Box::new(self.test_unary(menu)?)))
            }
            Tok::LParen => {
                self.next();
                let inner = self.test(menu)?;
                let close = self.next();
                if close.tok != Tok::RParen {
                    return Err(CmdError::Syntax { pos: close.pos });
                }
                Ok(inner)
            }
            Tok::LBracket | Tok::Var(_) | Tok::Str(_) => Ok(Test::Value(self.value(menu)?)),
            Tok::Word(word) => {
                self.next();
                match word.as_str() {
                    "true" => Ok(Test::Bool(true)),
                    "false" => Ok(Test::Bool(false)),
                    _ => word
                        .parse()
                        .map(Test::Num)
                        .map_err(|_| CmdError::Syntax { pos: token.pos }),
                }
            }
            _ => Err(CmdError::Syntax { pos: token.pos }),
        }
    }

    fn at_word(&self, words: &[&str]) -> bool {
        matches!(&self.peek().tok, Tok::Word(w) if words.contains(&w.as_str()))
    }
}
