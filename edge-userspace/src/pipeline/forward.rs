//! Turning the client's request into the origin's and the origin's response into the
//! client's: hop-by-hop headers stay on their hop, everything else streams through untouched.

use http::header::{CONNECTION, HOST, HeaderName, HeaderValue, TE, UPGRADE};
use http::{HeaderMap, Request, Version, request};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::downstream::http1::ClientUpgrade;
use crate::hop_by_hop::HOP_BY_HOP;
use crate::upstream::RequestBody;

/// `true` for an HTTP/1.1 protocol switch (WebSocket and friends).
pub fn is_upgrade(parts: &request::Parts) -> bool {
    parts.version == Version::HTTP_11
        && parts.headers.contains_key(UPGRADE)
        && connection_tokens(&parts.headers).any(|t| t.eq_ignore_ascii_case(b"upgrade"))
}

/// The comma-separated tokens of every `Connection` line, as bytes: comparing them needs no
/// UTF-8 check of the whole value (every HTTP/1.1 origin response has one).
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
}

/// Removes hop-by-hop headers and those the `Connection` header names.
///
/// `te: trailers` survives because it is how a client says it accepts trailers end to end
/// (gRPC needs it); `upgrade` is kept when `upgrading`, with `connection: upgrade` restored.
///
/// Runs on every request and every response, and most carry no hop-by-hop header (HTTP/2
/// requests) or only `connection: keep-alive` (HTTP/1.1 origins): one pass over the names finds
/// which are present, so only those are looked up again, and `Connection` tokens that name a
/// hop-by-hop header anyway (`keep-alive`) or no header at all (`close`) are not parsed into
/// names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrading: bool) {
    let mut present = 0u8;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present |= 1 << i;
        }
    }
    if present != 0 {
        let has = |name: &HeaderName| {
            HOP_BY_HOP
                .iter()
                .position(|hop| hop == name)
                .is_some_and(|i| present & (1 << i) != 0)
        };
        let named: Vec<HeaderName> = if has(&CONNECTION) {
            connection_tokens(headers)
                .filter(|t| {
                    !HOP_BY_HOP
                        .iter()
                        .any(|hop| t.eq_ignore_ascii_case(hop.as_str().as_bytes()))
                })
                // Looking up by `&str` allocates nothing; only names actually present are made.
                .filter(|t| std::str::from_utf8(t).is_ok_and(|t| headers.contains_key(t)))
                .filter_map(|t| HeaderName::from_bytes(t).ok())
                .collect()
        } else {
            Vec::new()
        };
        let trailers = has(&TE)
            && headers.get_all(TE).iter().any(|v| {
                v.to_str().is_ok_and(|v| {
                    v.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
                })
            });
        for name in named {
            headers.remove(name);
        }
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            if present & (1 << i) != 0 && !(upgrading && name == UPGRADE) {
                headers.remove(name);
            }
        }
        if trailers {
            headers.insert(TE, HeaderValue::from_static("trailers"));
        }
    }
    if upgrading {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Builds the origin request: same method, path and query, `Host` from the route, HTTP/1.1
/// framing left to the origin connection (which may be HTTP/2). The client's hop-by-hop
/// headers went on arrival and rules cannot add any, so nothing here reads `Connection`.
pub fn origin_request(
    mut parts: request::Parts,
    body: RequestBody,
    host: &HeaderValue,
) -> Request<RequestBody> {
    parts.headers.insert(HOST, host.clone());
    parts.version = Version::HTTP_11;
    parts.extensions = http::Extensions::new();
    Request::from_parts(parts, body)
}

/// Joins the client's and the origin's upgraded connections and copies bytes both ways until
/// either side closes. Runs detached: the request has been answered (101) by then.
pub fn tunnel(client: ClientUpgrade, origin: OnUpgrade) {
    tokio::spawn(async move {
        let (client, origin) = match tokio::join!(client.upgraded(), origin) {
            (Ok(client), Ok(origin)) => (client, origin),
            (Err(error), _) => {
                tracing::debug!(%error, "client upgrade failed");
                return;
            }
            (_, Err(error)) => {
                tracing::debug!(%error, "origin upgrade failed");
                return;
            }
        };
        let (mut client, mut origin) = (client, TokioIo::new(origin));
        if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut origin).await {
            tracing::debug!(%error, "upgraded connection ended");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_named_headers_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("close, x-secret"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(TE, HeaderValue::from_static("gzip, trailers"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers, false);
        assert_eq!(headers.len(), 2, "{headers:?}");
        assert_eq!(headers[TE], "trailers");
        assert_eq!(headers["x-kept"], "1");
    }

    #[test]
    fn named_tokens_match_any_case_and_keep_alive_needs_no_name() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("Keep-Alive, X-Secret"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(TE, HeaderValue::from_static("gzip"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers, false);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn an_upgrade_keeps_upgrade_and_says_so() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade, x-hop"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        strip_hop_by_hop(&mut headers, true);
        assert_eq!(headers.len(), 2, "{headers:?}");
        assert_eq!(headers[UPGRADE], "websocket");
        assert_eq!(headers[CONNECTION], "upgrade");
    }
}
