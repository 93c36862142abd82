//! The rules engine: Cloudflare's rules language, phases and actions.

pub mod model;
