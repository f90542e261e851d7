//! The RouterOS script subset: lexer, parser, evaluator and values.

pub mod eval;
pub mod lexer;
pub mod parser;
pub mod value;

pub use eval::{RunContext, RunOutput, run};
pub use parser::{Script, parse};
pub use value::Value;
