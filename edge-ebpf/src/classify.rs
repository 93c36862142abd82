//! From a parsed packet to a verdict: route lookup, flow record, counters,
//! and the resumption of ClientHellos that span several TCP segments.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use aya_log_ebpf::debug;
use edge_common::maps::{
    ACTION_DROP, FLOW_LATER_SEGMENT, FLOW_NAME_PAST_DOT, FLOW_WILDCARD, Flow, FlowKey, LISTEN_QUIC,
    LISTEN_TLS, UNKNOWN_SNI_DROP, VERDICT_BLOCKED, VERDICT_NO_SNI, VERDICT_PENDING, VERDICT_ROUTED,
    VERDICT_UNKNOWN, VERDICT_UNKNOWN_DROPPED, VERDICT_UNPARSED,
};

use crate::counters;
use crate::maps::{CONFIG, FLOWS, LISTEN_PORTS, ROUTES};
use crate::packet::Packet;
use crate::parse::{self, IPPROTO_TCP, IPPROTO_UDP, Transport};
use crate::tls::{self, NameHash, Outcome};

const PASS: u32 = xdp_action::XDP_PASS;
const DROP: u32 = xdp_action::XDP_DROP;

#[inline(always)]
pub fn packet(ctx: &XdpContext) -> u32 {
    let pkt = Packet::new(ctx);
    let Some(t) = parse::transport(&pkt) else {
        return PASS;
    };
    let pkt = pkt.limited(t.end);
    let Some([s0, s1, d0, d1]) = pkt.bytes::<4>(t.l4) else {
        return PASS;
    };
    let dst_port = u16::from_be_bytes([d0, d1]);
    let listen = LISTEN_PORTS.get(dst_port as u32).copied().unwrap_or(0);
    match t.proto {
        IPPROTO_TCP if listen & LISTEN_TLS != 0 => {
            tcp(ctx, &pkt, &t, u16::from_be_bytes([s0, s1]), dst_port)
        }
        IPPROTO_UDP if listen & LISTEN_QUIC != 0 => {
            counters::global(|g| g.quic += 1);
            crate::quic::datagram(&pkt, &t);
            PASS
        }
        _ => PASS,
    }
}

#[inline(always)]
fn tcp(ctx: &XdpContext, pkt: &Packet, t: &Transport, src_port: u16, dst_port: u16) -> u32 {
    let Some(seq) = pkt.be32(t.l4 + 4) else {
        return PASS;
    };
    let Some(data_offset) = pkt.u8(t.l4 + 12) else {
        return PASS;
    };
    let header_len = (data_offset >> 4) as usize * 4;
    let payload = t.l4 + header_len;
    // Pure ACKs, the bulk of a download's ingress, are not looked up: the
    // chain counters count data-carrying segments.
    if header_len < 20 || payload >= t.end {
        return PASS;
    }
    let Some(key) = parse::flow_key(pkt, t, src_port, dst_port) else {
        return PASS;
    };
    let segment = Segment {
        key,
        seq,
        payload,
        payload_len: t.end - payload,
        bytes: pkt.len(),
    };
    if let Some(record_len) = tls::client_hello_record(pkt, payload) {
        let spans_segments = record_len + 5 > segment.payload_len;
        if spans_segments {
            counters::global(|g| g.multi_segment += 1);
        }
        first_segment(ctx, pkt, &segment, spans_segments)
    } else {
        later_segment(ctx, pkt, &segment)
    }
}

/// A TCP segment to a TLS listener port.
struct Segment {
    key: FlowKey,
    seq: u32,
    /// Offset of the TCP payload in the frame.
    payload: usize,
    payload_len: usize,
    /// Frame length, for the chain's byte counter.
    bytes: u64,
}

impl Segment {
    /// The TCP sequence number of the payload byte at frame offset `off`.
    #[inline(always)]
    fn seq_at(&self, off: usize) -> u32 {
        self.seq.wrapping_add((off - self.payload) as u32)
    }
}

