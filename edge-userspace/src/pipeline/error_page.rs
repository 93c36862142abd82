//! Error answers in Cloudflare's shape: "Error 1016 · Origin DNS error" as a small HTML page,
//! or the same fields as JSON for API clients, so people can search the code they see. What
//! each error says is the table in `chain::error`; this is the one place that renders it.

use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::Body;
use crate::chain::{EdgeError, ErrorKind};

/// An error the edge answers itself: a row of the one table ([`ErrorKind::answer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorPage {
    pub kind: ErrorKind,
}

impl ErrorPage {
    pub fn new(kind: ErrorKind) -> Self {
        Self { kind }
    }

    /// The page for `error`, whose detail names zones, accounts and hostnames: it goes to the
    /// log (and the owner's trace through the control API), never to an anonymous visitor.
    pub fn edge(error: &EdgeError) -> Self {
        tracing::info!(code = error.code(), detail = error.detail(), "edge error");
        Self::new(error.kind())
    }

    /// Renders the page for a request with headers `request`; JSON when the client's `Accept`
    /// prefers `application/json`.
    pub fn render(&self, request: &HeaderMap, ray: &str) -> Response<Body> {
        let answer = self.kind.answer();
        let (status, code, title, text) = (answer.status, answer.code, answer.title, answer.text);
        let (content_type, body) = if prefers_json(request) {
            let body = serde_json::json!({
                "success": false,
                "errors": [{ "code": code, "message": title, "detail": text }],
                "status": status.as_u16(),
                "ray_id": ray,
            });
            ("application/json", body.to_string())
        } else {
            (
                "text/html; charset=utf-8",
                html(status, code, title, text, ray),
            )
        };
        let mut response = Response::new(
            Full::new(Bytes::from(body))
                .map_err(|e| match e {})
                .boxed_unsync(),
        );
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

impl From<ErrorKind> for ErrorPage {
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind)
    }
}

fn html(status: StatusCode, code: u16, title: &str, detail: &str, ray: &str) -> String {
    let (title, detail, ray) = (escape(title), escape(detail), escape(ray));
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Error {code} · {title}</title></head>\n<body>\
         <h1>Error {code}</h1><h2>{title}</h2><p>{detail}</p>\
         <p>HTTP {status} · Ray ID: <code>{ray}</code></p></body></html>\n",
        status = status.as_u16()
    )
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `true` when `application/json` has a higher quality than `text/html` in `Accept`.
/// Exact types beat `type/*` and `*/*` at equal quality, as RFC 9110 ranks specificity.
fn prefers_json(request: &HeaderMap) -> bool {
    let (mut json, mut html) = ((0u16, 0u8), (0u16, 0u8));
    for value in request.get_all(ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            let mut params = range.split(';');
            let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = params
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let q = (q.clamp(0.0, 1.0) * 1000.0) as u16;
            let (json_rank, html_rank) = match media.as_str() {
                "application/json" => (3, 0),
                "text/html" => (0, 3),
                "application/*" => (2, 0),
                "text/*" => (0, 2),
                "*/*" => (1, 1),
                _ => (0, 0),
            };
            if json_rank > 0 && (json_rank > json.1) {
                json = (q, json_rank);
            }
            if html_rank > 0 && (html_rank > html.1) {
                html = (q, html_rank);
            }
        }
    }
    json.0 > html.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn json_only_when_preferred() {
        assert!(prefers_json(&accept("application/json")));
        assert!(prefers_json(&accept("text/html;q=0.5, application/json")));
        assert!(!prefers_json(&accept("text/html, application/json;q=0.9")));
        assert!(!prefers_json(&accept("*/*")));
        assert!(!prefers_json(&HeaderMap::new()));
        assert!(prefers_json(&accept("application/json, */*;q=0.1")));
        assert!(!prefers_json(&accept("application/json;q=0")));
    }

    #[tokio::test]
    async fn json_page_is_the_tables_row() {
        let page = ErrorPage::new(ErrorKind::Loop).render(&accept("application/json"), "r-X");
        assert_eq!(page.status(), 508);
        assert_eq!(page.headers()[CACHE_CONTROL], "no-store");
        let body = page.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let answer = ErrorKind::Loop.answer();
        assert_eq!(
            json,
            serde_json::json!({
                "success": false,
                "errors": [{"code": 1019, "message": answer.title, "detail": answer.text}],
                "status": 508,
                "ray_id": "r-X",
            })
        );
    }

    #[test]
    fn html_is_escaped() {
        let page = html(StatusCode::BAD_GATEWAY, 502, "<b>", "a & b", "r");
        assert!(page.contains("&lt;b&gt;") && page.contains("a &amp; b"));
        assert!(!page.contains("<b>"));
    }
}
