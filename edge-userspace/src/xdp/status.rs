//! What the control API's `GET /xdp` and `GET /xdp/routes` answer: plain
//! serialisable views of the runtime, its maps and its counters.

use std::path::PathBuf;

use edge_common::maps::{ChainCounters, GlobalCounters};
use serde::{Serialize, Serializer};

use super::{AttachMode, Maps, RouteAction, UnknownSni};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct XdpStatus {
    /// `null` while detached.
    pub attached: Option<Attached>,
    /// Applied now when attached, else on the next attach.
    pub unknown_sni: UnknownSni,
    /// The TCP port whose ClientHellos are classified (besides 443).
    pub tls_port: u16,
    /// The UDP port counted as QUIC (besides 443).
    pub quic_port: u16,
    /// How this process classified its TLS connections, since start.
    pub connections: AcceptCounts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attached {
    pub interface: String,
    pub mode: AttachMode,
    /// The kernel's program id (`bpftool prog show id …`).
    pub program_id: u32,
    pub pin_dir: Option<PathBuf>,
    pub maps: MapSizes,
    /// Since the program was loaded (each attach loads it afresh).
    pub counters: HelloCounters,
    /// By chain id; chain 0 holds blocked hostnames and names left to userspace.
    pub chains: Vec<ChainTraffic>,
    /// Traffic of chain ids beyond the chain counters; non-zero only if a
    /// route reached the kernel without the size check.
    pub chain_overflow: ChainOverflow,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapSizes {
    pub routes: MapSize,
    pub flows: MapSize,
    pub chain_counters: MapSize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MapSize {
    /// `null` where counting would cost a syscall per entry (the flow LRU);
    /// for the chain counters, the chain ids routed since the load.
    pub entries: Option<usize>,
    pub max_entries: u32,
}

/// The program's global counters, summed over CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HelloCounters {
    pub client_hellos: u64,
    pub no_sni: u64,
    pub unknown_sni: u64,
    pub policy_drops: u64,
    pub malformed: u64,
    pub truncated: u64,
    pub multi_segment: u64,
    pub later_segment: u64,
    pub non_tls: u64,
    pub quic: u64,
}

impl From<GlobalCounters> for HelloCounters {
    fn from(counters: GlobalCounters) -> Self {
        let GlobalCounters {
            client_hellos,
            no_sni,
            unknown_sni,
            policy_drops,
            malformed,
            truncated,
            multi_segment,
            later_segment,
            non_tls,
            quic,
        } = counters;
        Self {
            client_hellos,
            no_sni,
            unknown_sni,
            policy_drops,
            malformed,
            truncated,
            multi_segment,
            later_segment,
            non_tls,
            quic,
        }
    }
}

/// One chain's traffic as XDP counted it, summed over CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChainTraffic {
    pub chain_id: u32,
    pub packets: u64,
    pub bytes: u64,
    pub drops: u64,
}

impl ChainTraffic {
    pub(super) fn new(chain_id: u32, counters: ChainCounters) -> Self {
        Self {
            chain_id,
            packets: counters.packets,
            bytes: counters.bytes,
            drops: counters.drops,
        }
    }
}

/// What the program counted in the chain counters' overflow slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ChainOverflow {
    pub packets: u64,
    pub bytes: u64,
    pub drops: u64,
}

impl From<ChainCounters> for ChainOverflow {
    fn from(counters: ChainCounters) -> Self {
        Self {
            packets: counters.packets,
            bytes: counters.bytes,
            drops: counters.drops,
        }
    }
}

/// Which path gave each TLS connection its chain. Every connection counts
/// once in `kernel` or `userspace`; `unseen` and `blocked` are parts of those.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AcceptCounts {
    /// The XDP flow map named the same chain (or the block) as the SNI.
    pub kernel: u64,
    /// Classified by SNI in userspace: XDP detached, or it had no chain for
    /// the flow (unknown or missing SNI, an unparsed hello, a name it leaves
    /// to userspace).
    pub userspace: u64,
    /// Of `userspace`: XDP was attached but had no entry for the flow (it
    /// came in on another interface, or the LRU evicted it).
    pub unseen: u64,
    /// Handshakes refused because the hostname is blocked.
    pub blocked: u64,
    /// XDP's verdict named another chain than the SNI's own (a hash collision, or a routes
    /// map out of step): the SNI's chain was used.
    pub disagreed: u64,
}

/// What the program's maps say: `edge xdp stats --json` reads it from the
/// pins of a running edge (or of `edge xdp attach`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProgramStats {
    pub unknown_sni: UnknownSni,
    pub counters: HelloCounters,
    pub chains: Vec<ChainTraffic>,
    pub chain_overflow: ChainOverflow,
}

impl ProgramStats {
    pub(super) fn read(maps: &Maps) -> anyhow::Result<Self> {
        Ok(Self {
            unknown_sni: maps.settings.unknown_sni()?,
            counters: maps.counters.global()?.into(),
            chains: maps
                .counters
                .chains()?
                .into_iter()
                .map(|(id, traffic)| ChainTraffic::new(id, traffic))
                .collect(),
            chain_overflow: maps.counters.overflow()?.into(),
        })
    }
}

/// One entry of the kernel's routes map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelRoute {
    /// The key: `edge_common::sni::hash` of the name, as 16 hex digits
    /// (a JSON number would lose bits).
    #[serde(serialize_with = "hex")]
    pub sni_hash: u64,
    /// The name this process installed under that key; `null` for an entry
    /// someone else wrote.
    pub hostname: Option<String>,
    pub chain_id: u32,
    pub queue: u16,
    pub action: RouteAction,
}

fn hex<S: Serializer>(hash: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format!("{hash:016x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_routes_serialise_hashes_as_hex_strings() {
        let route = KernelRoute {
            sni_hash: 0xfedc_ba98_7654_3210,
            hostname: Some("shop.example.com".into()),
            chain_id: 3,
            queue: 0,
            action: RouteAction::Drop,
        };
        assert_eq!(
            serde_json::to_value(&route).unwrap(),
            serde_json::json!({
                "sni_hash": "fedcba9876543210",
                "hostname": "shop.example.com",
                "chain_id": 3,
                "queue": 0,
                "action": "drop",
            })
        );
    }
}
