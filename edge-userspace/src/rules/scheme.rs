//! The scheme: every field an expression may name, with its type. Fields are
//! an enum rather than strings so that evaluation is a `match`, not a lookup.

use std::fmt;

/// Types of the rules language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    Bytes,
    Int,
    Bool,
    Ip,
    Array(Box<Type>),
    /// Maps are keyed by strings (header and cookie names).
    Map(Box<Type>),
}

impl Type {
    pub(crate) fn bytes_array() -> Type {
        Type::Array(Box::new(Type::Bytes))
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Bytes => f.write_str("Bytes"),
            Type::Int => f.write_str("Int"),
            Type::Bool => f.write_str("Bool"),
            Type::Ip => f.write_str("IP address"),
            Type::Array(t) => write!(f, "Array<{t}>"),
            Type::Map(t) => write!(f, "Map<{t}>"),
        }
    }
}

macro_rules! fields {
    ($($variant:ident => $name:literal : $ty:expr, $response:literal;)*) => {
        /// A field of the scheme.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Field { $($variant),* }

        impl Field {
            pub const ALL: &'static [Field] = &[$(Field::$variant),*];

            pub fn name(self) -> &'static str {
                match self { $(Field::$variant => $name),* }
            }

            pub fn ty(self) -> Type {
                match self { $(Field::$variant => $ty),* }
            }

            /// Only available in response phases.
            pub fn is_response(self) -> bool {
                match self { $(Field::$variant => $response),* }
            }

            pub fn from_name(name: &str) -> Option<Field> {
                match name { $($name => Some(Field::$variant),)* _ => None }
            }
        }
    };
}

fields! {
    Host => "http.host": Type::Bytes, false;
    Method => "http.request.method": Type::Bytes, false;
    Uri => "http.request.uri": Type::Bytes, false;
    UriPath => "http.request.uri.path": Type::Bytes, false;
    UriPathExtension => "http.request.uri.path.extension": Type::Bytes, false;
    UriQuery => "http.request.uri.query": Type::Bytes, false;
    FullUri => "http.request.full_uri": Type::Bytes, false;
    Version => "http.request.version": Type::Bytes, false;
    Headers => "http.request.headers": Type::Map(Box::new(Type::bytes_array())), false;
    HeaderNames => "http.request.headers.names": Type::bytes_array(), false;
    HeaderValues => "http.request.headers.values": Type::bytes_array(), false;
    Cookies => "http.request.cookies": Type::Map(Box::new(Type::bytes_array())), false;
    Cookie => "http.cookie": Type::Bytes, false;
    UserAgent => "http.user_agent": Type::Bytes, false;
    Referer => "http.referer": Type::Bytes, false;
    XForwardedFor => "http.x_forwarded_for": Type::Bytes, false;
    IpSrc => "ip.src": Type::Ip, false;
    Ssl => "ssl": Type::Bool, false;
    HostnameMetadata => "cf.hostname.metadata": Type::Bytes, false;
    RawUri => "raw.http.request.uri": Type::Bytes, false;
    RawUriPath => "raw.http.request.uri.path": Type::Bytes, false;
    RawUriPathExtension => "raw.http.request.uri.path.extension": Type::Bytes, false;
    RawUriQuery => "raw.http.request.uri.query": Type::Bytes, false;
    RawFullUri => "raw.http.request.full_uri": Type::Bytes, false;
    RawHeaders => "raw.http.request.headers": Type::Map(Box::new(Type::bytes_array())), false;
    RawHeaderNames => "raw.http.request.headers.names": Type::bytes_array(), false;
    RawHeaderValues => "raw.http.request.headers.values": Type::bytes_array(), false;
    ResponseCode => "http.response.code": Type::Int, true;
    ResponseHeaders => "http.response.headers": Type::Map(Box::new(Type::bytes_array())), true;
    ResponseHeaderNames => "http.response.headers.names": Type::bytes_array(), true;
    ResponseHeaderValues => "http.response.headers.values": Type::bytes_array(), true;
}

impl Field {
    /// Reading this field needs a copy of the client's original headers.
    pub fn needs_raw_headers(self) -> bool {
        matches!(
            self,
            Field::RawHeaders | Field::RawHeaderNames | Field::RawHeaderValues
        )
    }
}

/// Functions of the language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    Lower,
    Upper,
    Len,
    StartsWith,
    EndsWith,
    Concat,
    Any,
    All,
    LookupJsonString,
    UrlDecode,
    ToString,
    RegexReplace,
    WildcardReplace,
}

impl Func {
    pub fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "lower" => Func::Lower,
            "upper" => Func::Upper,
            "len" => Func::Len,
            "starts_with" => Func::StartsWith,
            "ends_with" => Func::EndsWith,
            "concat" => Func::Concat,
            "any" => Func::Any,
            "all" => Func::All,
            "lookup_json_string" => Func::LookupJsonString,
            "url_decode" => Func::UrlDecode,
            "to_string" => Func::ToString,
            "regex_replace" => Func::RegexReplace,
            "wildcard_replace" => Func::WildcardReplace,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Func::Lower => "lower",
            Func::Upper => "upper",
            Func::Len => "len",
            Func::StartsWith => "starts_with",
            Func::EndsWith => "ends_with",
            Func::Concat => "concat",
            Func::Any => "any",
            Func::All => "all",
            Func::LookupJsonString => "lookup_json_string",
            Func::UrlDecode => "url_decode",
            Func::ToString => "to_string",
            Func::RegexReplace => "regex_replace",
            Func::WildcardReplace => "wildcard_replace",
        }
    }

    /// Functions that only make sense when computing a new value (rewrite and
    /// redirect targets), not in filters.
    pub fn value_only(self) -> bool {
        matches!(self, Func::RegexReplace | Func::WildcardReplace)
    }
}

/// Where an expression is used; decides which fields and functions it may use
/// and which type it must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExprKind {
    /// Response phases may read `http.response.*`.
    pub response: bool,
    /// Value expressions (rewrite/redirect targets) yield Bytes and may use
    /// `regex_replace`/`wildcard_replace`; filters yield Bool.
    pub value: bool,
}

impl ExprKind {
    pub const REQUEST_FILTER: ExprKind = ExprKind {
        response: false,
        value: false,
    };
    pub const REQUEST_VALUE: ExprKind = ExprKind {
        response: false,
        value: true,
    };
}
