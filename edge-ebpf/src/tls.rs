//! The ClientHello walk: record header, handshake header, session id, cipher
//! suites, compression methods, then the extensions up to `server_name`.
//!
//! Every loop has a constant bound and every length is checked against its
//! container (extension ⊂ extensions ⊂ handshake message ⊂ record), so a lying
//! length ends the walk as `Malformed` instead of reading someone else's bytes.
//!
//! The `client_hello` fuzz target (`edge-userspace/fuzz`) compiles this very
//! file in userspace over a slice-backed `Packet` and `SCRATCH`: what this
//! file uses of `crate::packet` and `crate::maps` must exist there too.

use edge_common::sni;

use crate::maps::SCRATCH;
use crate::packet::{MAX_OFFSET, Packet};

const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST: u8 = 0;
/// The longest DNS name; a longer SNI is malformed.
pub const MAX_NAME: usize = 253;
/// Real hellos carry 10–20 extensions (GREASE included); past this budget the
/// walk gives up (fails open) rather than burden the verifier.
const MAX_EXTENSIONS: usize = 32;

pub enum Outcome {
    /// The SNI's hash, and the wildcard key (`*` + the name from its first
    /// dot) if the name has a dot.
    Sni {
        hash: u64,
        wildcard: Option<u64>,
    },
    NoSni,
    Malformed,
    /// Cut where the walk cannot resume (see `GlobalCounters::truncated`).
    Truncated,
    /// The hello continues in the next segment: the next extension header
    /// starts at offset `next` (possibly past this segment), and the extensions
    /// end at offset `end`.
    Continues {
        next: usize,
        end: usize,
    },
    /// The segment ends inside an extension header: its first `part_len`
    /// bytes are `part`, the rest starts the next segment.
    HeaderContinues {
        part: [u8; 3],
        part_len: usize,
        end: usize,
    },
    /// The segment ends inside the host name: `left` bytes of it follow in
    /// the next segment, to be fed into `name`.
    NameContinues {
        name: NameHash,
        left: usize,
    },
}

/// The record length if the payload at `payload` starts a handshake record
/// holding a ClientHello.
#[inline(always)]
pub fn client_hello_record(pkt: &Packet, payload: usize) -> Option<usize> {
    let [content, _, _, l0, l1, message] = pkt.bytes::<6>(payload)?;
    (content == CONTENT_HANDSHAKE && message == HANDSHAKE_CLIENT_HELLO)
        .then_some(u16::from_be_bytes([l0, l1]) as usize)
}

/// Whether `byte` is a TLS record content type (change_cipher_spec .. heartbeat).
#[inline(always)]
pub fn is_record_type(byte: u8) -> bool {
    (20..=24).contains(&byte)
}

/// Walks a ClientHello whose record starts at `payload`.
#[inline(always)]
pub fn client_hello(pkt: &Packet, payload: usize) -> Outcome {
    match prefix(pkt, payload) {
        Ok((start, end)) if start == end => Outcome::NoSni,
        Ok((start, end)) => extensions(pkt, start, end),
        Err(outcome) => outcome,
    }
}

/// Everything before the extensions; returns their start and end offsets.
#[inline(always)]
fn prefix(pkt: &Packet, payload: usize) -> Result<(usize, usize), Outcome> {
    let record_len = pkt.be16(payload + 3).ok_or(Outcome::Truncated)? as usize;
    let message_len = pkt.be24(payload + 6).ok_or(Outcome::Truncated)? as usize;
    // A ClientHello fragmented over several records is legal but unheard of;
    // resuming across record headers is not worth the verifier budget.
    if message_len + 4 > record_len {
        return Err(Outcome::Malformed);
    }
    let message_end = payload + 9 + message_len;
    // legacy_version (2) and random (32) precede the session id.
    let session_id_len = pkt.u8(payload + 43).ok_or(Outcome::Truncated)? as usize;
    if session_id_len > 32 {
        return Err(Outcome::Malformed);
    }
    let mut off = payload + 44 + session_id_len;
    let suites_len = pkt.be16(off).ok_or(Outcome::Truncated)? as usize;
    if suites_len < 2 || !suites_len.is_multiple_of(2) {
        return Err(Outcome::Malformed);
    }
    off += 2 + suites_len;
    let compression_len = pkt.u8(off).ok_or(Outcome::Truncated)? as usize;
    off += 1 + compression_len;
    if off == message_end {
        return Ok((off, off));
    }
    if off + 2 > message_end {
        return Err(Outcome::Malformed);
    }
    let extensions_len = pkt.be16(off).ok_or(Outcome::Truncated)? as usize;
    let start = off + 2;
    let end = start + extensions_len;
    if end != message_end {
        return Err(Outcome::Malformed);
    }
    Ok((start, end))
}

