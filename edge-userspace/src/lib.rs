//! The edge: packet → chain → stages → origin.

pub mod rules;
pub mod xdp;
