//! Types and the SNI hash shared by the XDP program and userspace.
//!
//! Everything here must compile for `bpfel-unknown-none` (no_std, no alloc) and
//! keep the same layout on both sides: the maps are the interface between them.
#![no_std]

pub mod maps;
pub mod quic;
pub mod sni;
