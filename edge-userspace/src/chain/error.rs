//! Every error the edge answers itself, in one table ([`ErrorKind::answer`]): the code
//! (Cloudflare's where it has one, because those are what people search for), the status,
//! the title and the public sentence; `pipeline::error_page` renders a row as HTML or JSON.
//! The chain's errors also carry a detail that says why (which zone, which record, which
//! account), since a bare "1014" is the most common complaint about Cloudflare for SaaS;
//! the detail goes to the log and the owner's trace, never to the page.

use std::fmt;
use std::sync::Arc;

use http::StatusCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// 1000: the origin resolves to an address of the edge itself.
    OriginIsEdge,
    /// 1001: no zone, record or custom hostname for the hostname.
    NoRoute,
    /// 1003: request by bare IP address or without a usable host.
    DirectIp,
    /// 1014: a proxied CNAME crosses into another account's zone without an
    /// active custom hostname there.
    CnameCrossUser,
    /// 1016: the origin cannot be determined (hostname not active, no or
    /// inactive fallback origin).
    OriginUnresolvable,
    /// 1016 as well (our rule); kept apart so the XDP route sync can drop
    /// blocked hostnames in the kernel.
    HostnameBlocked,
    /// 1019: the request has already passed this edge too often (`cdn-loop`).
    Loop,
    /// 421: TLS SNI and `Host` select different chains (domain fronting).
    Fronting,
    /// 405: `CONNECT`; the edge opens no tunnels.
    Connect,
    /// 400: more than one `Host` (HTTP/1.1).
    TwoHosts,
    /// 400: user information in the request target's authority.
    UserInfo,
    /// 400: an HTTP/1.1 request without `Host`.
    NoHost,
    /// 400: `host` and `:authority` differ (HTTP/2, HTTP/3).
    HostMismatch,
    /// 400: the request body's framing is invalid, or the client cut it off.
    BadBody,
    /// 408: the request body stopped arriving.
    BodyTimeout,
    /// 413: the request body is larger than the chain's zones allow.
    BodyTooLarge,
    /// 429: the client already has as many requests in flight to the origin as it may.
    TooManyInFlight,
    /// 1015 (429): the chain has as many requests in progress as its zones allow
    /// (`admission.max_concurrent_requests`); Cloudflare's answer to a site's own rate limit.
    ChainAtCapacity,
    /// 502: the origin refused or dropped the connection, or answered invalidly.
    BadGateway,
    /// 504: the origin did not answer in time.
    GatewayTimeout,
}

/// One row of the table: what a visitor is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Cloudflare's error number (1001, 1014, …), else the status itself.
    pub code: u16,
    pub status: StatusCode,
    pub title: &'static str,
    /// Nothing about which tenant, zone or account is involved.
    pub text: &'static str,
}

const fn row(code: u16, status: u16, title: &'static str, text: &'static str) -> Answer {
    let status = match StatusCode::from_u16(status) {
        Ok(status) => status,
        Err(_) => panic!("a valid status code"),
    };
    Answer {
        code,
        status,
        title,
        text,
    }
}

