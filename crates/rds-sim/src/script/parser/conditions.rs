//! `where`/`find` conditions.

use regex::Regex;

use super::{Parser, ends_command};
use crate::error::CmdError;
use crate::records::{disk_property_names, file_property_names};
use crate::script::ast::{CmpOp, Cond, Expr, Menu};
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
}
