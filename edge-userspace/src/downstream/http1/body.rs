//! The request body, decoded straight off the connection's read buffer.
//!
//! The body takes the connection's [`Reader`] while it is read (by whichever task forwards it
//! to the origin) and gives it back when it ends or is dropped, saying whether it was read to
//! its end: only then can the connection read a next request. Chunk sizes are read by
//! `httparse::parse_chunk_size`; this refuses what it lets through leniently (an empty size, a
//! bare LF inside the extensions) and bounds a chunk-size line at [`MAX_CHUNK_LINE`] bytes and
//! the trailers at the head's limits.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::oneshot;

use super::head::Framing;

/// Longest chunk-size line (size, extensions, CRLF) read; a longer one is refused.
pub const MAX_CHUNK_LINE: usize = 4096;

/// Bytes asked of the socket per read.
const READ_SIZE: usize = 16 * 1024;

/// The read side of a connection and what has been read but not consumed.
pub struct Reader<R> {
    pub io: R,
    pub buf: BytesMut,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// Reads more into the buffer; `Ok(0)` at end of stream.
    pub async fn fill(&mut self) -> io::Result<usize> {
        self.buf.reserve(READ_SIZE);
        self.io.read_buf(&mut self.buf).await
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        // `read_buf` keeps no state between polls: a fresh one per poll loses nothing.
        let fill = std::pin::pin!(self.fill());
        std::future::Future::poll(fill, cx)
    }
}

/// The reader, handed back when the body ends or is dropped.
pub struct Returned<R> {
    pub reader: Reader<R>,
    /// The body was read to its end: the buffer starts at the next request.
    pub complete: bool,
}

/// Bounds of the trailer section (the head's).
#[derive(Clone, Copy, Debug)]
pub struct TrailerLimits {
    pub max_bytes: usize,
    pub max_lines: usize,
}

/// A request body, as the pipeline reads it.
pub struct RequestBody<R>(Option<Box<Decoding<R>>>);

struct Decoding<R> {
    reader: Option<Reader<R>>,
    state: State,
    limits: TrailerLimits,
    returned: Option<oneshot::Sender<Returned<R>>>,
    /// Fired on the first read when the client waits for `100 Continue`.
    go_ahead: Option<oneshot::Sender<()>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Bytes left of a `Content-Length` body.
    Length(u64),
    /// A chunk-size line next.
    Size,
    /// Bytes left of the current chunk.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// The trailer section after the last chunk.
    Trailers,
    Done,
    Failed,
}

/// The body's channels back to its connection.
pub struct Handles<R> {
    pub returned: oneshot::Receiver<Returned<R>>,
    pub go_ahead: Option<oneshot::Receiver<()>>,
}

impl<R> RequestBody<R> {
    /// A request without a body: the connection keeps its reader.
    pub fn empty() -> Self {
        RequestBody(None)
    }
}

