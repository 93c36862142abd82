//! The map definitions; layouts and names come from `edge_common::maps`.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use edge_common::maps::{
    CHAINS_MAX, ChainCounters, Config, FLOWS_MAX, Flow, FlowKey, GlobalCounters, LISTEN_PORTS_MAX,
    ROUTES_MAX, Route,
};

#[map]
pub static ROUTES: HashMap<u64, Route> = HashMap::with_max_entries(ROUTES_MAX, 0);

#[map]
pub static FLOWS: LruHashMap<FlowKey, Flow> = LruHashMap::with_max_entries(FLOWS_MAX, 0);

/// Resized by userspace at load to follow the routes map (one slot per
/// routable chain id plus the overflow slot).
#[map]
pub static CHAIN_COUNTERS: PerCpuArray<ChainCounters> =
    PerCpuArray::with_max_entries(CHAINS_MAX + 1, 0);

#[map]
pub static GLOBAL_COUNTERS: PerCpuArray<GlobalCounters> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static LISTEN_PORTS: Array<u8> = Array::with_max_entries(LISTEN_PORTS_MAX, 0);

#[map]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Scratch space for `tls::forget`: one slot per CPU.
#[map]
pub static SCRATCH: PerCpuArray<[u32; 2]> = PerCpuArray::with_max_entries(1, 0);
