//! The rules engine: Cloudflare's rules language (parsed and type-checked
//! once, compiled to an evaluator), phases and actions compiled per zone.

pub mod ast;
pub mod compiled;
pub mod context;
pub mod error;
mod eval;
pub mod expression;
pub mod index;
pub mod lexer;
pub mod model;
pub mod parser;
mod prefilter;
pub mod ratelimit;
pub mod scheme;
mod sets;
mod wildcard;

pub use compiled::{
    CannedResponse, CompiledAction, CompiledRule, HeaderValueSource, PhaseRules, ValueSource,
    ZoneRules,
};
pub use context::{ClientInfo, Ctx, RawRequest};
pub use error::{ExprError, RulesError};
pub use expression::{Expression, FieldValue};
pub use model::{Phase, Ruleset};
pub use ratelimit::{Clock, ManualClock, SystemClock};
pub use scheme::{ExprKind, Field, Type};

#[cfg(test)]
mod tests;
