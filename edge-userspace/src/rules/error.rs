//! Errors of the rules engine. Expression errors carry the position so an
//! operator sees exactly where a rule went wrong (line, column and a caret),
//! and ruleset errors name the phase, rule index and field.

use std::fmt;

use super::model::Phase;

/// A syntax or type error inside one expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub message: String,
    /// 1-based line of the error.
    pub line: usize,
    /// 1-based column (in characters) of the error.
    pub column: usize,
    /// The offending source line followed by a caret line pointing at the error.
    pub snippet: String,
}

impl ExprError {
    /// Builds the error for byte offset `at` of `src`.
    pub(crate) fn at(src: &str, at: usize, message: impl Into<String>) -> Self {
        let at = floor_char_boundary(src, at.min(src.len()));
        let line_start = src[..at].rfind('\n').map_or(0, |i| i + 1);
        let line_end = src[at..].find('\n').map_or(src.len(), |i| at + i);
        let line = src[..at].matches('\n').count() + 1;
        let column = src[line_start..at].chars().count() + 1;
        let text = &src[line_start..line_end];
        let snippet = format!("{text}\n{}^", " ".repeat(column - 1));
        ExprError {
            message: message.into(),
            line,
            column,
            snippet,
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {}, column {}\n{}",
            self.message, self.line, self.column, self.snippet
        )
    }
}

impl std::error::Error for ExprError {}

/// A ruleset that cannot be compiled; nothing of it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesError {
    pub phase: Phase,
    /// Index of the rule inside the phase's ruleset.
    pub rule: usize,
    /// JSON path of the offending field inside the rule, e.g. `action_parameters.uri.path`.
    pub field: String,
    pub message: String,
}

impl RulesError {
    pub(crate) fn new(phase: Phase, rule: usize, field: &str, message: impl Into<String>) -> Self {
        RulesError {
            phase,
            rule,
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "phase {}, rule {}, field `{}`: {}",
            self.phase, self.rule, self.field, self.message
        )
    }
}

impl std::error::Error for RulesError {}
