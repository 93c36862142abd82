//! Field values of one request, computed on demand from `http` parts: the
//! request is never copied, and a field nobody reads costs nothing.

use std::borrow::Cow;
use std::cell::{Cell, OnceCell, RefCell};
use std::net::IpAddr;

use http::header::{COOKIE, HOST, REFERER, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Uri, Version, request, response};

use super::scheme::Field;

/// A value during evaluation; bytes borrow from the request whenever possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val<'a> {
    Bytes(Cow<'a, [u8]>),
    Int(i64),
    Bool(bool),
    Ip(IpAddr),
}

impl<'a> Val<'a> {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Val::Bytes(b) => b,
            _ => b"",
        }
    }

    pub(crate) fn into_bytes(self) -> Cow<'a, [u8]> {
        match self {
            Val::Bytes(b) => b,
            Val::Int(i) => Cow::Owned(i.to_string().into_bytes()),
            Val::Bool(b) => Cow::Borrowed(if b { b"true" } else { b"false" }),
            Val::Ip(ip) => Cow::Owned(ip.to_string().into_bytes()),
        }
    }
}

/// What the edge knows about the client and the hostname, outside the HTTP head.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo<'m> {
    pub ip: IpAddr,
    pub tls: bool,
    /// The custom hostname's `custom_metadata`, for `cf.hostname.metadata`.
    pub metadata: Option<&'m serde_json::Value>,
}

/// The client's request as it arrived, for `raw.*` fields. The URI clone is
/// reference-counted; headers are only kept when some rule reads them.
#[derive(Debug, Clone)]
pub struct RawRequest {
    pub uri: Uri,
    /// `None` when no rule reads `raw.http.request.headers*`; those fields
    /// then fall back to the current headers.
    pub headers: Option<HeaderMap>,
}

impl RawRequest {
    pub fn capture(req: &request::Parts, keep_headers: bool) -> Self {
        RawRequest {
            uri: req.uri.clone(),
            headers: keep_headers.then(|| req.headers.clone()),
        }
    }
}

/// Which header map a header field reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderSource {
    Request,
    Raw,
    Response,
}

/// Everything an expression can read, by reference. A context lives for one
/// phase, during which field values are fixed, so lookups are memoised in it.
pub struct Ctx<'a> {
    pub req: &'a request::Parts,
    pub raw: &'a RawRequest,
    pub client: &'a ClientInfo<'a>,
    pub resp: Option<&'a response::Parts>,
    /// Looked up on first use, then once per phase: many rules read the host
    /// and user agent, many phases read neither.
    host: OnceCell<&'a [u8]>,
    user_agent: OnceCell<&'a [u8]>,
    headers: Memo<HeaderLookup<'a>, 4>,
    cookies: Memo<CookieLookup<'a>, 2>,
}

/// Recent lookups of the phase: rules of a phase often test the same header
/// (`x-variant`, `x-debug`, …) or cookie (`session`), and each header map
/// lookup hashes the name byte by byte, each cookie lookup splits the
/// `Cookie` header again. Oldest entry replaced first; sized for the few
/// names a phase typically reads, as the context is built for every phase.
struct Memo<T, const N: usize> {
    entries: RefCell<[Option<T>; N]>,
    next: Cell<usize>,
}

impl<T, const N: usize> Default for Memo<T, N> {
    fn default() -> Self {
        Memo {
            entries: RefCell::new([const { None }; N]),
            next: Cell::new(0),
        }
    }
}

impl<T: Copy, const N: usize> Memo<T, N> {
    fn get_or_insert(&self, hit: impl Fn(&T) -> bool, compute: impl FnOnce() -> T) -> T {
        if let Some(found) = self.entries.borrow().iter().flatten().find(|e| hit(e)) {
            return *found;
        }
        let value = compute();
        let slot = self.next.get();
        self.entries.borrow_mut()[slot] = Some(value);
        self.next.set((slot + 1) % N);
        value
    }
}

/// A header or cookie name held inline: the memo neither allocates nor
/// touches a reference count shared by every worker thread running the same
/// rules. Longer names are not memoised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NameKey {
    len: u8,
    bytes: [u8; NAME_KEY],
}

const NAME_KEY: usize = 31;

impl NameKey {
    fn new(name: &[u8]) -> Option<Self> {
        let mut bytes = [0; NAME_KEY];
        bytes.get_mut(..name.len())?.copy_from_slice(name);
        Some(NameKey {
            len: name.len() as u8,
            bytes,
        })
    }
}

/// A header name a rule reads, with its memo key built when the expression
/// is compiled.
#[derive(Debug, Clone)]
pub(crate) struct HeaderKey {
    pub(crate) name: HeaderName,
    key: Option<NameKey>,
}

