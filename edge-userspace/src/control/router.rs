//! Which handler answers a request: a table of (method, path pattern,
//! handler, body limit), so that an endpoint is one line of
//! [`super::api::ROUTES`]. `{name}` in a pattern captures one path segment.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::envelope::code;
use super::{ApiError, Control};

/// Bodies of object endpoints; a ruleset of a few hundred rules fits easily.
pub const MAX_BODY: usize = 1 << 20;
/// The whole state at once (import).
pub const MAX_STATE_BODY: usize = 256 << 20;

/// What an endpoint answers with.
#[derive(Clone, Copy)]
pub enum Handler {
    /// The envelope's `result`: every Cloudflare-shaped endpoint.
    Json(fn(&Control, &Call) -> Result<Value, ApiError>),
    /// A body of its own, outside the envelope (Prometheus text); its
    /// errors still come in the envelope.
    Raw(fn(&Control, &Call) -> Result<Reply, ApiError>),
}

impl Handler {
    pub fn call(self, control: &Control, call: &Call) -> Result<Reply, ApiError> {
        match self {
            Handler::Json(handler) => handler(control, call).map(Reply::Json),
            Handler::Raw(handler) => handler(control, call),
        }
    }
}

/// A successful answer: an envelope around `result`, or a body as it is.
pub enum Reply {
    Json(Value),
    Text {
        content_type: &'static str,
        body: String,
    },
}

pub struct Route {
    pub method: Method,
    pub pattern: &'static str,
    pub handler: Handler,
    pub max_body: usize,
}

/// A route answering `pattern` for `method`, bodies up to [`MAX_BODY`].
pub const fn route(
    method: Method,
    pattern: &'static str,
    handler: fn(&Control, &Call) -> Result<Value, ApiError>,
) -> Route {
    Route {
        method,
        pattern,
        handler: Handler::Json(handler),
        max_body: MAX_BODY,
    }
}

/// A route whose answer is not an envelope ([`Handler::Raw`]).
pub const fn raw_route(
    method: Method,
    pattern: &'static str,
    handler: fn(&Control, &Call) -> Result<Reply, ApiError>,
) -> Route {
    Route {
        method,
        pattern,
        handler: Handler::Raw(handler),
        max_body: MAX_BODY,
    }
}

impl Route {
    /// A larger (or smaller) body limit than [`MAX_BODY`].
    pub const fn max_body(mut self, bytes: usize) -> Route {
        self.max_body = bytes;
        self
    }
}

/// A request as handlers see it.
pub struct Call {
    params: Vec<(&'static str, String)>,
    query: Vec<(String, String)>,
    body: Bytes,
}

impl Call {
    pub fn new(params: Vec<(&'static str, String)>, query: Option<&str>, body: Bytes) -> Call {
        let query = query
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        Call {
            params,
            query,
            body,
        }
    }

    /// A `{name}` of the route's pattern.
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .expect("handlers only ask for their pattern's names")
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the request carries a body (whitespace is none).
    pub fn has_body(&self) -> bool {
        !self.body.iter().all(u8::is_ascii_whitespace)
    }

    /// The body as `T`; unknown fields, wrong types, bad JSON and JSON nested
    /// past [`crate::json_depth::MAX_DEPTH`] are 400.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if !self.has_body() {
            return Err(ApiError::malformed("a JSON body is required"));
        }
        crate::json_depth::check(&self.body)
            .map_err(|error| ApiError::malformed(format!("request body: {error}")))?;
        serde_json::from_slice(&self.body)
            .map_err(|error| ApiError::malformed(format!("request body: {error}")))
    }
}

pub enum Found<'r> {
    Route(&'r Route, Vec<(&'static str, String)>),
    /// The path exists with other methods.
    WrongMethod,
}

pub fn find<'r>(routes: &'r [Route], method: &Method, path: &str) -> Result<Found<'r>, ApiError> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut path_known = false;
    for route in routes {
        let Some(params) = matches(route.pattern, &segments) else {
            continue;
        };
        if route.method == *method {
            return Ok(Found::Route(route, params));
        }
        path_known = true;
    }
    if path_known {
        return Ok(Found::WrongMethod);
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        code::NO_ROUTE,
        format!("no endpoint {path}"),
    ))
}

fn matches(pattern: &'static str, segments: &[&str]) -> Option<Vec<(&'static str, String)>> {
    let pattern: Vec<&'static str> = pattern.split('/').collect();
    if pattern.len() != segments.len() {
        return None;
    }
    let mut params = Vec::new();
    for (p, s) in pattern.iter().zip(segments) {
        match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            Some(name) if !s.is_empty() => params.push((name, (*s).to_owned())),
            Some(_) => return None,
            None if p == s => {}
            None => return None,
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nothing(_: &Control, _: &Call) -> Result<Value, ApiError> {
        Ok(Value::Null)
    }

    #[test]
    fn literal_routes_listed_first_win_and_methods_are_told_apart() {
        let routes = [
            route(
                Method::GET,
                "/zones/{zone}/custom_hostnames/fallback_origin",
                nothing,
            ),
            route(Method::GET, "/zones/{zone}/custom_hostnames/{id}", nothing),
            route(Method::POST, "/zones", nothing),
        ];
        let Ok(Found::Route(r, params)) = find(
            &routes,
            &Method::GET,
            "/zones/z1/custom_hostnames/fallback_origin",
        ) else {
            panic!("no match");
        };
        assert_eq!(r.pattern, routes[0].pattern);
        assert_eq!(params, vec![("zone", "z1".to_owned())]);
        let Ok(Found::Route(_, params)) =
            find(&routes, &Method::GET, "/zones/z1/custom_hostnames/ch1/")
        else {
            panic!("no match");
        };
        assert_eq!(params[1], ("id", "ch1".to_owned()));
        assert!(matches!(
            find(&routes, &Method::GET, "/zones"),
            Ok(Found::WrongMethod)
        ));
        assert_eq!(
            find(&routes, &Method::GET, "/zones//custom_hostnames/x")
                .err()
                .unwrap()
                .code,
            code::NO_ROUTE
        );
    }
}
