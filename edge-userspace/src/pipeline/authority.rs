//! Which host a request is for, settled once before anything reads it.
//!
//! Two parsers that disagree about the host are how one tenant's rules get skipped or another
//! tenant's origin gets reached, so the ambiguous forms are refused (400) and the one the RFCs
//! name wins: RFC 9112 §3.2 (HTTP/1.1: exactly one `Host`; an absolute-form target's authority
//! replaces it) and RFC 9113 §8.3.1 / RFC 9114 §4.3.1 (HTTP/2 and HTTP/3: a `host` that names
//! another entity than `:authority` is malformed).

use http::header::{HOST, HeaderValue};
use http::{Version, request};

use super::ErrorPage;
use crate::chain::ErrorKind;

/// Refuses the ambiguous forms and leaves the request's host in one place: the `Host` header
/// for HTTP/1.x (from the absolute-form authority when there is one), `:authority` or `host`
/// for HTTP/2 and HTTP/3 (equal when both are present).
pub fn settle(parts: &mut request::Parts) -> Result<(), ErrorPage> {
    let mut hosts = parts.headers.get_all(HOST).iter();
    let host = hosts.next().cloned();
    if hosts.next().is_some() {
        return Err(ErrorKind::TwoHosts.into());
    }
    let authority = parts.uri.authority();
    if authority.is_some_and(|a| a.as_str().contains('@')) {
        return Err(ErrorKind::UserInfo.into());
    }
    if parts.version <= Version::HTTP_11 {
        match authority {
            // RFC 9112 §3.2.2: the target's authority wins and `Host` is ignored.
            Some(authority) => {
                let value = HeaderValue::from_str(authority.as_str())
                    .expect("a parsed authority is a valid header value");
                parts.headers.insert(HOST, value);
            }
            None if host.is_none() && parts.version == Version::HTTP_11 => {
                return Err(ErrorKind::NoHost.into());
            }
            None => {}
        }
    } else if let (Some(host), Some(authority)) = (&host, authority)
        && !host
            .as_bytes()
            .eq_ignore_ascii_case(authority.as_str().as_bytes())
    {
        return Err(ErrorKind::HostMismatch.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(version: Version, uri: &str, hosts: &[&'static str]) -> request::Parts {
        let mut builder = http::Request::builder().version(version).uri(uri);
        for host in hosts {
            builder = builder.header(HOST, *host);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn http1_takes_exactly_one_host_and_absolute_form_wins() {
        let mut two = parts(Version::HTTP_11, "/", &["a.test", "b.test"]);
        assert_eq!(settle(&mut two).unwrap_err().kind.status(), 400);
        let mut none = parts(Version::HTTP_11, "/", &[]);
        assert_eq!(settle(&mut none).unwrap_err().kind.status(), 400);
        let mut absolute = parts(Version::HTTP_11, "http://b.test:8080/x", &["a.test"]);
        settle(&mut absolute).unwrap();
        assert_eq!(absolute.headers[HOST], "b.test:8080");
        let mut userinfo = parts(Version::HTTP_11, "http://u@b.test/", &["b.test"]);
        assert_eq!(settle(&mut userinfo).unwrap_err().kind.status(), 400);
        let mut plain = parts(Version::HTTP_11, "/", &["a.test"]);
        settle(&mut plain).unwrap();
        assert_eq!(plain.headers[HOST], "a.test");
    }

    #[test]
    fn http2_host_must_match_authority() {
        let mut differ = parts(Version::HTTP_2, "https://a.test/", &["b.test"]);
        assert_eq!(settle(&mut differ).unwrap_err().kind.status(), 400);
        let mut same = parts(Version::HTTP_2, "https://a.test/", &["A.test"]);
        settle(&mut same).unwrap();
        let mut host_only = parts(Version::HTTP_2, "/", &["a.test"]);
        settle(&mut host_only).unwrap();
        let mut h3 = parts(Version::HTTP_3, "https://a.test/", &["b.test"]);
        assert_eq!(settle(&mut h3).unwrap_err().kind.status(), 400);
    }
}
