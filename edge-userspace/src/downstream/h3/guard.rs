//! The QUIC streams h3 reads, with every frame's declared length checked as its bytes arrive.
//!
//! h3 buffers a frame other than DATA whole before it decodes it (and before the header limit
//! applies), so one HEADERS frame declaring a gigabyte would take a gigabyte. [`Connection`]
//! wraps `h3_quinn`'s and hands h3 streams that read the type and length of each frame as
//! they pass: a frame other than DATA that declares more than the header limit stops the
//! stream (`H3_EXCESSIVE_LOAD`, both directions) before its payload is read. The bytes
//! themselves pass through untouched; h3 still parses everything.

use std::task::{Context, Poll, ready};

use bytes::Bytes;
use h3::error::Code;
use h3::quic::{self, StreamErrorIncoming, StreamId, WriteBuf};

/// Frame types (RFC 9114 §7.2) and unidirectional stream types (§6.2) the scan tells apart.
const DATA: u64 = 0x0;
const CONTROL_STREAM: u64 = 0x0;
/// A WebTransport stream (not served here) carries no frames after its header: left alone.
const WEBTRANSPORT_STREAM: u64 = 0x41;

/// `h3_quinn::Connection` whose request and control streams are [`Guarded`].
pub struct Connection {
    inner: h3_quinn::Connection,
    limit: u64,
}

impl Connection {
    /// `limit`: the largest frame other than DATA a stream may declare (the header limit).
    pub fn new(conn: quinn::Connection, limit: u64) -> Self {
        Self {
            inner: h3_quinn::Connection::new(conn),
            limit,
        }
    }
}

pub type RecvStream = Guarded<h3_quinn::RecvStream>;
pub type SendStream = h3_quinn::SendStream<Bytes>;

impl quic::Connection<Bytes> for Connection {
    type RecvStream = RecvStream;
    type OpenStreams = Opener;

    fn poll_accept_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::RecvStream, quic::ConnectionErrorIncoming>> {
        let stream = ready!(quic::Connection::<Bytes>::poll_accept_recv(
            &mut self.inner,
            cx
        ))?;
        Poll::Ready(Ok(Guarded::new(stream, Scan::unidirectional(), self.limit)))
    }

    fn poll_accept_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::BidiStream, quic::ConnectionErrorIncoming>> {
        let stream = ready!(quic::Connection::<Bytes>::poll_accept_bidi(
            &mut self.inner,
            cx
        ))?;
        Poll::Ready(Ok(BidiStream::new(stream, self.limit)))
    }

    fn opener(&self) -> Self::OpenStreams {
        Opener {
            inner: quic::Connection::<Bytes>::opener(&self.inner),
            limit: self.limit,
        }
    }
}

impl quic::OpenStreams<Bytes> for Connection {
    type BidiStream = BidiStream;
    type SendStream = SendStream;

    fn poll_open_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::BidiStream, StreamErrorIncoming>> {
        let stream = ready!(quic::OpenStreams::<Bytes>::poll_open_bidi(
            &mut self.inner,
            cx
        ))?;
        Poll::Ready(Ok(BidiStream::new(stream, self.limit)))
    }

    fn poll_open_send(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::SendStream, StreamErrorIncoming>> {
        quic::OpenStreams::<Bytes>::poll_open_send(&mut self.inner, cx)
    }

    fn close(&mut self, code: Code, reason: &[u8]) {
        quic::OpenStreams::<Bytes>::close(&mut self.inner, code, reason);
    }
}

/// [`Connection::opener`]: opens guarded streams too.
pub struct Opener {
    inner: h3_quinn::OpenStreams,
    limit: u64,
}

impl quic::OpenStreams<Bytes> for Opener {
    type BidiStream = BidiStream;
    type SendStream = SendStream;

