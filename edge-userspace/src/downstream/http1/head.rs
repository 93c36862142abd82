//! Request heads: httparse reads the bytes, this decides what they mean for the connection —
//! the body's framing (RFC 9112 §6), keep-alive (§9.3), `Expect: 100-continue` and upgrades —
//! and refuses every shape two parsers could read differently.
//!
//! Refused (400, connection closed): `Content-Length` together with `Transfer-Encoding` (the
//! classic smuggling pair, which RFC 9112 §6.1 lets a server refuse), `Content-Length` values
//! that differ or are not plain digits, any `Transfer-Encoding` but a single `chunked` (the
//! edge decodes no other coding, and an unknown one would reach the origin undecoded),
//! `Transfer-Encoding` in HTTP/1.0, obs-fold (httparse's own refusal) and bare LF line ends
//! (which httparse accepts leniently). Identical `Content-Length` values, as repeated lines or
//! a list, are the one length they agree on, as §6.3 allows: nothing downstream can read them
//! another way, since the origin request is framed anew.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode, Uri, Version};

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes (0: no body).
    Length(u64),
    Chunked,
}

/// A parsed head and what it means for the connection.
#[derive(Debug)]
pub struct Head {
    pub request: Request<()>,
    pub framing: Framing,
    /// The client allows the connection to stay open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` (HTTP/1.1): the client waits for a go-ahead before its body.
    pub expect_continue: bool,
    /// `Connection: upgrade` with an `Upgrade` header (HTTP/1.1).
    pub upgrade: bool,
}

/// Why a head is refused; the status the client gets before the connection closes.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// 431: larger than `max_header_bytes` or more lines than `max_headers`.
    TooLarge,
    /// 400, with what was wrong (for the log).
    Malformed(&'static str),
}