impl HeaderKey {
    pub(crate) fn new(name: HeaderName) -> Self {
        let key = NameKey::new(name.as_str().as_bytes());
        HeaderKey { name, key }
    }
}

impl PartialEq for HeaderKey {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for HeaderKey {}

/// A cookie name a rule reads, with its memo key built when the expression
/// is compiled.
#[derive(Debug, Clone)]
pub(crate) struct CookieKey {
    pub(crate) name: Box<[u8]>,
    key: Option<NameKey>,
}

impl CookieKey {
    pub(crate) fn new(name: &[u8]) -> Self {
        CookieKey {
            name: name.into(),
            key: NameKey::new(name),
        }
    }
}

#[derive(Clone, Copy)]
struct HeaderLookup<'a> {
    src: HeaderSource,
    name: NameKey,
    first: Option<&'a HeaderValue>,
    more: bool,
}

#[derive(Clone, Copy)]
struct CookieLookup<'a> {
    name: NameKey,
    first: Option<&'a [u8]>,
}

static EMPTY_HEADERS: std::sync::LazyLock<HeaderMap> = std::sync::LazyLock::new(HeaderMap::new);

impl<'a> Ctx<'a> {
    pub fn new(
        req: &'a request::Parts,
        raw: &'a RawRequest,
        client: &'a ClientInfo<'a>,
        resp: Option<&'a response::Parts>,
    ) -> Self {
        Ctx {
            req,
            raw,
            client,
            resp,
            host: OnceCell::new(),
            user_agent: OnceCell::new(),
            headers: Memo::default(),
            cookies: Memo::default(),
        }
    }

    /// The first value of header `name` in `src`, and whether it has more.
    pub(crate) fn header_first(
        &self,
        src: HeaderSource,
        name: &HeaderKey,
    ) -> (Option<&'a HeaderValue>, bool) {
        let lookup = || {
            let mut values = self.headers(src).get_all(&name.name).iter();
            (values.next(), values.next().is_some())
        };
        let Some(key) = name.key else {
            return lookup();
        };
        let l = self.headers.get_or_insert(
            |l| l.src == src && l.name == key,
            || {
                let (first, more) = lookup();
                HeaderLookup {
                    src,
                    name: key,
                    first,
                    more,
                }
            },
        );
        (l.first, l.more)
    }

