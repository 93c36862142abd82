//! Bounds-checked reads from the packet, in the shape the verifier accepts.
//!
//! Every read compares the pointer it dereferences against `data_end` (the
//! verifier's rule), after capping the offset (so the verifier can bound the
//! pointer's variable part), and against `limit`: the end of the IP payload,
//! so that Ethernet padding is never read as TLS bytes.

use aya_ebpf::programs::XdpContext;

/// Offsets beyond this are treated as outside the packet. Larger than any
/// frame XDP sees on these links, small enough for the verifier's
/// variable-offset bound on packet pointers.
pub const MAX_OFFSET: usize = 0x3fff;

#[derive(Clone, Copy)]
pub struct Packet {
    start: usize,
    end: usize,
    limit: usize,
}

impl Packet {
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> Self {
        // `limit` must not be derived from `end`: LLVM would then replace the
        // pointer comparison (which the verifier needs) by the scalar one.
        Self {
            start: ctx.data(),
            end: ctx.data_end(),
            limit: MAX_OFFSET + 1,
        }
    }

    /// Frame length in bytes, for the byte counters.
    #[inline(always)]
    pub fn len(&self) -> u64 {
        (self.end - self.start) as u64
    }

    /// Stops reads at `limit` (an offset), e.g. the end of the IP payload.
    #[inline(always)]
    pub fn limited(mut self, limit: usize) -> Self {
        if limit < self.limit {
            self.limit = limit;
        }
        self
    }

    /// Offset just past the readable data.
    #[inline(always)]
    pub fn limit(&self) -> usize {
        self.limit
    }

    #[inline(always)]
    pub fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        if offset > MAX_OFFSET || offset + N > self.limit {
            return None;
        }
        let at = self.start + offset;
        // LLVM rewrites `at + 1 > end` as `at >= end`, which tells the
        // verifier nothing; hiding the 1 keeps the `pointer + N > end` form.
        let n = if N == 1 { core::hint::black_box(N) } else { N };
        if at + n > self.end {
            return None;
        }
        // SAFETY: `at .. at + N` lies inside the frame, checked just above.
        Some(unsafe { (at as *const [u8; N]).read_unaligned() })
    }

    #[inline(always)]
    pub fn u8(&self, offset: usize) -> Option<u8> {
        self.bytes::<1>(offset).map(|b| b[0])
    }

    #[inline(always)]
    pub fn be16(&self, offset: usize) -> Option<u16> {
        self.bytes::<2>(offset).map(u16::from_be_bytes)
    }

    #[inline(always)]
    pub fn be24(&self, offset: usize) -> Option<u32> {
        self.bytes::<3>(offset)
            .map(|b| u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    #[inline(always)]
    pub fn be32(&self, offset: usize) -> Option<u32> {
        self.bytes::<4>(offset).map(u32::from_be_bytes)
    }
}