impl Refused {
    pub fn status(&self) -> StatusCode {
        match self {
            Refused::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refused::Malformed(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Header lines parsed on the stack up to this count; beyond it (a configured `max_headers`
/// above it) on the heap.
const STACK_HEADERS: usize = 128;

/// Parses the head at the start of `buf` and takes it out; `Ok(None)` while it is incomplete
/// and within `max_bytes`.
pub fn parse(
    buf: &mut BytesMut,
    max_bytes: usize,
    max_headers: usize,
) -> Result<Option<Head>, Refused> {
    let mut stack = [const { MaybeUninit::uninit() }; STACK_HEADERS];
    let mut heap;
    let headers: &mut [MaybeUninit<httparse::Header<'_>>] = if max_headers <= STACK_HEADERS {
        &mut stack[..max_headers]
    } else {
        heap = vec![MaybeUninit::uninit(); max_headers];
        &mut heap
    };
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, headers) {
        Ok(httparse::Status::Complete(len)) if len <= max_bytes => len,
        Ok(httparse::Status::Complete(_)) => return Err(Refused::TooLarge),
        Ok(httparse::Status::Partial) if buf.len() < max_bytes => return Ok(None),
        Ok(httparse::Status::Partial) => return Err(Refused::TooLarge),
        Err(httparse::Error::TooManyHeaders) => return Err(Refused::TooLarge),
        Err(_) => return Err(Refused::Malformed("the request head is not valid HTTP/1.1")),
    };
    if has_bare_lf(&buf[..len]) {
        return Err(Refused::Malformed("a line of the head ends in a bare LF"));
    }
    let base = buf.as_ptr() as usize;
    let offsets = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        (start, start + s.len())
    };
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| Refused::Malformed("invalid method"))?;
    let target = offsets(req.path.unwrap_or_default().as_bytes());
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let lines: Vec<Line> = req
        .headers
        .iter()
        .map(|h| Line {
            name: offsets(h.name.as_bytes()),
            value: offsets(h.value),
        })
        .collect();
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(target.0..target.1))
        .map_err(|_| Refused::Malformed("invalid request target"))?;
    let mut map = HeaderMap::with_capacity(lines.len());
    let mut meaning = Meaning::default();
    for line in &lines {
        let name = &head[line.name.0..line.name.1];
        let value = head.slice(line.value.0..line.value.1);
        meaning.read(name, &value)?;
        let name =
            HeaderName::from_bytes(name).map_err(|_| Refused::Malformed("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(value)
            .map_err(|_| Refused::Malformed("invalid header value"))?;
        map.append(name, value);
    }
    let framing = meaning.framing(version)?;
    if meaning.content_length_repeated
        && let Some(length) = meaning.content_length
    {
        // One value from here on, as §6.3 says to process it.
        map.insert(http::header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = map;
    let http11 = version == Version::HTTP_11;
    Ok(Some(Head {
        request,
        framing,
        keep_alive: !meaning.close && (http11 || meaning.keep_alive),
        expect_continue: http11 && meaning.expect_continue,
        upgrade: http11 && meaning.upgrade_token && meaning.upgrade_header,
    }))
}

/// A `\n` not preceded by `\r` anywhere in the head.
fn has_bare_lf(head: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', head).any(|at| at == 0 || head[at - 1] != b'\r')
}

/// What the framing and connection headers said, line by line.
#[derive(Default)]
struct Meaning {
    content_length: Option<u64>,
    /// Given more than once (lines or a list), all the same.
    content_length_repeated: bool,
    transfer_encodings: usize,
    chunked: bool,
    close: bool,
    keep_alive: bool,
    upgrade_token: bool,
    upgrade_header: bool,
    expect_continue: bool,
}

impl Meaning {
    fn read(&mut self, name: &[u8], value: &Bytes) -> Result<(), Refused> {
        if name.eq_ignore_ascii_case(b"content-length") {
            for part in value.split(|&b| b == b',') {
                let length = digits(part.trim_ascii())
                    .ok_or(Refused::Malformed("invalid content-length"))?;
                if let Some(seen) = self.content_length {
                    if seen != length {
                        return Err(Refused::Malformed("content-length values differ"));
                    }
                    self.content_length_repeated = true;
                }
                self.content_length = Some(length);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encodings += 1;
            self.chunked = value.trim_ascii().eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                self.upgrade_token |= token.eq_ignore_ascii_case(b"upgrade");
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.upgrade_header = true;
        } else if name.eq_ignore_ascii_case(b"expect") {
            self.expect_continue = value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
        Ok(())
    }

    fn framing(&self, version: Version) -> Result<Framing, Refused> {
        if self.transfer_encodings == 0 {
            return Ok(Framing::Length(self.content_length.unwrap_or(0)));
        }
        if version == Version::HTTP_10 {
            return Err(Refused::Malformed("transfer-encoding in HTTP/1.0"));
        }
        if self.content_length.is_some() {
            return Err(Refused::Malformed(
                "content-length together with transfer-encoding",
            ));
        }
        if self.transfer_encodings > 1 || !self.chunked {
            return Err(Refused::Malformed(
                "transfer-encoding other than a single chunked",
            ));
        }
        Ok(Framing::Chunked)
    }
}

/// A decimal number of plain digits, without sign or overflow.
fn digits(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |n, &b| {
        let digit = (b as char).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// Offsets of one header line in the head.
struct Line {
    name: (usize, usize),
    value: (usize, usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(bytes: &[u8]) -> Result<Option<Head>, Refused> {
        parse(&mut BytesMut::from(bytes), 1024, 8)
    }

    #[test]
    fn framing_follows_rfc_9112_section_6() {
        let framing = |extra: &str| {
            let text = format!("POST / HTTP/1.1\r\nhost: a\r\n{extra}\r\n");
            head(text.as_bytes()).map(|h| h.unwrap().framing)
        };
        assert_eq!(framing(""), Ok(Framing::Length(0)));
        assert_eq!(framing("content-length: 5\r\n"), Ok(Framing::Length(5)));
        assert_eq!(
            framing("content-length: 5\r\ncontent-length: 5\r\n"),
            Ok(Framing::Length(5))
        );
        assert_eq!(framing("content-length: 5, 5\r\n"), Ok(Framing::Length(5)));
        assert_eq!(
            framing("transfer-encoding: Chunked\r\n"),
            Ok(Framing::Chunked)
        );
        for refused in [
            "content-length: 5\r\ncontent-length: 6\r\n",
            "content-length: 5, 6\r\n",
            "content-length: +5\r\n",
            "content-length: \r\n",
            "content-length: 99999999999999999999\r\n",
            "content-length: 5\r\ntransfer-encoding: chunked\r\n",
            "transfer-encoding: chunked\r\ncontent-length: 5\r\n",
            "transfer-encoding: chunked, identity\r\n",
            "transfer-encoding: gzip, chunked\r\n",
            "transfer-encoding: identity\r\n",
            "transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n",
        ] {
            assert!(
                matches!(framing(refused), Err(Refused::Malformed(_))),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn http10_keep_alive_te_and_bare_lf() {
        let h = head(b"GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let h = head(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = head(b"GET / HTTP/1.1\r\nconnection: Close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        assert!(head(b"POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(head(b"GET / HTTP/1.1\nhost: a\n\n").is_err());
        assert!(head(b"GET / HTTP/1.1\r\nhost: a\r\nx: 1\r\n  fold\r\n\r\n").is_err());
    }

    #[test]
    fn incomplete_heads_wait_and_oversized_ones_are_refused() {
        assert!(head(b"GET / HTTP/1.1\r\nhost: a\r\n").unwrap().is_none());
        let long = format!("GET / HTTP/1.1\r\nx: {}\r\n", "a".repeat(10 * 1024));
        assert_eq!(head(long.as_bytes()).unwrap_err(), Refused::TooLarge);
        let many: String = (0..80).map(|i| format!("x{i}: 1\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(head(many.as_bytes()).unwrap_err(), Refused::TooLarge);
    }

    #[test]
    fn the_head_is_taken_out_and_the_rest_stays() {
        let mut buf = BytesMut::from(&b"GET /a HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\nNEXT"[..]);
        let h = parse(&mut buf, 1024, 8).unwrap().unwrap();
        assert_eq!(&buf[..], b"NEXT");
        assert_eq!(h.request.uri(), "/a");
        assert_eq!(h.request.headers().get_all("host").iter().count(), 2);
    }

    #[test]
    fn a_repeated_content_length_is_passed_on_once() {
        let h = head(b"POST / HTTP/1.1\r\ncontent-length: 5, 5\r\ncontent-length: 5\r\n\r\n");
        let h = h.unwrap().unwrap();
        let values: Vec<_> = h
            .request
            .headers()
            .get_all("content-length")
            .iter()
            .collect();
        assert_eq!(values, ["5"]);
    }
}