    /// The first value of cookie `name` (`cookies["name"][0]`).
    pub(crate) fn cookie_first(&self, name: &CookieKey) -> Option<&'a [u8]> {
        let lookup = || cookie_values(&self.req.headers, &name.name).next();
        let Some(key) = name.key else {
            return lookup();
        };
        self.cookies
            .get_or_insert(
                |l| l.name == key,
                || CookieLookup {
                    name: key,
                    first: lookup(),
                },
            )
            .first
    }

    pub fn headers(&self, src: HeaderSource) -> &'a HeaderMap {
        match src {
            HeaderSource::Request => &self.req.headers,
            HeaderSource::Raw => self.raw.headers.as_ref().unwrap_or(&self.req.headers),
            HeaderSource::Response => self.resp.map_or(&EMPTY_HEADERS, |r| &r.headers),
        }
    }

    fn first_header(&self, name: &HeaderName) -> &'a [u8] {
        self.req.headers.get(name).map_or(b"", |v| v.as_bytes())
    }

    /// All values of a request header joined by `sep` (borrowed when there is one).
    fn joined_header(&self, name: &HeaderName, sep: &[u8]) -> Cow<'a, [u8]> {
        let mut values = self.req.headers.get_all(name).iter();
        let Some(first) = values.next() else {
            return Cow::Borrowed(b"");
        };
        let mut rest = values.peekable();
        if rest.peek().is_none() {
            return Cow::Borrowed(first.as_bytes());
        }
        let mut out = first.as_bytes().to_vec();
        for v in rest {
            out.extend_from_slice(sep);
            out.extend_from_slice(v.as_bytes());
        }
        Cow::Owned(out)
    }

    pub fn host(&self) -> &'a [u8] {
        self.host.get_or_init(|| match self.req.headers.get(HOST) {
            Some(h) => h.as_bytes(),
            None => self.req.uri.host().unwrap_or("").as_bytes(),
        })
    }

    fn user_agent(&self) -> &'a [u8] {
        self.user_agent
            .get_or_init(|| self.first_header(&USER_AGENT))
    }

    fn full_uri(&self, uri: &Uri) -> Cow<'a, [u8]> {
        let scheme: &[u8] = if self.client.tls {
            b"https://"
        } else {
            b"http://"
        };
        let (host, pq) = (self.host(), path_and_query(uri).as_bytes());
        let mut out = Vec::with_capacity(scheme.len() + host.len() + pq.len());
        out.extend_from_slice(scheme);
        out.extend_from_slice(host);
        out.extend_from_slice(pq);
        Cow::Owned(out)
    }

    /// The bytes of a field that borrows straight from the request, if `f` is one:
    /// the hot path of `field eq "..."`-style rules, with no `Val` in between.
    #[inline]
    pub fn borrowed_bytes(&self, f: Field) -> Option<&'a [u8]> {
        Some(match f {
            Field::Host => self.host(),
            Field::Method => self.req.method.as_str().as_bytes(),
            Field::Uri => path_and_query(&self.req.uri).as_bytes(),
            Field::UriPath => self.req.uri.path().as_bytes(),
            Field::UriQuery => self.req.uri.query().unwrap_or("").as_bytes(),
            Field::UserAgent => self.user_agent(),
            Field::Referer => self.first_header(&REFERER),
            _ => return None,
        })
    }

    /// A scalar field's value. Array and map fields are read by `arrays`.
    pub fn field(&self, f: Field) -> Val<'a> {
        let b = |s: &'a [u8]| Val::Bytes(Cow::Borrowed(s));
        match f {
            Field::Host => b(self.host()),
            Field::Method => b(self.req.method.as_str().as_bytes()),
            Field::Uri => b(path_and_query(&self.req.uri).as_bytes()),
            Field::UriPath => b(self.req.uri.path().as_bytes()),
            Field::UriPathExtension => Val::Bytes(extension(self.req.uri.path())),
            Field::UriQuery => b(self.req.uri.query().unwrap_or("").as_bytes()),
            Field::FullUri => Val::Bytes(self.full_uri(&self.req.uri)),
            Field::Version => b(version(self.req.version)),
            Field::Cookie => Val::Bytes(self.joined_header(&COOKIE, b"; ")),
            Field::UserAgent => b(self.user_agent()),
            Field::Referer => b(self.first_header(&REFERER)),
            Field::XForwardedFor => Val::Bytes(self.joined_header(&X_FORWARDED_FOR, b", ")),
            Field::IpSrc => Val::Ip(self.client.ip.to_canonical()),
            Field::Ssl => Val::Bool(self.client.tls),
            Field::HostnameMetadata => match self.client.metadata {
                Some(m) => Val::Bytes(Cow::Owned(serde_json::to_vec(m).unwrap_or_default())),
                None => b(b""),
            },
            Field::RawUri => b(path_and_query(&self.raw.uri).as_bytes()),
            Field::RawUriPath => b(self.raw.uri.path().as_bytes()),
            Field::RawUriPathExtension => Val::Bytes(extension(self.raw.uri.path())),
            Field::RawUriQuery => b(self.raw.uri.query().unwrap_or("").as_bytes()),
            Field::RawFullUri => Val::Bytes(self.full_uri(&self.raw.uri)),
            Field::ResponseCode => Val::Int(self.resp.map_or(0, |r| i64::from(r.status.as_u16()))),
            Field::Headers
            | Field::HeaderNames
            | Field::HeaderValues
            | Field::Cookies
            | Field::RawHeaders
            | Field::RawHeaderNames
            | Field::RawHeaderValues
            | Field::ResponseHeaders
            | Field::ResponseHeaderNames
            | Field::ResponseHeaderValues => b(b""),
        }
    }
}

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

pub(crate) fn path_and_query(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |pq| pq.as_str())
}

fn version(v: Version) -> &'static [u8] {
    match v {
        Version::HTTP_09 => b"HTTP/0.9",
        Version::HTTP_10 => b"HTTP/1.0",
        Version::HTTP_2 => b"HTTP/2",
        Version::HTTP_3 => b"HTTP/3",
        _ => b"HTTP/1.1",
    }
}

/// The lower-cased extension of the last path segment, without the dot.
pub(crate) fn extension(path: &str) -> Cow<'_, [u8]> {
    let last = path.rsplit('/').next().unwrap_or("");
    let ext = last.rsplit_once('.').map_or("", |(_, e)| e).as_bytes();
    if ext.iter().any(u8::is_ascii_uppercase) {
        Cow::Owned(ext.to_ascii_lowercase())
    } else {
        Cow::Borrowed(ext)
    }
}

/// Values of cookie `name` in the `Cookie` headers, in order.
pub(crate) fn cookie_values<'a, 'n>(
    headers: &'a HeaderMap,
    name: &'n [u8],
) -> impl Iterator<Item = &'a [u8]> + 'n
where
    'a: 'n,
{
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&c| c == b';'))
        .filter_map(move |pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&c| c == b'=')?;
            (pair[..eq].trim_ascii() == name).then(|| pair[eq + 1..].trim_ascii())
        })
}
