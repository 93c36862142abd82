//! The XDP SNI classifier seen from userspace: load the program embedded in
//! the binary, attach it to an interface, and keep its maps in sync.
//!
//! The kernel side (`edge-ebpf`) sorts TLS flows into zone chains by SNI
//! before the TCP stack sees them; this module owns everything that program
//! needs from userspace: the routes (host name → chain), the listener ports,
//! the unknown-SNI policy, and the reads of what it decided (flows, counters).

pub mod cli;
mod counters;
mod flows;
mod maps;
mod program;
mod routes;
mod settings;
mod sync;

pub use counters::Counters;
pub use flows::{FlowInfo, Flows, Verdict};
pub use maps::Maps;
pub use program::{AttachMode, Classifier, DEFAULT_PIN_ROOT, LoadOptions};
pub use routes::{HostnameError, RouteAction, RouteTarget, Routes, route_key};
pub use settings::{Settings, UnknownSni};
pub use sync::{Plan, RouteSync, plan, wanted};
