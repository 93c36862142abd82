//! Which zones a request passes through and where it goes: an immutable,
//! indexed [`Snapshot`] of the state with every hostname's chain (or error)
//! precomputed, so the data path resolves a hostname with one hash lookup.

pub mod addresses;
pub mod affected;
mod build;
pub mod error;
mod index;
pub mod model;
pub mod snapshot;
#[cfg(test)]
mod tests;

pub use addresses::OwnAddresses;
pub use affected::{Affected, affected};
pub use error::{EdgeError, ErrorKind};
pub use model::{Chain, ChainHostname, HostHeader, Origin, OriginSni, OriginTls, Stage};
pub use snapshot::{Route, Snapshot};