/// Walks extension headers from `off` to `end`, stopping at `server_name`.
/// Also the entry point for a later segment, where `off` is the stored resume
/// point translated into this segment.
#[inline(always)]
pub fn extensions(pkt: &Packet, mut off: usize, end: usize) -> Outcome {
    for _ in 0..MAX_EXTENSIONS {
        if off >= end {
            return Outcome::NoSni;
        }
        let Some(header) = pkt.bytes::<4>(off) else {
            if off < pkt.limit() {
                // The segment ends inside the header: carry its first bytes.
                return Outcome::HeaderContinues {
                    part: [
                        pkt.u8(off).unwrap_or(0),
                        pkt.u8(off + 1).unwrap_or(0),
                        pkt.u8(off + 2).unwrap_or(0),
                    ],
                    part_len: pkt.limit() - off,
                    end,
                };
            }
            return Outcome::Continues { next: off, end };
        };
        match extension(pkt, header, off + 4, end) {
            Ok(next) => off = next,
            Err(outcome) => return outcome,
        }
    }
    Outcome::Truncated
}

/// One extension whose `header` was read and whose body starts at `body`:
/// the offset of the next header, or the outcome if the walk ends here.
#[inline(always)]
pub fn extension(pkt: &Packet, header: [u8; 4], body: usize, end: usize) -> Result<usize, Outcome> {
    let [t0, t1, l0, l1] = header;
    let len = u16::from_be_bytes([l0, l1]) as usize;
    let next = body + len;
    if next > end {
        return Err(Outcome::Malformed);
    }
    if u16::from_be_bytes([t0, t1]) == EXT_SERVER_NAME {
        return Err(server_name(pkt, body, len));
    }
    Ok(next)
}

/// The `server_name` extension body at `off`, `len` bytes long.
#[inline(always)]
fn server_name(pkt: &Packet, off: usize, len: usize) -> Outcome {
    let Some([l0, l1, name_type, n0, n1]) = pkt.bytes::<5>(off) else {
        return Outcome::Truncated;
    };
    let list_len = u16::from_be_bytes([l0, l1]) as usize;
    let name_len = u16::from_be_bytes([n0, n1]) as usize;
    if list_len + 2 > len
        || name_len + 3 > list_len
        || name_type != NAME_TYPE_HOST
        || name_len == 0
        || name_len > MAX_NAME
    {
        return Outcome::Malformed;
    }
    let off = off + 5;
    // RFC 6066 names carry no trailing dot, but rustls (the edge's TLS)
    // accepts one and drops it, so this walk drops it too: otherwise
    // `blocked.example.com.` would miss the route that drops
    // `blocked.example.com` and still be served. (A name whose last byte is
    // in a later segment keeps it.)
    // black_box: folded into the pointer, the `- 1` is a negative packet
    // offset, which the verifier refuses.
    let name_len = match pkt.u8(core::hint::black_box(off + name_len - 1)) {
        Some(b'.') if name_len > 1 => name_len - 1,
        Some(b'.') => return Outcome::Malformed,
        _ => name_len,
    };
    // The name may run past this segment: hash what is here, carry the rest.
    let here = if off + name_len > pkt.limit() {
        pkt.limit().saturating_sub(off)
    } else {
        name_len
    };
    let Some(name) = hash_name(pkt, off, here, NameHash::new()) else {
        return Outcome::Truncated;
    };
    if here < name_len {
        return Outcome::NameContinues {
            name,
            left: name_len - here,
        };
    }
    name.outcome()
}

/// Round-trips two offsets through map memory, so the verifier meets the
/// loop after it with the same (wide) ranges whichever path led there.
/// Without this it verifies the 253-byte name loop once per extension
/// position and runs out of its instruction budget.
#[inline(always)]
pub fn forget(off: usize, len: usize) -> Option<(usize, usize)> {
    let slot = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot of a per-CPU array; nothing else runs on it
    // between the write and the read.
    unsafe {
        core::ptr::write_volatile(slot, [off as u32, len as u32]);
        let [off, len] = core::ptr::read_volatile(slot);
        Some((off as usize, len as usize))
    }
}

/// Feeds `len` name bytes at `off` into `name`: the exact hash and, in the
/// same pass, the wildcard key. `None` if the bytes are not all in the frame.
#[inline(always)]
pub fn hash_name(pkt: &Packet, off: usize, len: usize, mut name: NameHash) -> Option<NameHash> {
    let (off, len) = forget(off, len)?;
    if off > MAX_OFFSET || len > MAX_NAME {
        return None;
    }
    for i in 0..MAX_NAME {
        if i >= len {
            break;
        }
        name.step(pkt.u8(off + i)?);
    }
    Some(name)
}

/// A host name hashed up to some byte; carried across segments in `Flow`.
#[derive(Clone, Copy)]
pub struct NameHash {
    pub hash: u64,
    pub wildcard: u64,
    pub past_dot: bool,
}

impl NameHash {
    #[inline(always)]
    pub fn new() -> Self {
        Self {
            hash: sni::INIT,
            wildcard: sni::WILDCARD_INIT,
            past_dot: false,
        }
    }

    #[inline(always)]
    fn step(&mut self, byte: u8) {
        self.hash = sni::step(self.hash, byte);
        self.past_dot |= byte == b'.';
        if self.past_dot {
            self.wildcard = sni::step(self.wildcard, byte);
        }
    }

    #[inline(always)]
    pub fn outcome(&self) -> Outcome {
        Outcome::Sni {
            hash: self.hash,
            wildcard: if self.past_dot {
                Some(self.wildcard)
            } else {
                None
            },
        }
    }
}
