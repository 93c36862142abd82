//! The maps shared by the XDP program and userspace: names, sizes, key and
//! value layouts.
//!
//! Every type is `#[repr(C)]` with its padding spelled out as fields, so that
//! both sides agree byte for byte and the kernel never hashes uninitialised
//! padding into a key.

/// SNI hash ([`crate::sni::hash`]) → [`Route`].
pub const ROUTES: &str = "ROUTES";
/// [`FlowKey`] → [`Flow`], LRU: what the classifier decided for each TLS flow.
pub const FLOWS: &str = "FLOWS";
/// Per-CPU array of [`ChainCounters`]: chain id `c` at slot [`chain_slot`]`(c)`,
/// slot [`CHAIN_OVERFLOW_SLOT`] for ids beyond the array. An array rather
/// than a hash: the lookup is an index, which the JIT inlines (a per-CPU hash
/// lookup cost ~25 ns on every classified packet), and userspace has no entry
/// to create per chain.
pub const CHAIN_COUNTERS: &str = "CHAIN_COUNTERS";
/// Per-CPU array of one [`GlobalCounters`].
pub const GLOBAL_COUNTERS: &str = "GLOBAL_COUNTERS";
/// Array indexed by destination port: [`LISTEN_TLS`] / [`LISTEN_QUIC`] flags.
pub const LISTEN_PORTS: &str = "LISTEN_PORTS";
/// Array of one [`Config`].
pub const CONFIG: &str = "CONFIG";

pub const ROUTES_MAX: u32 = 1 << 17;
pub const FLOWS_MAX: u32 = 1 << 16;
/// Chain ids the compiled `CHAIN_COUNTERS` counts (userspace sizes it with
/// the routes map at load); the array holds one slot more, for the overflow.
pub const CHAINS_MAX: u32 = 1 << 14;
/// One slot per TCP/UDP port, so the port check is an array index.
pub const LISTEN_PORTS_MAX: u32 = 1 << 16;

/// The `CHAIN_COUNTERS` slot that counts packets of chain ids the array has no
/// slot for. Userspace never routes to such an id (it refuses routes beyond
/// the array), so anything here means a writer bypassed that check; the
/// program still counts the packet rather than lose it.
pub const CHAIN_OVERFLOW_SLOT: u32 = 0;

/// The `CHAIN_COUNTERS` slot of `chain_id`: one past it, so that the overflow
/// slot is 0 whatever the array's size (and `u32::MAX` wraps onto it).
#[inline(always)]
pub const fn chain_slot(chain_id: u32) -> u32 {
    chain_id.wrapping_add(1)
}

/// TCP to this port carries TLS: ClientHellos are classified.
pub const LISTEN_TLS: u8 = 1;
/// UDP to this port carries QUIC: counted and passed (Initials are encrypted).
pub const LISTEN_QUIC: u8 = 2;

/// Pass the ClientHello and record the flow for its chain.
pub const ACTION_PASS: u8 = 0;
/// The host name is blocked: drop the ClientHello so the handshake never completes.
pub const ACTION_DROP: u8 = 1;

/// What a custom host name maps to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Route {
    pub chain_id: u32,
    pub queue: u16,
    /// [`ACTION_PASS`] or [`ACTION_DROP`].
    pub action: u8,
    pub _pad: u8,
}

/// A TCP flow as the server sees it: the client is the source. IPv4 addresses
/// are stored IPv4-mapped (`::ffff:a.b.c.d`) so one key type covers both
/// families and matches what a dual-stack socket reports. Ports are in host
/// byte order. Aligned to 8 so that the XDP program can clear and copy it
/// with word stores instead of byte loops (the layout is unchanged).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    /// IP protocol number (6 for TCP).
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// A chain was found for the SNI; `chain_id` and `queue` are valid.
pub const VERDICT_ROUTED: u8 = 1;
/// The SNI's route says drop; `chain_id` is the route's chain.
pub const VERDICT_BLOCKED: u8 = 2;
/// No route for the SNI, passed under the default policy.
pub const VERDICT_UNKNOWN: u8 = 3;
/// No route for the SNI, dropped under the strict policy.
pub const VERDICT_UNKNOWN_DROPPED: u8 = 4;
/// The ClientHello carries no `server_name`.
pub const VERDICT_NO_SNI: u8 = 5;
/// The ClientHello continues in a later segment; `resume_seq` says where.
pub const VERDICT_PENDING: u8 = 6;
/// A multi-segment ClientHello whose later part could not be read.
pub const VERDICT_UNPARSED: u8 = 7;

/// [`Flow::flags`]: the route was found through the name's wildcard key.
pub const FLOW_WILDCARD: u8 = 1;
/// [`Flow::flags`]: the SNI was read from a later segment of the ClientHello.
pub const FLOW_LATER_SEGMENT: u8 = 2;
/// [`Flow::flags`], while `name_left > 0`: the part of the name seen so far
/// holds a dot, so `name_wildcard` is live.
pub const FLOW_NAME_PAST_DOT: u8 = 4;

