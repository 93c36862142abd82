//! The map definitions; layouts and names come from `edge_common::maps`.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap},
};
use edge_common::maps::{
    CHAINS_MAX, ChainCounters, Config, FLOWS_MAX, Flow, FlowKey, GlobalCounters, LISTEN_PORTS_MAX,
    ROUTES_MAX, Route,
};

#[map]
pub static ROUTES: HashMap<u64, Route> = HashMap::with_max_entries(ROUTES_MAX, 0);

#[map]
pub static FLOWS: LruHashMap<FlowKey, Flow> = LruHashMap::with_max_entries(FLOWS_MAX, 0);

/// Userspace creates a chain's entry with its first route; a chain without an
/// entry is simply not counted, so the kernel never inserts here.
#[map]
pub static CHAIN_COUNTERS: PerCpuHashMap<u32, ChainCounters> =
    PerCpuHashMap::with_max_entries(CHAINS_MAX, 0);

#[map]
pub static GLOBAL_COUNTERS: PerCpuArray<GlobalCounters> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static LISTEN_PORTS: Array<u8> = Array::with_max_entries(LISTEN_PORTS_MAX, 0);

#[map]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Scratch space for `tls::forget`: one slot per CPU.
#[map]
pub static SCRATCH: PerCpuArray<[u32; 2]> = PerCpuArray::with_max_entries(1, 0);
