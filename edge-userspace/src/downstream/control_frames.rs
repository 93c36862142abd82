//! A cap on the HTTP/2 control frames a client may send: SETTINGS and PING floods.
//!
//! h2 (0.4) answers every SETTINGS with an ACK and every PING with a PONG, one at a time: memory
//! stays bounded, but a client can keep the edge busy answering for ever (28 M frames in 20 s
//! from one client). h2 has no limit for them (it has one for resets, which the listener sets),
//! so the connection's bytes are watched on their way in: after the client preface, only the
//! fixed 9-byte frame headers are read (length, type, flags), never a payload, and a client that
//! sends more than `max` SETTINGS or PINGs (not counting ACKs) within [`WINDOW`] loses its
//! connection. HTTP/1.1 connections (no preface) pass untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The window over which control frames are counted.
pub const WINDOW: Duration = Duration::from_secs(10);

use super::http2::PREFACE;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const ACK: u8 = 0x1;

/// The error a flooding client's connection ends with.
#[derive(Debug)]
pub struct ControlFlood;

impl std::fmt::Display for ControlFlood {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "too many SETTINGS or PING frames (more than the limit in {WINDOW:?})"
        )
    }
}

impl std::error::Error for ControlFlood {}

enum Phase {
    /// Bytes of the preface matched so far.
    Preface(usize),
    /// A frame header being read.
    Header { bytes: [u8; 9], len: usize },
    /// Payload bytes still to skip.
    Payload(usize),
    /// Not HTTP/2: nothing to count.
    Http1,
}

/// `IO` whose incoming HTTP/2 control frames are counted.
pub struct ControlFrames<IO> {
    io: IO,
    phase: Phase,
    max: u32,
    window_start: Instant,
    in_window: u32,
}

impl<IO> ControlFrames<IO> {
    pub fn new(io: IO, max: u32) -> Self {
        Self {
            io,
            phase: Phase::Preface(0),
            max,
            window_start: Instant::now(),
            in_window: 0,
        }
    }

    /// Follows the frame boundaries through `bytes`; `Err` once the client has sent too many
    /// control frames.
    fn scan(&mut self, mut bytes: &[u8]) -> Result<(), ControlFlood> {
        while !bytes.is_empty() {
            match &mut self.phase {
                Phase::Http1 => return Ok(()),
                Phase::Preface(matched) => {
                    let n = (PREFACE.len() - *matched).min(bytes.len());
                    if bytes[..n] != PREFACE[*matched..*matched + n] {
                        self.phase = Phase::Http1;
                        return Ok(());
                    }
                    *matched += n;
                    bytes = &bytes[n..];
                    if *matched == PREFACE.len() {
                        self.phase = Phase::Header {
                            bytes: [0; 9],
                            len: 0,
                        };
                    }
                }
                Phase::Header { bytes: header, len } => {
                    let n = (9 - *len).min(bytes.len());
                    header[*len..*len + n].copy_from_slice(&bytes[..n]);
                    *len += n;
                    bytes = &bytes[n..];
                    if *len == 9 {
                        let header = *header;
                        let length = usize::from(header[0]) << 16
                            | usize::from(header[1]) << 8
                            | usize::from(header[2]);
                        let (kind, flags) = (header[3], header[4]);
                        if matches!(kind, SETTINGS | PING) && flags & ACK == 0 {
                            self.count()?;
                        }
                        self.phase = Phase::Payload(length);
                    }
                }
                Phase::Payload(left) => {
                    let n = (*left).min(bytes.len());
                    *left -= n;
                    bytes = &bytes[n..];
                }
            }
            // Also right after the header of an empty frame.
            if let Phase::Payload(0) = self.phase {
                self.phase = Phase::Header {
                    bytes: [0; 9],
                    len: 0,
                };
            }
        }
        Ok(())
    }

    fn count(&mut self) -> Result<(), ControlFlood> {
        let now = Instant::now();
        if now - self.window_start >= WINDOW {
            self.window_start = now;
            self.in_window = 0;
        }
        self.in_window += 1;
        if self.in_window > self.max {
            return Err(ControlFlood);
        }
        Ok(())
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for ControlFrames<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        std::task::ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if !matches!(this.phase, Phase::Http1) {
            this.scan(&buf.filled()[before..])
                .map_err(|flood| io::Error::new(io::ErrorKind::InvalidData, flood))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for ControlFrames<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut frame = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            0,
        ];
        frame.extend_from_slice(payload);
        frame
    }

    fn counter(max: u32) -> ControlFrames<()> {
        ControlFrames::new((), max)
    }

    #[test]
    fn pings_beyond_the_limit_are_refused_acks_and_other_frames_are_not() {
        let mut c = counter(10);
        let mut stream = PREFACE.to_vec();
        stream.extend(frame(SETTINGS, 0, &[0; 6]));
        stream.extend(frame(SETTINGS, ACK, &[]));
        // HEADERS and DATA frames, whatever their payload holds, are not counted.
        for _ in 0..100 {
            stream.extend(frame(0x1, 0x4, &[PING; 20]));
            stream.extend(frame(PING, ACK, &[0; 8]));
        }
        for _ in 0..9 {
            stream.extend(frame(PING, 0, &[0; 8]));
        }
        // Byte by byte: frame boundaries are followed across reads.
        for byte in &stream {
            c.scan(std::slice::from_ref(byte)).unwrap();
        }
        assert!(
            c.scan(&frame(PING, 0, &[0; 8])).is_err(),
            "the 11th control frame"
        );
    }

    #[test]
    fn the_count_starts_again_every_window() {
        let mut c = counter(10);
        c.scan(PREFACE).unwrap();
        for _ in 0..10 {
            c.scan(&frame(PING, 0, &[0; 8])).unwrap();
        }
        // As if the window had passed.
        c.window_start -= WINDOW;
        for _ in 0..10 {
            c.scan(&frame(PING, 0, &[0; 8])).unwrap();
        }
        // Ten times the limit at once is cut at the limit.
        let flood: Vec<u8> = (0..100).flat_map(|_| frame(SETTINGS, 0, &[])).collect();
        assert!(c.scan(&flood).is_err());
    }

    #[test]
    fn http1_is_not_parsed() {
        let mut c = counter(0);
        c.scan(b"GET / HTTP/1.1\r\n").unwrap();
        c.scan(&frame(PING, 0, &[0; 8])).unwrap();
        assert!(matches!(c.phase, Phase::Http1));
    }
}
