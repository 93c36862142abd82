//! The errors a visitor can get instead of a chain, under Cloudflare's codes
//! because those are what people search for. Every error carries a detail that
//! says why (which zone, which record, which account), since a bare "1014" is
//! the most common complaint about Cloudflare for SaaS.

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
    /// 1019: the request has already passed this edge too often.
    Loop,
    /// 421: TLS SNI and `Host` select different chains (domain fronting).
    Fronting,
}

impl ErrorKind {
    pub fn code(self) -> u16 {
        match self {
            ErrorKind::OriginIsEdge => 1000,
            ErrorKind::NoRoute => 1001,
            ErrorKind::DirectIp => 1003,
            ErrorKind::CnameCrossUser => 1014,
            ErrorKind::OriginUnresolvable | ErrorKind::HostnameBlocked => 1016,
            ErrorKind::Loop => 1019,
            ErrorKind::Fronting => 421,
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::OriginIsEdge | ErrorKind::DirectIp | ErrorKind::CnameCrossUser => {
                StatusCode::FORBIDDEN
            }
            ErrorKind::NoRoute | ErrorKind::OriginUnresolvable | ErrorKind::HostnameBlocked => {
                // Cloudflare's 530: "origin DNS error", not registered with IANA.
                StatusCode::from_u16(530).expect("530 is a valid status code")
            }
            ErrorKind::Loop => StatusCode::LOOP_DETECTED,
            ErrorKind::Fronting => StatusCode::MISDIRECTED_REQUEST,
        }
    }

    /// Cloudflare's title for the code.
    pub fn title(self) -> &'static str {
        match self {
            ErrorKind::OriginIsEdge => "DNS points to prohibited IP",
            ErrorKind::NoRoute => "DNS resolution error",
            ErrorKind::DirectIp => "Direct IP access not allowed",
            ErrorKind::CnameCrossUser => "CNAME Cross-User Banned",
            ErrorKind::OriginUnresolvable | ErrorKind::HostnameBlocked => "Origin DNS error",
            ErrorKind::Loop => "Loop detected",
            ErrorKind::Fronting => "Misdirected Request",
        }
    }
}

impl ErrorKind {
    /// What a public error page says: nothing about which tenant, zone or account is
    /// involved (that is the detail, for the owner's trace and the logs).
    pub fn public_sentence(self) -> &'static str {
        match self {
            ErrorKind::OriginIsEdge => "The hostname points to an address that is not allowed.",
            ErrorKind::NoRoute => "The hostname is not served by this edge.",
            ErrorKind::DirectIp => "The request names no hostname this edge serves.",
            ErrorKind::CnameCrossUser => {
                "The hostname points across accounts without being allowed to."
            }
            ErrorKind::OriginUnresolvable | ErrorKind::HostnameBlocked => {
                "The origin for this hostname cannot be determined at the moment."
            }
            ErrorKind::Loop => "The request has passed through the edge too many times.",
            ErrorKind::Fronting => {
                "The TLS server name and the requested host belong to different sites."
            }
        }
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
