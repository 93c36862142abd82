//! Counter updates. Per-CPU maps, so plain increments are race-free.

use edge_common::maps::{CHAIN_OVERFLOW_SLOT, ChainCounters, GlobalCounters, chain_slot};

use crate::maps::{CHAIN_COUNTERS, GLOBAL_COUNTERS};

/// Bumps one field of this CPU's global counters.
#[inline(always)]
pub fn global(bump: impl FnOnce(&mut GlobalCounters)) {
    if let Some(counters) = GLOBAL_COUNTERS.get_ptr_mut(0) {
        // SAFETY: a per-CPU array slot, only this CPU writes it, and XDP
        // programs do not preempt each other on one CPU.
        bump(unsafe { &mut *counters });
    }
}

/// Accounts one packet of `bytes` to a chain, and a drop if `dropped`. An id
/// beyond the array is counted in the overflow slot, never lost.
#[inline(always)]
pub fn chain(chain_id: u32, bytes: u64, dropped: bool) {
    let slot = CHAIN_COUNTERS
        .get_ptr_mut(chain_slot(chain_id))
        .or_else(|| CHAIN_COUNTERS.get_ptr_mut(CHAIN_OVERFLOW_SLOT));
    if let Some(counters) = slot {
        // SAFETY: per-CPU value, see `global`.
        let counters: &mut ChainCounters = unsafe { &mut *counters };
        counters.packets += 1;
        counters.bytes += bytes;
        if dropped {
            counters.drops += 1;
        }
    }
}
