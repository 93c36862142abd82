//! Custom hostname validation when the customer's DNS is not on this edge.
//!
//! The activation state machine lives in [`crate::state::activation`]; this
//! module only gathers evidence for it. [`Dns`] asks a configurable resolver
//! (the real-time CNAME check and TXT pre-validation), `http` fetches the
//! HTTP pre-validation challenge, [`Checker`] turns both into one
//! [`Observation`](crate::state::Observation) per hostname, [`Retry`] is
//! Cloudflare's back-off schedule, and [`Verifier`] is the task that runs the
//! checks when they are due and hands status changes to the control plane
//! through a [`StatusSink`], so they go live through the same atomic apply as
//! every operator write.

mod check;
mod config;
mod dns;
mod error;
mod http;
mod schedule;
mod verifier;

pub use check::{Checker, Provider, REFLECTED_BODY};
pub use config::VerifyConfig;
pub use dns::Dns;
pub use error::VerifyError;
pub use schedule::Retry;
pub use verifier::{StatusChange, StatusSink, Verifier};