/// What the classifier decided for a flow; the proxy reads it after its first
/// read on an accepted connection (the ClientHello has crossed XDP by then).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    /// Hash of the exact SNI (not of the wildcard key that matched). While
    /// `name_left > 0`: the hash of the part of the name seen so far.
    pub sni_hash: u64,
    /// While `name_left > 0`: the wildcard key of the part seen so far.
    pub name_wildcard: u64,
    pub chain_id: u32,
    /// Pending flows: TCP sequence number of the next extension header, or of
    /// the rest of the name when `name_left > 0`.
    pub resume_seq: u32,
    /// Pending flows: TCP sequence number where the extensions end.
    pub ext_end_seq: u32,
    pub queue: u16,
    /// Pending flows: bytes of a `server_name` cut by the segment boundary
    /// still to hash.
    pub name_left: u16,
    /// One of the `VERDICT_*` values.
    pub verdict: u8,
    /// `FLOW_*` bits.
    pub flags: u8,
    /// Pending flows: the first bytes of an extension header cut by the
    /// segment boundary (`header_part_len` of them, 0 when none).
    pub header_part: [u8; 3],
    pub header_part_len: u8,
    pub _pad: [u8; 2],
}

/// Per chain, per CPU: traffic of the chain's classified flows (the
/// ClientHello and every later segment carrying data; pure ACKs are not
/// looked up).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainCounters {
    pub packets: u64,
    pub bytes: u64,
    /// ClientHellos dropped because the route's action is drop.
    pub drops: u64,
}

/// Per CPU: what the classifier saw, independent of chains.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalCounters {
    /// ClientHellos walked to the end of their extensions (SNI found or not).
    pub client_hellos: u64,
    /// Of those, hellos without `server_name`.
    pub no_sni: u64,
    /// Of those, hellos whose SNI has no route.
    pub unknown_sni: u64,
    /// Hellos dropped by policy, once per flow (not per retransmission):
    /// blocked hostnames, and unknown SNIs in strict mode.
    pub policy_drops: u64,
    /// Hellos with a length field that contradicts the record or the message.
    pub malformed: u64,
    /// Hellos cut where the walk cannot resume (before the extensions, inside
    /// the `server_name` header, or past the extension budget).
    pub truncated: u64,
    /// Hellos spanning more than one TCP segment (with the SNI in the first
    /// segment or not).
    pub multi_segment: u64,
    /// Multi-segment hellos whose SNI was read from a later segment.
    pub later_segment: u64,
    /// Payload to a TLS listener port that is not a TLS record and belongs to
    /// no known flow.
    pub non_tls: u64,
    /// UDP datagrams to a QUIC listener port.
    pub quic: u64,
}

impl GlobalCounters {
    /// Adds another CPU's counters (userspace sums the per-CPU values).
    pub fn add(&mut self, other: &Self) {
        self.client_hellos += other.client_hellos;
        self.no_sni += other.no_sni;
        self.unknown_sni += other.unknown_sni;
        self.policy_drops += other.policy_drops;
        self.malformed += other.malformed;
        self.truncated += other.truncated;
        self.multi_segment += other.multi_segment;
        self.later_segment += other.later_segment;
        self.non_tls += other.non_tls;
        self.quic += other.quic;
    }
}

impl ChainCounters {
    pub fn add(&mut self, other: &Self) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.drops += other.drops;
    }
}

/// Unknown SNIs pass (the proxy answers them, e.g. with its fallback).
pub const UNKNOWN_SNI_PASS: u32 = 0;
/// Unknown SNIs are dropped in XDP (strict mode).
pub const UNKNOWN_SNI_DROP: u32 = 1;

/// Run-time settings userspace can change without reloading the program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// [`UNKNOWN_SNI_PASS`] or [`UNKNOWN_SNI_DROP`].
    pub unknown_sni: u32,
    /// One past the highest chain id routed since the program was loaded:
    /// readers of `CHAIN_COUNTERS` (possibly another process, through the
    /// pins) stop there instead of reading every slot. Only userspace uses it.
    pub chains_used: u32,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are #[repr(C)] with explicit padding fields, made
    // only of integers and integer arrays: every bit pattern is valid.
    unsafe impl aya::Pod for Route {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for Flow {}
    unsafe impl aya::Pod for ChainCounters {}
    unsafe impl aya::Pod for GlobalCounters {}
    unsafe impl aya::Pod for Config {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    /// The layouts are the kernel/userspace contract: no implicit padding.
    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<Route>(), 8);
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(size_of::<Flow>(), 40);
        assert_eq!(size_of::<ChainCounters>(), 24);
        assert_eq!(size_of::<GlobalCounters>(), 80);
        assert_eq!(size_of::<Config>(), 8);
    }
}
