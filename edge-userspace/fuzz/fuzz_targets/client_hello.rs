//! The XDP program's ClientHello walk (`edge-ebpf/src/tls.rs`, the very file,
//! included below) over a slice instead of a packet: `packet` and `maps`
//! give it the two things it reads from the kernel's side, with the same
//! bounds. Input: two bytes of `limit` (where the segment ends, as a cut
//! packet or Ethernet padding would make it), then the TCP payload, a TLS
//! record. Oracle besides "never panics, never reads out of bounds": when
//! the walk finds a name and rustls, reading the same bytes, accepts the
//! hello with a name, the two names hash alike.
#![no_main]

// The classifier's other entry points and outcomes are unused here.
#[path = "../../../edge-ebpf/src/tls.rs"]
#[allow(dead_code)]
mod tls;

/// A slice in the shape of `edge-ebpf/src/packet.rs`: every read checked
/// against the data's end and against `limit`.
mod packet {
    pub use edge_fuzz::client_hello::MAX_OFFSET;
    pub use edge_fuzz::client_hello::Packet;
}

/// The per-CPU scratch slot `tls::forget` round-trips offsets through.
mod maps {
    pub use edge_fuzz::client_hello::SCRATCH;
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some(([l0, l1], payload)) = data.split_first_chunk::<2>() else {
        return;
    };
    let limit = usize::from(u16::from_be_bytes([*l0, *l1]));
    let pkt = packet::Packet::new(payload).limited(limit);
    if tls::client_hello_record(&pkt, 0).is_none() {
        return;
    }
    let outcome = tls::client_hello(&pkt, 0);
    if let tls::Outcome::Sni { hash, .. } = outcome
        && let Some(name) = edge_userspace::fuzzing::rustls_server_name(payload)
    {
        assert_eq!(
            hash,
            edge_common::sni::hash(name.as_bytes()),
            "XDP and rustls read different names (rustls: {name})"
        );
    }
});
