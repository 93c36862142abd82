//! The hop-by-hop headers (RFC 9110 §7.6.1) plus the legacy ones proxies still see: the
//! pipeline removes them on every hop (`pipeline::forward`) and rule compilation refuses
//! rules that would set them (`rules::compiled`). Their own module, free of I/O, so that the
//! rules engine depends on a list and not on the proxy.

use http::header::{
    CONNECTION, HeaderName, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRANSFER_ENCODING, UPGRADE,
};

/// Names, so that removing them parses nothing per request.
pub const HOP_BY_HOP: [HeaderName; 8] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TRANSFER_ENCODING,
    TE,
    UPGRADE,
];
