//! Responses onto the connection: the head encoded once into a reused buffer, the body framed
//! by what is known of its length (RFC 9112 §6.3: none for HEAD, 1xx, 204 and 304; the
//! `Content-Length` it carries or its exact size; chunked for HTTP/1.1 clients; until close for
//! HTTP/1.0 ones), and the head leaving in the same write as the first piece of the body when
//! that piece is already there (an error page, an origin's first read).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, HeaderValue, TRANSFER_ENCODING};
use http::{HeaderMap, Response, StatusCode, Version};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::downstream::{BoxError, date};

/// What the request said about the response it gets.
#[derive(Clone, Copy, Debug)]
pub struct Asked {
    pub version: Version,
    pub head: bool,
    pub upgrade: bool,
}

/// What the connection does after a response.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    KeepAlive,
    Close,
    /// A `101 Switching Protocols` went out: the connection is the tunnel's now.
    Upgrade,
}

enum Out {
    Nothing,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Writes `response`; `keep_alive` is whether the request and the connection allow another
/// exchange after it. An error leaves the connection unusable.
pub async fn response<W, B>(
    io: &mut W,
    response: Response<B>,
    asked: Asked,
    mut keep_alive: bool,
    scratch: &mut Vec<u8>,
) -> Result<After, BoxError>
where
    W: AsyncWrite + Unpin,
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    let (mut parts, mut body) = response.into_parts();
    let status = parts.status;
    let headers = &mut parts.headers;
    keep_alive &= !says_close(headers);
    let switching = status == StatusCode::SWITCHING_PROTOCOLS && asked.upgrade;
    let out = if switching
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || asked.head
    {
        if status.is_informational() || status == StatusCode::NO_CONTENT {
            headers.remove(CONTENT_LENGTH);
        }
        headers.remove(TRANSFER_ENCODING);
        Out::Nothing
    } else if let Some(length) = content_length(headers) {
        Out::Length(length)
    } else if let Some(length) = body.size_hint().exact() {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        Out::Length(length)
    } else if asked.version == Version::HTTP_11 {
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        Out::Chunked
    } else {
        keep_alive = false;
        Out::UntilClose
    };
    if !switching {
        if !keep_alive {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        } else if asked.version == Version::HTTP_10 {
            headers.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
        }
    }
    if !headers.contains_key(DATE) {
        headers.insert(DATE, date::now());
    }
    scratch.clear();
    encode_head(scratch, status, headers);
    let after = if switching {
        After::Upgrade
    } else if keep_alive {
        After::KeepAlive
    } else {
        After::Close
    };
    if let Out::Nothing = out {
        io.write_all(scratch).await?;
        io.flush().await?;
        return Ok(after);
    }
    let mut head: &[u8] = scratch;
    let mut first = ready_frame(&mut body).await;
    let mut written = 0u64;
    loop {
        let frame = match first.take() {
            Some(frame) => frame,
            None => body.frame().await,
        };
        let frame = match frame {
            None => break,
            Some(frame) => frame?,
        };
        let frame = match frame.into_data() {
            Ok(data) if data.is_empty() => continue,
            Ok(data) => {
                written += data.len() as u64;
                match out {
                    Out::Length(length) if written > length => {
                        return Err("the response body is longer than its content-length".into());
                    }
                    Out::Chunked => {
                        let size = chunk_line(data.len());
                        write_all(io, &mut [head, &size.0[..size.1], &data, b"\r\n"]).await?;
                    }
                    _ => write_all(io, &mut [head, &data]).await?,
                }
                head = &[];
                io.flush().await?;
                continue;
            }
            Err(frame) => frame,
        };
        if let (Out::Chunked, Ok(trailers)) = (&out, frame.into_trailers()) {
            let mut section = b"0\r\n".to_vec();
            encode_fields(&mut section, &trailers);
            section.extend_from_slice(b"\r\n");
            write_all(io, &mut [head, &section]).await?;
            io.flush().await?;
            return Ok(after);
        }
    }
    match out {
        Out::Chunked => write_all(io, &mut [head, b"0\r\n\r\n"]).await?,
        Out::Length(length) if written < length => {
            return Err("the response body is shorter than its content-length".into());
        }
        _ => write_all(io, &mut [head]).await?,
    }
    io.flush().await?;
    Ok(after)
}

/// The body's next frame if it is there without waiting.
async fn ready_frame<B: Body + Unpin>(
    body: &mut B,
) -> Option<Option<Result<Frame<B::Data>, B::Error>>> {
    std::future::poll_fn(|cx| match Pin::new(&mut *body).poll_frame(cx) {
        Poll::Ready(frame) => Poll::Ready(Some(frame)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Writes every slice, in as few writes as the stream allows.
async fn write_all<W: AsyncWrite + Unpin>(io: &mut W, slices: &mut [&[u8]]) -> io::Result<()> {
    let mut owned: Vec<IoSlice<'_>> = slices
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| IoSlice::new(s))
        .collect();
    let mut slices = &mut owned[..];
    while !slices.is_empty() {
        let n = io.write_vectored(slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

/// `{size:x}\r\n`, and how many bytes of it are used.
fn chunk_line(size: usize) -> ([u8; 18], usize) {
    let mut line = [0u8; 18];
    let digits = (usize::BITS as usize / 4) - (size.leading_zeros() as usize / 4);
    let digits = digits.max(1);
    for (i, digit) in line.iter_mut().take(digits).enumerate() {
        let nibble = (size >> (4 * (digits - 1 - i))) & 0xf;
        *digit = b"0123456789abcdef"[nibble];
    }
    line[digits] = b'\r';
    line[digits + 1] = b'\n';
    (line, digits + 2)
}

fn encode_head(out: &mut Vec<u8>, status: StatusCode, headers: &HeaderMap) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    encode_fields(out, headers);
    out.extend_from_slice(b"\r\n");
}

fn encode_fields(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

fn says_close(headers: &HeaderMap) -> bool {
    headers.get_all(CONNECTION).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_lines_are_lower_hex() {
        for (size, text) in [(1, "1\r\n"), (0x1f, "1f\r\n"), (4096, "1000\r\n")] {
            let (line, len) = chunk_line(size);
            assert_eq!(&line[..len], text.as_bytes());
        }
    }
}
