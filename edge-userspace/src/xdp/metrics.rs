//! The XDP program's counters in the edge's `/metrics`: read from the maps
//! on each scrape (the program counts per CPU in the kernel; nothing is
//! mirrored in userspace). Nothing is written while XDP is detached.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

use super::XdpRuntime;
use super::status::ChainTraffic;

/// One number of a chain's traffic.
type Field = fn(&ChainTraffic) -> u64;

/// Registered with [`crate::metrics::Metrics::register_collector`].
#[derive(Debug)]
pub struct XdpCollector(pub Arc<XdpRuntime>);

impl Collector for XdpCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let attached = match self.0.status() {
            Ok(status) => status.attached,
            Err(error) => {
                // A failed map read leaves the XDP series out of this scrape
                // (a gap, rather than made-up numbers).
                tracing::warn!("XDP counters not scraped: {error:#}");
                return Ok(());
            }
        };
        let Some(attached) = attached else {
            return Ok(());
        };
        let c = attached.counters;
        for (name, help, value) in [
            (
                "xdp_client_hellos",
                "TLS ClientHellos parsed",
                c.client_hellos,
            ),
            ("xdp_no_sni", "ClientHellos without an SNI", c.no_sni),
            (
                "xdp_unknown_sni",
                "ClientHellos whose SNI has no route",
                c.unknown_sni,
            ),
            (
                "xdp_policy_drops",
                "Packets dropped by a block route or the unknown-SNI policy",
                c.policy_drops,
            ),
            (
                "xdp_malformed",
                "ClientHellos that did not parse",
                c.malformed,
            ),
            (
                "xdp_truncated",
                "ClientHellos cut short in the packet",
                c.truncated,
            ),
            (
                "xdp_multi_segment",
                "ClientHellos spread over several TCP segments",
                c.multi_segment,
            ),
            (
                "xdp_later_segment",
                "Later segments of multi-segment ClientHellos",
                c.later_segment,
            ),
            (
                "xdp_non_tls",
                "First payloads on the TLS ports that are not TLS handshakes",
                c.non_tls,
            ),
            ("xdp_quic", "UDP datagrams on the QUIC ports", c.quic),
            (
                "xdp_chain_overflow_packets",
                "Packets of chain ids beyond the XDP chain counters (0 unless a route bypassed the size check)",
                attached.chain_overflow.packets,
            ),
            (
                "xdp_chain_overflow_bytes",
                "Bytes of chain ids beyond the XDP chain counters",
                attached.chain_overflow.bytes,
            ),
            (
                "xdp_chain_overflow_drops",
                "Drops of chain ids beyond the XDP chain counters",
                attached.chain_overflow.drops,
            ),
        ] {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let per_chain: [(&str, &str, Field); 3] = [
            (
                "xdp_chain_packets",
                "Packets XDP counted to a chain (chain 0: blocked or left to userspace)",
                |t| t.packets,
            ),
            ("xdp_chain_bytes", "Bytes XDP counted to a chain", |t| {
                t.bytes
            }),
            ("xdp_chain_drops", "Packets of a chain XDP dropped", |t| {
                t.drops
            }),
        ];
        for (name, help, value) in per_chain {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for chain in &attached.chains {
                let labels = [("chain_id", chain.chain_id.to_string())];
                ConstCounter::new(value(chain)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