    fn poll_open_bidi(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::BidiStream, StreamErrorIncoming>> {
        let stream = ready!(self.inner.poll_open_bidi(cx))?;
        Poll::Ready(Ok(BidiStream::new(stream, self.limit)))
    }

    fn poll_open_send(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::SendStream, StreamErrorIncoming>> {
        self.inner.poll_open_send(cx)
    }

    fn close(&mut self, code: Code, reason: &[u8]) {
        quic::OpenStreams::<Bytes>::close(&mut self.inner, code, reason);
    }
}

/// A request stream: the send half as it is, the receive half [`Guarded`]. A frame refused
/// before the stream is split (the request's HEADERS) resets the send half as well.
pub struct BidiStream {
    send: SendStream,
    recv: RecvStream,
}

impl BidiStream {
    fn new(stream: h3_quinn::BidiStream<Bytes>, limit: u64) -> Self {
        let (send, recv) = quic::BidiStream::split(stream);
        Self {
            send,
            recv: Guarded::new(recv, Scan::frames(), limit),
        }
    }
}

impl quic::BidiStream<Bytes> for BidiStream {
    type SendStream = SendStream;
    type RecvStream = RecvStream;

    fn split(self) -> (Self::SendStream, Self::RecvStream) {
        (self.send, self.recv)
    }
}

impl quic::RecvStream for BidiStream {
    type Buf = Bytes;

    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        let polled = self.recv.poll_data(cx);
        if self.recv.refused {
            quic::SendStream::<Bytes>::reset(&mut self.send, Code::H3_EXCESSIVE_LOAD.value());
        }
        polled
    }

    fn stop_sending(&mut self, error_code: u64) {
        self.recv.stop_sending(error_code);
    }

    fn recv_id(&self) -> StreamId {
        self.recv.recv_id()
    }
}

impl quic::SendStream<Bytes> for BidiStream {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        self.send.poll_ready(cx)
    }

    fn send_data<T: Into<WriteBuf<Bytes>>>(&mut self, data: T) -> Result<(), StreamErrorIncoming> {
        self.send.send_data(data)
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StreamErrorIncoming>> {
        self.send.poll_finish(cx)
    }

    fn reset(&mut self, reset_code: u64) {
        self.send.reset(reset_code);
    }

    fn send_id(&self) -> StreamId {
        self.send.send_id()
    }
}

/// A receive stream whose frames are [`Scan`]ned as they pass.
pub struct Guarded<R> {
    inner: R,
    scan: Scan,
    limit: u64,
    refused: bool,
}

impl<R> Guarded<R> {
    fn new(inner: R, scan: Scan, limit: u64) -> Self {
        Self {
            inner,
            scan,
            limit,
            refused: false,
        }
    }
}

impl<R: quic::RecvStream<Buf = Bytes>> quic::RecvStream for Guarded<R> {
    type Buf = Bytes;

    fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Bytes>, StreamErrorIncoming>> {
        let refused = || StreamErrorIncoming::StreamTerminated {
            error_code: Code::H3_EXCESSIVE_LOAD.value(),
        };
        if self.refused {
            return Poll::Ready(Err(refused()));
        }
        let data = ready!(self.inner.poll_data(cx))?;
        if let Some(bytes) = &data
            && let Err(declared) = self.scan.scan(bytes, self.limit)
        {
            tracing::debug!(declared, limit = self.limit, "HTTP/3 frame over the limit");
            self.refused = true;
            self.inner.stop_sending(Code::H3_EXCESSIVE_LOAD.value());
            return Poll::Ready(Err(refused()));
        }
        Poll::Ready(Ok(data))
    }

    fn stop_sending(&mut self, error_code: u64) {
        self.inner.stop_sending(error_code);
    }

    fn recv_id(&self) -> StreamId {
        self.inner.recv_id()
    }
}

/// Where a stream's bytes are in its framing (RFC 9114 §7.1: type, length, payload).
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// A unidirectional stream's type, not read yet.
    StreamType(VarInt),
    Type(VarInt),
    Length {
        ty: u64,
        length: VarInt,
    },
    Payload(u64),
    /// Bytes without frames the scan follows (a stream type other than control).
    Unframed,
}

impl Scan {
    pub fn frames() -> Self {
        Scan::Type(VarInt::default())
    }

    pub fn unidirectional() -> Self {
        Scan::StreamType(VarInt::default())
    }

