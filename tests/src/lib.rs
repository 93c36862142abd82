//! Shared fixtures for the integration tests.

pub mod frames;
pub mod hello;
pub mod netns;
pub mod tls;
pub mod xdp;
