//! The edge: packet → chain → stages → origin.
//!
//! `downstream` accepts connections, `chain` resolves which zones a request
//! passes through, `stages` runs their `rules`, `pipeline` ties the request
//! path together and `upstream` carries it to the origin.

pub mod admission;
pub mod apply;
pub mod chain;
pub mod config;
pub mod control;
pub mod downstream;
pub mod duration_ms;
pub mod echo;
pub mod fuzzing;
pub mod hop_by_hop;
pub mod json_depth;
pub mod memory;
pub mod metrics;
pub mod per_address;
pub mod pipeline;
pub mod routing;
pub mod rules;
pub mod serve;
pub mod stages;
pub mod state;
pub mod upstream;
pub mod verify;
pub mod vouched;
pub mod xdp;