    /// Follows `bytes`; `Err(declared length)` at the first frame other than DATA that declares
    /// more than `limit`.
    pub fn scan(&mut self, mut bytes: &[u8], limit: u64) -> Result<(), u64> {
        while let Some((&byte, rest)) = bytes.split_first() {
            match self {
                Scan::Payload(left) => {
                    let skip = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len());
                    *left -= skip as u64;
                    bytes = &bytes[skip..];
                    if *left == 0 {
                        *self = Scan::frames();
                    }
                    continue;
                }
                Scan::Unframed => return Ok(()),
                Scan::StreamType(value) => {
                    if let Some(ty) = value.push(byte) {
                        *self = if ty == CONTROL_STREAM {
                            Scan::frames()
                        } else {
                            Scan::Unframed
                        };
                    }
                }
                Scan::Type(value) => {
                    if let Some(ty) = value.push(byte) {
                        *self = if ty == WEBTRANSPORT_STREAM {
                            Scan::Unframed
                        } else {
                            Scan::Length {
                                ty,
                                length: VarInt::default(),
                            }
                        };
                    }
                }
                Scan::Length { ty, length } => {
                    if let Some(length) = length.push(byte) {
                        if *ty != DATA && length > limit {
                            return Err(length);
                        }
                        *self = match length {
                            0 => Scan::frames(),
                            length => Scan::Payload(length),
                        };
                    }
                }
            }
            bytes = rest;
        }
        Ok(())
    }
}

/// A QUIC variable-length integer (RFC 9000 §16) read byte by byte: its length is in the top
/// two bits of the first byte.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct VarInt {
    value: u64,
    read: u8,
    length: u8,
}

impl VarInt {
    /// Adds one byte; the value once complete.
    fn push(&mut self, byte: u8) -> Option<u64> {
        if self.read == 0 {
            self.length = 1 << (byte >> 6);
            self.value = u64::from(byte & 0x3f);
        } else {
            self.value = (self.value << 8) | u64::from(byte);
        }
        self.read += 1;
        (self.read == self.length).then_some(self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame header: type and length as varints (8-byte encodings for both, to cross chunks).
    fn header(ty: u64, length: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for value in [ty, length] {
            out.extend_from_slice(&(value | 0xc000_0000_0000_0000).to_be_bytes());
        }
        out
    }

    #[test]
    fn frames_within_the_limit_pass_and_an_oversized_headers_frame_is_refused_on_its_length() {
        let limit = 1000;
        let mut stream = header(0x1, 1000);
        stream.extend(vec![0; 1000]);
        stream.extend(header(DATA, 1 << 40));
        stream.extend(vec![7; 3000]);
        let mut scan = Scan::frames();
        // One byte at a time: varints split across chunks still decode.
        for byte in &stream {
            assert_eq!(scan.scan(std::slice::from_ref(byte), limit), Ok(()));
        }
        assert_eq!(scan, Scan::Payload((1 << 40) - 3000));

        let mut scan = Scan::frames();
        let mut stream = header(0x1, 1 << 30);
        let refused_at = stream.len();
        stream.extend(vec![0; 100]);
        assert_eq!(scan.scan(&stream[..refused_at - 1], limit), Ok(()));
        assert_eq!(scan.scan(&stream[refused_at - 1..], limit), Err(1 << 30));
    }

    #[test]
    fn unknown_frames_count_too_and_only_control_streams_are_followed() {
        let limit = 100;
        // A reserved (grease) frame type is buffered whole by h3 as well.
        let mut scan = Scan::frames();
        assert_eq!(scan.scan(&[0x21, 0x40, 0x65], limit), Err(101));
        // Control stream (type 0), then SETTINGS over the limit.
        let mut scan = Scan::unidirectional();
        assert_eq!(scan.scan(&[0x00, 0x04, 0x40, 0xff], limit), Err(0xff));
        // A QPACK encoder stream (type 2) carries instructions, not frames.
        let mut scan = Scan::unidirectional();
        assert_eq!(scan.scan(&[0x02, 0x04, 0x40, 0xff], limit), Ok(()));
        assert_eq!(scan, Scan::Unframed);
        // Short varints: a one-byte type, a two-byte length.
        let mut scan = Scan::frames();
        assert_eq!(scan.scan(&[0x01, 0x40, 0x64], limit), Ok(()));
        assert_eq!(scan, Scan::Payload(100));
    }
}
