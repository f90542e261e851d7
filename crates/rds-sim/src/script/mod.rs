//! The RouterOS script subset: lexer, parser, evaluator and values.

pub mod ast;
pub mod eval;
pub mod lexer;
pub mod parser;
pub mod value;

pub use ast::Script;
pub use eval::{RunContext, RunOutput, run};
pub use parser::parse;
pub use value::Value;
