//! The XDP SNI classifier seen from userspace: load the program embedded in
//! the binary, attach it to an interface, and keep its maps in sync.
//!
//! The kernel side (`edge-ebpf`) sorts TLS flows into zone chains by SNI
//! before the TCP stack sees them; this module owns everything that program
//! needs from userspace: the routes (host name → chain), the listener ports,
//! the unknown-SNI policy, and the reads of what it decided (flows, counters).
//! [`XdpRuntime`] runs all of it inside `edge serve`: the flow map gives each
//! accepted TLS connection its chain before the handshake finishes.

mod accept;
pub mod cli;
mod config;
mod counters;
mod flows;
mod maps;
mod metrics;
mod program;
pub mod quic;
mod routes;
mod runtime;
mod settings;
pub mod status;
mod sync;

pub use config::XdpConfig;
pub use counters::Counters;
pub use flows::{FlowInfo, Flows, Verdict};
pub use maps::Maps;
pub use metrics::XdpCollector;
pub use program::{
    AttachMode, Classifier, DEFAULT_PIN_ROOT, LoadOptions, ROUTES_LIMIT, routes_max,
};
pub use routes::{HostnameError, RouteAction, RouteTarget, Routes, RoutesFull, route_key};
pub use runtime::{XdpError, XdpRuntime};
pub use settings::{Settings, UnknownSni};
pub use sync::{Plan, RouteSync, USERSPACE_CHAIN, Wanted, wanted};