/// A segment that starts a ClientHello record.
#[inline(always)]
fn first_segment(ctx: &XdpContext, pkt: &Packet, seg: &Segment, spans_segments: bool) -> u32 {
    match tls::client_hello(pkt, seg.payload) {
        Outcome::Sni { hash, wildcard } => {
            let (flow, action) = decide(hash, wildcard, 0);
            // The client retransmits a hello that got no answer: dropped again, but counted
            // once per flow, not per packet.
            let again = action == DROP
                && FLOWS.get_ptr(&seg.key).is_some_and(|seen| {
                    // SAFETY: an LRU map value, copied out (see `later_segment`).
                    let seen = unsafe { *seen };
                    seen.verdict == flow.verdict && seen.sni_hash == hash
                });
            let _ = FLOWS.insert(&seg.key, &flow, 0);
            if again {
                return DROP;
            }
            count_hello(&flow);
            action_for(ctx, &flow, seg, action)
        }
        Outcome::NoSni => {
            counters::global(|g| {
                g.client_hellos += 1;
                g.no_sni += 1;
            });
            let _ = FLOWS.insert(&seg.key, &flow(VERDICT_NO_SNI, 0), 0);
            PASS
        }
        Outcome::Continues { next, end } => {
            let pending = Flow {
                resume_seq: seg.seq_at(next),
                ext_end_seq: seg.seq_at(end),
                ..flow(VERDICT_PENDING, 0)
            };
            let _ = FLOWS.insert(&seg.key, &pending, 0);
            debug!(ctx, "ClientHello continues in a later segment");
            PASS
        }
        Outcome::HeaderContinues {
            part,
            part_len,
            end,
        } => {
            let pending = pending_header(seg, part, part_len, end);
            let _ = FLOWS.insert(&seg.key, &pending, 0);
            PASS
        }
        Outcome::NameContinues { name, left } => {
            let _ = FLOWS.insert(&seg.key, &pending_name(seg, &name, left), 0);
            debug!(
                ctx,
                "ClientHello's server_name continues in a later segment"
            );
            PASS
        }
        Outcome::Malformed => {
            counters::global(|g| g.malformed += 1);
            debug!(ctx, "malformed ClientHello");
            PASS
        }
        Outcome::Truncated => {
            counters::global(|g| g.truncated += 1);
            // Its later segments belong to a known flow, not to "non-TLS".
            if spans_segments {
                let _ = FLOWS.insert(&seg.key, &flow(VERDICT_UNPARSED, 0), 0);
            }
            PASS
        }
    }
}

/// A pending flow whose extension header continues at the start of the next
/// segment.
#[inline(always)]
fn pending_header(seg: &Segment, part: [u8; 3], part_len: usize, end: usize) -> Flow {
    Flow {
        resume_seq: seg.seq.wrapping_add(seg.payload_len as u32),
        ext_end_seq: seg.seq_at(end),
        header_part: part,
        header_part_len: part_len as u8,
        ..flow(VERDICT_PENDING, 0)
    }
}

/// A pending flow whose host name continues at the start of the next segment.
#[inline(always)]
fn pending_name(seg: &Segment, name: &NameHash, left: usize) -> Flow {
    Flow {
        sni_hash: name.hash,
        name_wildcard: name.wildcard,
        resume_seq: seg.seq.wrapping_add(seg.payload_len as u32),
        name_left: left as u16,
        flags: if name.past_dot { FLOW_NAME_PAST_DOT } else { 0 },
        ..flow(VERDICT_PENDING, 0)
    }
}

/// Any other segment to the listener: accounted to its flow's chain, and the
/// continuation of a pending ClientHello is walked. Never dropped: the
/// segments before it already reached the TCP stack, so the proxy acts on the
/// recorded verdict instead.
#[inline(always)]
fn later_segment(ctx: &XdpContext, pkt: &Packet, seg: &Segment) -> u32 {
    let Some(flow) = FLOWS.get_ptr_mut(&seg.key) else {
        if !pkt.u8(seg.payload).is_some_and(tls::is_record_type) {
            counters::global(|g| g.non_tls += 1);
        }
        return PASS;
    };
    // SAFETY: an LRU map value; a concurrent update of the same flow on another
    // CPU can at worst interleave two field writes, both from valid verdicts.
    let flow = unsafe { &mut *flow };
    if flow.verdict == VERDICT_PENDING {
        resume(ctx, pkt, seg, flow);
    }
    if flow.verdict == VERDICT_ROUTED || flow.verdict == VERDICT_BLOCKED {
        counters::chain(flow.chain_id, seg.bytes, false);
    }
    PASS
}

