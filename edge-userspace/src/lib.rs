//! The edge: packet → chain → stages → origin.

pub mod chain;
pub mod rules;
pub mod stages;
pub mod state;
