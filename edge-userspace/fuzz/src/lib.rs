//! What the `client_hello` target gives the XDP program's `tls.rs` in place
//! of the kernel: a slice-backed packet and the scratch slot.

pub mod client_hello {
    use std::cell::UnsafeCell;

    /// As in `edge-ebpf/src/packet.rs`.
    pub const MAX_OFFSET: usize = 0x3fff;

    /// The bounds of `edge-ebpf/src/packet.rs` over a slice: an offset past
    /// [`MAX_OFFSET`], past `limit` or past the data reads nothing.
    #[derive(Clone, Copy)]
    pub struct Packet<'a> {
        data: &'a [u8],
        limit: usize,
    }

    impl<'a> Packet<'a> {
        pub fn new(data: &'a [u8]) -> Self {
            Self {
                data,
                limit: MAX_OFFSET + 1,
            }
        }

        pub fn limited(mut self, limit: usize) -> Self {
            if limit < self.limit {
                self.limit = limit;
            }
            self
        }

        pub fn limit(&self) -> usize {
            self.limit
        }

        pub fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
            if offset > MAX_OFFSET || offset + N > self.limit {
                return None;
            }
            self.data.get(offset..offset + N)?.try_into().ok()
        }

        pub fn u8(&self, offset: usize) -> Option<u8> {
            self.bytes::<1>(offset).map(|b| b[0])
        }

        pub fn be16(&self, offset: usize) -> Option<u16> {
            self.bytes::<2>(offset).map(u16::from_be_bytes)
        }

        pub fn be24(&self, offset: usize) -> Option<u32> {
            self.bytes::<3>(offset)
                .map(|b| u32::from_be_bytes([0, b[0], b[1], b[2]]))
        }

        pub fn be32(&self, offset: usize) -> Option<u32> {
            self.bytes::<4>(offset).map(u32::from_be_bytes)
        }
    }

    /// `SCRATCH.get_ptr_mut(0)` as the per-CPU array answers it: this
    /// thread's slot.
    pub struct Scratch;

    pub static SCRATCH: Scratch = Scratch;

    impl Scratch {
        pub fn get_ptr_mut(&self, _index: u32) -> Option<*mut [u32; 2]> {
            thread_local! {
                static SLOT: UnsafeCell<[u32; 2]> = const { UnsafeCell::new([0; 2]) };
            }
            Some(SLOT.with(UnsafeCell::get))
        }
    }
}