/// Continues the extension walk of a pending flow inside this segment.
#[inline(always)]
fn resume(ctx: &XdpContext, pkt: &Packet, seg: &Segment, flow: &mut Flow) {
    let next = flow.resume_seq.wrapping_sub(seg.seq) as usize;
    // Before this segment (a retransmission) or past it (a gap): wait.
    if next >= seg.payload_len {
        return;
    }
    let outcome = if flow.name_left > 0 {
        let name = NameHash {
            hash: flow.sni_hash,
            wildcard: flow.name_wildcard,
            past_dot: flow.flags & FLOW_NAME_PAST_DOT != 0,
        };
        // MSS >= 536 > 253: the rest of a name is always in one segment.
        match tls::hash_name(pkt, seg.payload + next, flow.name_left as usize, name) {
            Some(name) => name.outcome(),
            None => Outcome::Truncated,
        }
    } else {
        let end = seg.payload + flow.ext_end_seq.wrapping_sub(seg.seq) as usize;
        let start = if flow.header_part_len > 0 {
            finish_header(pkt, seg.payload + next, flow, end)
        } else {
            Ok(seg.payload + next)
        };
        // One walk for both starts, entered with wide ranges (see `forget`).
        match start.and_then(|start| tls::forget(start, end).ok_or(Outcome::Truncated)) {
            Ok((start, end)) => tls::extensions(pkt, start, end),
            Err(outcome) => outcome,
        }
    };
    match outcome {
        Outcome::Sni { hash, wildcard } => {
            let (decided, _) = decide(hash, wildcard, FLOW_LATER_SEGMENT);
            count_hello(&decided);
            *flow = decided;
            counters::global(|g| g.later_segment += 1);
            debug!(ctx, "ClientHello classified from a later segment");
        }
        Outcome::NoSni => {
            *flow = self::flow(VERDICT_NO_SNI, FLOW_LATER_SEGMENT);
            counters::global(|g| {
                g.client_hellos += 1;
                g.no_sni += 1;
            });
        }
        Outcome::Continues { next, end } => {
            *flow = Flow {
                resume_seq: seg.seq_at(next),
                ext_end_seq: seg.seq_at(end),
                ..self::flow(VERDICT_PENDING, 0)
            };
        }
        Outcome::NameContinues { name, left } => *flow = pending_name(seg, &name, left),
        Outcome::HeaderContinues {
            part,
            part_len,
            end,
        } => *flow = pending_header(seg, part, part_len, end),
        Outcome::Malformed => {
            *flow = self::flow(VERDICT_UNPARSED, FLOW_LATER_SEGMENT);
            counters::global(|g| g.malformed += 1);
        }
        Outcome::Truncated => {
            *flow = self::flow(VERDICT_UNPARSED, FLOW_LATER_SEGMENT);
            counters::global(|g| g.truncated += 1);
        }
    }
}

/// Completes an extension header whose first bytes the flow carries with
/// the bytes at `off`: where the walk goes on, or how it ended.
#[inline(always)]
fn finish_header(pkt: &Packet, off: usize, flow: &Flow, end: usize) -> Result<usize, Outcome> {
    let Some([r0, r1, r2, _]) = pkt.bytes::<4>(off) else {
        return Err(Outcome::Truncated);
    };
    let [p0, p1, p2] = flow.header_part;
    let (header, taken) = match flow.header_part_len {
        1 => ([p0, r0, r1, r2], 3),
        2 => ([p0, p1, r0, r1], 2),
        _ => ([p0, p1, p2, r0], 1),
    };
    tls::extension(pkt, header, off + taken, end)
}

/// What to do with a hello for this SNI: the route of the exact name, else
/// of its wildcard key, else the unknown-SNI policy.
#[inline(always)]
fn decide(hash: u64, wildcard: Option<u64>, flags: u8) -> (Flow, u32) {
    let exact = ROUTES.get_ptr(&hash);
    let (route, flags) = match (exact, wildcard) {
        (Some(route), _) => (Some(route), flags),
        (None, Some(wildcard)) => (ROUTES.get_ptr(&wildcard), flags | FLOW_WILDCARD),
        (None, None) => (None, flags),
    };
    let Some(route) = route else {
        let strict = CONFIG
            .get(0)
            .is_some_and(|config| config.unknown_sni == UNKNOWN_SNI_DROP);
        let verdict = if strict {
            VERDICT_UNKNOWN_DROPPED
        } else {
            VERDICT_UNKNOWN
        };
        let flow = Flow {
            sni_hash: hash,
            ..self::flow(verdict, flags & !FLOW_WILDCARD)
        };
        return (flow, if strict { DROP } else { PASS });
    };
    // SAFETY: a hash map value read once; userspace replaces routes whole.
    let route = unsafe { *route };
    let blocked = route.action == ACTION_DROP;
    let flow = Flow {
        sni_hash: hash,
        chain_id: route.chain_id,
        queue: route.queue,
        verdict: if blocked {
            VERDICT_BLOCKED
        } else {
            VERDICT_ROUTED
        },
        flags,
        ..Flow::default()
    };
    (flow, if blocked { DROP } else { PASS })
}

/// Counts a hello classified by its SNI, once per flow.
#[inline(always)]
fn count_hello(flow: &Flow) {
    let unknown = flow.verdict == VERDICT_UNKNOWN || flow.verdict == VERDICT_UNKNOWN_DROPPED;
    counters::global(|g| {
        g.client_hellos += 1;
        if unknown {
            g.unknown_sni += 1;
        }
    });
}

/// Applies a first-segment decision and accounts it: a blocked hostname's
/// drop under its own chain and, like a strict-mode drop, in `policy_drops`.
#[inline(always)]
fn action_for(ctx: &XdpContext, flow: &Flow, seg: &Segment, action: u32) -> u32 {
    let dropped = action == DROP;
    match flow.verdict {
        VERDICT_ROUTED | VERDICT_BLOCKED => counters::chain(flow.chain_id, seg.bytes, dropped),
        _ => {}
    }
    if dropped {
        counters::global(|g| g.policy_drops += 1);
    }
    if dropped {
        debug!(ctx, "ClientHello dropped, verdict {}", flow.verdict);
    }
    action
}

#[inline(always)]
fn flow(verdict: u8, flags: u8) -> Flow {
    Flow {
        verdict,
        flags,
        ..Flow::default()
    }
}
