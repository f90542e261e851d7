//! `print` options.

use super::{Parser, ends_command};
use crate::error::CmdError;
use crate::script::ast::{Command, Menu, PrintOpts};
use crate::script::lexer::Tok;

impl Parser<'_> {
    pub(super) fn print(&mut self, menu: Menu) -> Result<Command, CmdError> {
        let mut opts = PrintOpts::default();
        let mut filter = None;
        loop {
            let token = self.peek().clone();
            if ends_command(&token.tok) {
                break;
            }
            let Tok::Word(word) = &token.tok else {
                return Err(self.end_of_command());
            };
            self.next();
            match word.as_str() {
                "where" if menu.is_list() => {
                    filter = self.condition(menu)?;
                    break;
                }
                "detail" => opts.detail = true,
                "terse" => opts.terse = true,
                "as-value" => opts.as_value = true,
                "count-only" => opts.count_only = true,
                "show-ids" => opts.show_ids = true,
                "without-paging" | "brief" => {}
                "proplist" if self.peek().tok == Tok::Eq && !self.peek().spaced => {
                    self.next();
                    opts.proplist = Some(self.value_after_eq(menu)?);
                }
                _ => return Err(CmdError::ExpectedEndOfCommand { pos: token.pos }),
            }
        }
        Ok(Command::Print { menu, opts, filter })
    }
}
