//! Shared fixtures for the integration tests.

pub mod binary;
pub mod chain;
pub mod control;
pub mod dns;
pub mod frames;
pub mod h2raw;
pub mod h3;
pub mod handshake;
pub mod hello;
pub mod netns;
pub mod proxy;
pub mod tls;
pub mod xdp;
