//! What a run did, in order: every stage, phase and rule, whether it matched
//! or why it was skipped, the field values that decided it, and the action.
//! This answers "which zone's rule acted on my O2O request?".

use serde::{Deserialize, Serialize};

use crate::rules::{FieldValue, Phase};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub stages: Vec<StageTrace>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Request,
    Response,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTrace {
    pub zone: String,
    pub direction: Direction,
    /// Whether the stage saw `cf-connecting-o2o: 1`.
    pub o2o_header: bool,
    pub phases: Vec<PhaseTrace>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseTrace {
    pub phase: Phase,
    /// Why the whole phase did not run (a `skip` rule named it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub rules: Vec<RuleTrace>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result", content = "reason")]
pub enum RuleResult {
    Matched,
    NotMatched,
    Skipped(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleTrace {
    pub index: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub expression: String,
    #[serde(flatten)]
    pub result: RuleResult,
    /// Values of the fields the expression reads, as the rule saw them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldValue>,
    /// What the rule did when it matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}
