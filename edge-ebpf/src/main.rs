//! The XDP SNI classifier: reads the `server_name` of TLS ClientHellos on the
//! listener ports and sorts each flow into its zone chain before the kernel's
//! TCP stack spends anything on it. Anything it cannot parse passes untouched.
#![no_std]
#![no_main]

mod classify;
mod counters;
mod maps;
mod packet;
mod parse;
mod quic;
mod tls;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp]
pub fn edge_sni(ctx: XdpContext) -> u32 {
    classify::packet(&ctx)
}

/// The cheapest possible XDP program: the floor the benchmark measures the
/// classifier against, in the same run on the same machine.
#[xdp]
pub fn edge_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
