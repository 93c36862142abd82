//! URL normalisation before any rule runs (Cloudflare's "normalize incoming URLs").
//!
//! A rule on `starts_with(http.request.uri.path, "/admin")` must see `/admin` for every path an
//! origin would serve as `/admin`: `/x/../admin`, `/./admin`, `/%61dmin` and, with slashes
//! merged, `//admin`. The path is normalised as RFC 3986 §6.2.2 says (percent-encodings of
//! unreserved characters decoded, the rest with upper-case hex, then §5.2.4
//! remove_dot_segments), plus the zone's `merge_slashes`. The query is left as sent.

use http::Uri;
use http::uri::PathAndQuery;

/// The request's URI normalised, or `None` when it already was.
pub fn uri(uri: &Uri, merge_slashes: bool) -> Option<Uri> {
    let pq = uri.path_and_query()?;
    let normalised = path(pq.path(), merge_slashes)?;
    let pq = match pq.query() {
        Some(query) => format!("{normalised}?{query}"),
        None => normalised,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(pq).ok()?);
    Uri::from_parts(parts).ok()
}

/// The normalised `path`, or `None` when it already is normal. Paths that do not start with
/// `/` (`*`, an authority-form target) are left alone.
pub fn path(path: &str, merge_slashes: bool) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let decoded = percent(path);
    let merged = if merge_slashes {
        merge(&decoded)
    } else {
        decoded
    };
    let normal = remove_dot_segments(&merged);
    (normal != path).then_some(normal)
}

/// RFC 3986 §2.3 unreserved characters.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes `%XX` of unreserved characters and upper-cases the hex of every other; a `%` not
/// followed by two hex digits is kept as sent.
fn percent(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| Some((hex(*bytes.get(i + 1)?)?, hex(*bytes.get(i + 2)?)?)))
            .flatten();
        match escaped {
            Some((hi, lo)) => {
                let b = hi << 4 | lo;
                if unreserved(b) {
                    out.push(char::from(b));
                } else {
                    out.push('%');
                    out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                    out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
                }
                i += 3;
            }
            None => {
                // Paths in a parsed `Uri` are ASCII.
                out.push(char::from(bytes[i]));
                i += 1;
            }
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

fn merge(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

/// RFC 3986 §5.2.4 for an absolute path: `.` segments go, `..` removes the segment before it
/// (never above the root), and a trailing `.` or `..` leaves the path ending in `/`.
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.into_iter().enumerate() {
        match segment {
            "." => {}
            ".." => {
                out.pop();
            }
            segment => out.push(segment),
        }
        if i == last && matches!(segment, "." | "..") {
            out.push("");
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        // (as sent, normalised with slashes kept, normalised with slashes merged)
        let table = [
            ("/admin", "/admin", "/admin"),
            ("/x/../admin", "/admin", "/admin"),
            ("/./admin", "/admin", "/admin"),
            ("/%61dmin", "/admin", "/admin"),
            ("//admin", "//admin", "/admin"),
            ("/a/b/c/./../../g", "/a/g", "/a/g"),
            ("/mid/content=5/../6", "/mid/6", "/mid/6"),
            ("/a/b/..", "/a/", "/a/"),
            ("/a/.", "/a/", "/a/"),
            ("/..", "/", "/"),
            ("/../../x", "/x", "/x"),
            ("/%2e%2E/admin", "/admin", "/admin"),
            ("/x/%2e%2e/admin", "/admin", "/admin"),
            ("/a%2fb", "/a%2Fb", "/a%2Fb"),
            ("/%7euser/%41%5a", "/~user/AZ", "/~user/AZ"),
            ("/100%", "/100%", "/100%"),
            ("/%zz/%4", "/%zz/%4", "/%zz/%4"),
            ("/a//b/../c", "/a//c", "/a/c"),
            ("/a///..//b", "/a///b", "/b"),
            ("/...", "/...", "/..."),
            ("/a/..b/c", "/a/..b/c", "/a/..b/c"),
            ("/", "/", "/"),
        ];
        for (sent, kept, merged) in table {
            let normal = |merge| path(sent, merge).unwrap_or_else(|| sent.to_owned());
            assert_eq!(normal(false), kept, "{sent}");
            assert_eq!(normal(true), merged, "{sent} (merged)");
        }
        assert_eq!(path("*", true), None);
    }

    #[test]
    fn the_query_is_kept_as_sent() {
        let sent: Uri = "https://a.test/x/../%61?q=/../%61".parse().unwrap();
        let normal = uri(&sent, true).unwrap();
        assert_eq!(normal, "https://a.test/a?q=/../%61");
        assert_eq!(uri(&"/a?b".parse().unwrap(), true), None);
    }
}
