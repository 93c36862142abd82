//! Headers only the edge may set: visitor identity, request id, loop guard.
//!
//! Everything here runs before any zone's rules, so a client can never smuggle a value that
//! origins or the provider stage would trust (`cf-connecting-o2o` above all).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use http_body::Frame;

use super::ErrorPage;
use crate::chain::EdgeError;
use crate::downstream::ConnInfo;
use crate::vouched;

pub use crate::vouched::{
    CDN_LOOP, CF_CONNECTING_IP, CF_CONNECTING_O2O, CF_RAY, CF_VISITOR, X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
};

/// Identity of this edge in `cdn-loop` and how often a request may pass it.
#[derive(Clone, Debug)]
pub struct LoopGuard {
    /// The `cdn-id` token (RFC 8586) this edge adds; shared by every node of one edge.
    pub cdn_id: String,
    /// Passes allowed before refusing: O2O legitimately passes once per stage and a customer
    /// may chain one more proxy of ours, so Cloudflare-like values are small.
    pub max_passes: usize,
}

impl Default for LoopGuard {
    fn default() -> Self {
        Self {
            cdn_id: "edge".into(),
            max_passes: 3,
        }
    }
}

/// Generates `cf-ray`-style ids: 16 hex digits, a dash, the node name.
///
/// A keyed hash of a counter: unique per process, not guessable across requests, and cheaper
/// than a random number generator on the hot path. Written into a reused template rather than
/// formatted: an id is made for every request.
#[derive(Debug)]
pub struct RequestIds {
    key: RandomState,
    counter: AtomicU64,
    /// `0000000000000000-<node>`: the digits are overwritten per id.
    template: Box<[u8]>,
}

impl RequestIds {
    /// `node` is the suffix (Cloudflare's colo code); it must be a valid header token.
    pub fn new(node: &str) -> Self {
        let template = format!("{:016x}-{node}", 0).into_bytes().into_boxed_slice();
        HeaderValue::from_bytes(&template).expect("hex digits and a header-safe node name");
        Self {
            key: RandomState::new(),
            counter: AtomicU64::new(0),
            template,
        }
    }

    pub fn next(&self) -> HeaderValue {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let id = self.key.hash_one(n);
        let mut bytes = BytesMut::from(&self.template[..]);
        for (i, digit) in bytes[..16].iter_mut().enumerate() {
            *digit = HEX[((id >> (60 - 4 * i)) & 0xf) as usize];
        }
        let mut value = HeaderValue::from_maybe_shared(bytes.freeze())
            .expect("hex digits and a header-safe node name");
        // Never indexed by HPACK: a value unique to each response would only evict the
        // entries that do repeat from the connection's header table.
        value.set_sensitive(true);
        value
    }
}

/// Phase "request received": removes forged headers, refuses loops, stamps identity.
/// `cdn_loop` is `guard.cdn_id` as a header value, made once by the caller.
pub fn on_request(
    headers: &mut HeaderMap,
    conn: &ConnInfo,
    ray: &HeaderValue,
    guard: &LoopGuard,
    cdn_loop: &HeaderValue,
) -> Result<(), ErrorPage> {
    let passes = loop_passes(headers, &guard.cdn_id);
    if passes >= guard.max_passes {
        return Err(ErrorPage::edge(&EdgeError::loop_detected(passes)));
    }
    remove_edge_owned(headers);
    // The six headers below, room for which is made once rather than the map growing halfway.
    headers.reserve(6);
    let client = conn.client_ip().clone();
    headers.insert(CF_CONNECTING_IP, client.clone());
    append_forwarded_for(headers, client);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(conn.scheme()));
    headers.insert(
        CF_VISITOR,
        HeaderValue::from_static(if conn.tls.is_some() {
            r#"{"scheme":"https"}"#
        } else {
            r#"{"scheme":"http"}"#
        }),
    );
    headers.insert(CF_RAY, ray.clone());
    headers.append(CDN_LOOP, cdn_loop.clone());
    Ok(())
}

/// One pass over the names the client sent, against the one list ([`vouched::VOUCHED`]).
pub(crate) fn remove_edge_owned(headers: &mut HeaderMap) {
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|name| vouched::dropped_on_arrival(name))
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
}