impl<R: AsyncRead + Unpin> RequestBody<R> {
    /// A body of `framing` (not `Length(0)`) read from `reader`.
    pub fn new(
        reader: Reader<R>,
        framing: Framing,
        limits: TrailerLimits,
        expect_continue: bool,
    ) -> (Self, Handles<R>) {
        let (returned, returned_rx) = oneshot::channel();
        let (go_ahead, go_ahead_rx) = if expect_continue {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let state = match framing {
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Size,
        };
        let body = RequestBody(Some(Box::new(Decoding {
            reader: Some(reader),
            state,
            limits,
            returned: Some(returned),
            go_ahead,
        })));
        let handles = Handles {
            returned: returned_rx,
            go_ahead: go_ahead_rx,
        };
        (body, handles)
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("invalid chunked framing: {0}")]
    Framing(&'static str),
    #[error("the client closed the connection inside the body")]
    Incomplete,
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl<R> Decoding<R> {
    fn give_back(&mut self) {
        if let (Some(reader), Some(returned)) = (self.reader.take(), self.returned.take()) {
            let complete = self.state == State::Done;
            let _ = returned.send(Returned { reader, complete });
        }
    }
}

impl<R> Drop for Decoding<R> {
    fn drop(&mut self) {
        self.give_back();
    }
}

impl<R: AsyncRead + Unpin> Decoding<R> {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Some(go_ahead) = self.go_ahead.take() {
            let _ = go_ahead.send(());
        }
        let polled = self.poll_decode(cx);
        match &polled {
            Poll::Ready(Some(Err(_))) => self.state = State::Failed,
            Poll::Ready(None) => self.give_back(),
            _ => {}
        }
        if self.state == State::Done {
            self.give_back();
        }
        polled
    }

    fn poll_decode(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Some(reader) = self.reader.as_mut() else {
            return Poll::Ready(None);
        };
        let framing = |why| Poll::Ready(Some(Err(BodyError::Framing(why))));
        loop {
            let buf = &mut reader.buf;
            match self.state {
                State::Done | State::Failed => return Poll::Ready(None),
                State::Length(0) => {
                    self.state = State::Done;
                    return Poll::Ready(None);
                }
                State::Length(left) | State::Data(left) if !buf.is_empty() => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(n).freeze();
                    let left = left - n as u64;
                    self.state = match self.state {
                        State::Length(_) if left == 0 => State::Done,
                        State::Length(_) => State::Length(left),
                        _ if left == 0 => State::DataEnd,
                        _ => State::Data(left),
                    };
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Length(_) | State::Data(_) => {}
                State::Size => match chunk_size(buf) {
                    Ok(Some(0)) => {
                        self.state = State::Trailers;
                        continue;
                    }
                    Ok(Some(size)) => {
                        self.state = State::Data(size);
                        continue;
                    }
                    Ok(None) => {}
                    Err(why) => return framing(why),
                },
                State::DataEnd if buf.len() >= 2 => {
                    if &buf[..2] != b"\r\n" {
                        return framing("chunk data not followed by CRLF");
                    }
                    buf.advance(2);
                    self.state = State::Size;
                    continue;
                }
                State::DataEnd => {}
                State::Trailers => match trailers(buf, self.limits) {
                    Ok(Some(section)) => {
                        self.state = State::Done;
                        return Poll::Ready(section.map(|map| Ok(Frame::trailers(map))));
                    }
                    Ok(None) => {}
                    Err(why) => return framing(why),
                },
            }
            // Not enough bytes buffered for the next step.
            match ready!(reader.poll_fill(cx)) {
                Ok(0) => return Poll::Ready(Some(Err(BodyError::Incomplete))),
                Ok(_) => {}
                Err(error) => return Poll::Ready(Some(Err(error.into()))),
            }
        }
    }
}

/// The chunk-size line at the start of `buf`, taken out; `Ok(None)` while incomplete.
fn chunk_size(buf: &mut BytesMut) -> Result<Option<u64>, &'static str> {
    if buf.first().is_some_and(|b| !b.is_ascii_hexdigit()) {
        return Err("chunk size is not a hex number");
    }
    match httparse::parse_chunk_size(buf) {
        Ok(httparse::Status::Complete((len, size))) => {
            if len > MAX_CHUNK_LINE {
                return Err("chunk-size line too long");
            }
            // httparse skips any byte inside extensions, LF included.
            if buf[..len - 2].contains(&b'\n') {
                return Err("bare LF in a chunk-size line");
            }
            buf.advance(len);
            Ok(Some(size))
        }
        Ok(httparse::Status::Partial) if buf.len() <= MAX_CHUNK_LINE => Ok(None),
        Ok(httparse::Status::Partial) => Err("chunk-size line too long"),
        Err(_) => Err("invalid chunk size"),
    }
}

/// The trailer section at the start of `buf`, taken out: `Some(None)` when empty, `Ok(None)`
/// while incomplete.
fn trailers(
    buf: &mut BytesMut,
    limits: TrailerLimits,
) -> Result<Option<Option<HeaderMap>>, &'static str> {
    if buf.starts_with(b"\r\n") {
        buf.advance(2);
        return Ok(Some(None));
    }
    let mut lines = vec![httparse::EMPTY_HEADER; limits.max_lines];
    match httparse::parse_headers(buf, &mut lines) {
        Ok(httparse::Status::Complete((len, parsed))) => {
            if len > limits.max_bytes {
                return Err("trailers too large");
            }
            let section = &buf[..len];
            if memchr::memchr_iter(b'\n', section).any(|at| at == 0 || section[at - 1] != b'\r') {
                return Err("bare LF in the trailers");
            }
            let mut map = HeaderMap::with_capacity(parsed.len());
            for line in parsed {
                let name = HeaderName::from_bytes(line.name.as_bytes())
                    .map_err(|_| "invalid trailer name")?;
                let value =
                    HeaderValue::from_bytes(line.value).map_err(|_| "invalid trailer value")?;
                map.append(name, value);
            }
            buf.advance(len);
            Ok(Some(Some(map)))
        }
        Ok(httparse::Status::Partial) if buf.len() <= limits.max_bytes => Ok(None),
        Ok(httparse::Status::Partial) => Err("trailers too large"),
        Err(_) => Err("invalid trailers"),
    }
}

impl<R: AsyncRead + Unpin> http_body::Body for RequestBody<R> {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.0.as_mut() {
            None => Poll::Ready(None),
            Some(decoding) => decoding.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0
            .as_ref()
            .is_none_or(|d| matches!(d.state, State::Done | State::Length(0)))
    }

    fn size_hint(&self) -> SizeHint {
        match self.0.as_ref().map(|d| d.state) {
            None | Some(State::Done) => SizeHint::with_exact(0),
            Some(State::Length(n)) => SizeHint::with_exact(n),
            Some(_) => SizeHint::default(),
        }
    }
}
