//! Shared fixtures for the integration tests.

pub mod chain;
pub mod proxy;