/// Drops every vouched-for name (appended ones too) from a request's trailers: the edge
/// adds nothing there, so any such trailer is a client's forgery.
pub fn drop_vouched_trailers(frame: Frame<Bytes>) -> Frame<Bytes> {
    match frame.into_trailers() {
        Ok(mut trailers) => {
            let forged: Vec<HeaderName> = trailers
                .keys()
                .filter(|name| vouched::lookup(name).is_some())
                .cloned()
                .collect();
            for name in forged {
                trailers.remove(name);
            }
            Frame::trailers(trailers)
        }
        Err(frame) => frame,
    }
}

/// Counts `cdn-loop` entries naming this edge (entries may carry `; params`).
fn loop_passes(headers: &HeaderMap, cdn_id: &str) -> usize {
    headers
        .get_all(CDN_LOOP)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter(|entry| {
            let id = entry.split(';').next().unwrap_or("").trim();
            id.eq_ignore_ascii_case(cdn_id)
        })
        .count()
}

/// Joins any client-sent `x-forwarded-for` lines into one and appends the client address.
fn append_forwarded_for(headers: &mut HeaderMap, client: HeaderValue) {
    let mut joined: Vec<u8> = Vec::new();
    for value in headers.get_all(X_FORWARDED_FOR) {
        if !joined.is_empty() {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(value.as_bytes());
    }
    let value = if joined.is_empty() {
        client
    } else {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(client.as_bytes());
        HeaderValue::from_bytes(&joined).expect("joined from valid header values")
    };
    headers.insert(X_FORWARDED_FOR, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> ConnInfo {
        ConnInfo::new(
            "[::ffff:192.0.2.7]:5000".parse().unwrap(),
            "127.0.0.1:443".parse().unwrap(),
            None,
        )
    }

    #[test]
    fn forged_headers_are_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert("cf-connecting-o2o", HeaderValue::from_static("1"));
        headers.insert("cf-connecting-ip", HeaderValue::from_static("1.1.1.1"));
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let ray = HeaderValue::from_static("abc-TEST");
        let cdn = HeaderValue::from_static("edge");
        on_request(&mut headers, &conn(), &ray, &LoopGuard::default(), &cdn).unwrap();
        assert!(headers.get("cf-connecting-o2o").is_none());
        assert_eq!(headers["cf-connecting-ip"], "192.0.2.7");
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1, 10.0.0.2, 192.0.2.7");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["cf-ray"], "abc-TEST");
        assert_eq!(headers["cdn-loop"], "edge");
    }

    #[test]
    fn every_edge_owned_name_is_removed() {
        let mut headers = HeaderMap::new();
        for vouched in &vouched::VOUCHED {
            headers.insert(&vouched.name, HeaderValue::from_static("forged"));
        }
        headers.insert("cf-kept-by-origin", HeaderValue::from_static("1"));
        remove_edge_owned(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["cdn-loop", "cf-kept-by-origin", "x-forwarded-for"]);
    }

    #[test]
    fn loops_are_counted_across_lines_and_params() {
        let mut headers = HeaderMap::new();
        headers.append(CDN_LOOP, HeaderValue::from_static("other, EDGE; v=1"));
        headers.append(CDN_LOOP, HeaderValue::from_static("edge"));
        let guard = LoopGuard {
            cdn_id: "edge".into(),
            max_passes: 3,
        };
        let ray = HeaderValue::from_static("r");
        let cdn = HeaderValue::from_static("edge");
        on_request(&mut headers, &conn(), &ray, &guard, &cdn).unwrap();
        let page = on_request(&mut headers, &conn(), &ray, &guard, &cdn).unwrap_err();
        assert_eq!((page.kind.status().as_u16(), page.kind.code()), (508, 1019));
    }

    #[test]
    fn request_ids_differ() {
        let ids = RequestIds::new("LHR");
        let (a, b) = (ids.next(), ids.next());
        assert_ne!(a, b);
        assert!(a.to_str().unwrap().ends_with("-LHR"));
        assert!(a.is_sensitive());
        assert_eq!(a.len(), 16 + 4);
    }
}