impl ErrorKind {
    /// The table.
    pub const fn answer(self) -> Answer {
        match self {
            ErrorKind::OriginIsEdge => row(
                1000,
                403,
                "DNS points to prohibited IP",
                "The hostname points to an address that is not allowed.",
            ),
            // Cloudflare's 530: "origin DNS error", not registered with IANA.
            ErrorKind::NoRoute => row(
                1001,
                530,
                "DNS resolution error",
                "The hostname is not served by this edge.",
            ),
            ErrorKind::DirectIp => row(
                1003,
                403,
                "Direct IP access not allowed",
                "The request names no hostname this edge serves.",
            ),
            ErrorKind::CnameCrossUser => row(
                1014,
                403,
                "CNAME Cross-User Banned",
                "The hostname points across accounts without being allowed to.",
            ),
            ErrorKind::OriginUnresolvable | ErrorKind::HostnameBlocked => row(
                1016,
                530,
                "Origin DNS error",
                "The origin for this hostname cannot be determined at the moment.",
            ),
            ErrorKind::Loop => row(
                1019,
                508,
                "Loop detected",
                "This request has passed through the edge too many times: an origin or a rule \
                 points back at the edge.",
            ),
            ErrorKind::Fronting => row(
                421,
                421,
                "Misdirected Request",
                "The TLS server name and the requested host belong to different sites.",
            ),
            ErrorKind::Connect => row(
                405,
                405,
                "CONNECT is not supported",
                "The edge is a reverse proxy; it does not open tunnels with CONNECT.",
            ),
            ErrorKind::TwoHosts => row(
                400,
                400,
                "Bad request",
                "The request has more than one Host header.",
            ),
            ErrorKind::UserInfo => row(
                400,
                400,
                "Bad request",
                "The request target carries user information.",
            ),
            ErrorKind::NoHost => row(400, 400, "Bad request", "The request has no Host header."),
            ErrorKind::HostMismatch => row(
                400,
                400,
                "Bad request",
                "The request's host header and :authority name different hosts.",
            ),
            ErrorKind::BadBody => row(
                400,
                400,
                "Bad request",
                "The request body could not be read: its framing is invalid or it was cut off.",
            ),
            ErrorKind::BodyTimeout => row(
                408,
                408,
                "Request timeout",
                "The request body stopped arriving.",
            ),
            ErrorKind::BodyTooLarge => row(
                413,
                413,
                "Request entity too large",
                "The request body is larger than this zone allows.",
            ),
            ErrorKind::TooManyInFlight => row(
                429,
                429,
                "Too many requests",
                "This client already has as many requests in flight to this origin as it may.",
            ),
            ErrorKind::ChainAtCapacity => row(
                1015,
                429,
                "You are being rate limited",
                "This website has as many requests in progress as its owner allows. Try again \
                 shortly.",
            ),
            ErrorKind::BadGateway => row(
                502,
                502,
                "Bad gateway",
                "The origin web server refused or dropped the connection, or sent an invalid \
                 response.",
            ),
            ErrorKind::GatewayTimeout => row(
                504,
                504,
                "Gateway time-out",
                "The origin web server did not answer in time.",
            ),
        }
    }

    pub fn code(self) -> u16 {
        self.answer().code
    }

    pub fn status(self) -> StatusCode {
        self.answer().status
    }

    /// Cloudflare's title for the code.
    pub fn title(self) -> &'static str {
        self.answer().title
    }

    /// What a public error page says (see [`Answer::text`]).
    pub fn public_sentence(self) -> &'static str {
        self.answer().text
    }
}

/// An error answer. Cloning is a reference-count increment, so the snapshot can
/// hand out precomputed errors without allocating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeError {
    kind: ErrorKind,
    detail: Arc<str>,
}

impl EdgeError {
    pub fn new(kind: ErrorKind, detail: impl Into<Arc<str>>) -> Self {
        EdgeError {
            kind,
            detail: detail.into(),
        }
    }

    pub fn origin_is_edge(origin: &str) -> Self {
        EdgeError::new(
            ErrorKind::OriginIsEdge,
            format!("the origin {origin} resolves to an address of this edge"),
        )
    }

    pub fn loop_detected(passes: usize) -> Self {
        EdgeError::new(
            ErrorKind::Loop,
            format!("the request has already passed this edge {passes} times (cdn-loop)"),
        )
    }

    pub fn fronting(sni: &str, host: &str) -> Self {
        EdgeError::new(
            ErrorKind::Fronting,
            format!("TLS server name {sni} and Host {host} belong to different chains"),
        )
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn code(&self) -> u16 {
        self.kind.code()
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    pub fn title(&self) -> &'static str {
        self.kind.title()
    }

    /// Why, in words an operator can act on.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for EdgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "error {} ({}): {}",
            self.code(),
            self.title(),
            self.detail
        )
    }
}

impl std::error::Error for EdgeError {}
