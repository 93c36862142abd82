//! The edge: packet → chain → stages → origin.

pub mod downstream;
pub mod echo;
pub mod pipeline;
pub mod rules;
pub mod upstream;
