//! Hostname syntax and comparison. Every name in the state is compared
//! ASCII-case-insensitively, as DNS does.

use std::net::IpAddr;

/// Cloudflare's limit for custom hostnames; applied to every name.
pub const MAX_HOSTNAME_LEN: usize = 255;

/// Whether a `*` first label is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wildcard {
    Allowed,
    Refused,
}

/// Checks `name` is a DNS hostname of at least two labels, not an IP address;
/// returns why not.
pub fn check(name: &str, wildcard: Wildcard) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_HOSTNAME_LEN {
        return Err(format!(
            "is {} characters long, at most {MAX_HOSTNAME_LEN} are allowed",
            name.len()
        ));
    }
    if is_ip_literal(name) {
        return Err(format!("`{name}` is an IP address, a hostname is required"));
    }
    if name.ends_with('.') {
        return Err(format!("`{name}` must not end with a dot"));
    }
    let count = name.split('.').count();
    if count < 2 {
        return Err(format!("`{name}` needs at least two labels"));
    }
    for (i, label) in name.split('.').enumerate() {
        if label == "*" {
            if i != 0 {
                return Err(format!("`{name}`: `*` is only allowed as the first label"));
            }
            if wildcard == Wildcard::Refused {
                return Err(format!("`{name}`: a wildcard is not allowed here"));
            }
            if count < 3 {
                return Err(format!(
                    "`{name}`: a wildcard needs at least two labels below `*`"
                ));
            }
            continue;
        }
        check_label(name, label)?;
    }
    let tld = name.rsplit('.').next().unwrap_or(name);
    if tld.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{name}`: the last label must not be numeric"));
    }
    Ok(())
}

fn check_label(name: &str, label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err(format!("`{name}` has an empty label"));
    }
    if label.len() > 63 {
        return Err(format!("`{name}` has a label longer than 63 characters"));
    }
    if let Some(c) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "`{name}` contains `{c}`; only letters, digits, `-` and `_` are allowed (IDNs as punycode)"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!("`{name}`: a label must not start or end with `-`"));
    }
    Ok(())
}

/// An IPv4 or IPv6 address, also in brackets (`[::1]`).
pub fn is_ip_literal(name: &str) -> bool {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    bare.parse::<IpAddr>().is_ok()
}

pub fn is_wildcard(name: &str) -> bool {
    name.starts_with("*.")
}

/// `name` equals `apex` or lies below it.
pub fn is_within(name: &str, apex: &str) -> bool {
    if name.len() == apex.len() {
        return name.eq_ignore_ascii_case(apex);
    }
    name.len() > apex.len()
        && name.as_bytes()[name.len() - apex.len() - 1] == b'.'
        && name[name.len() - apex.len()..].eq_ignore_ascii_case(apex)
}

/// The name with its first label removed (`a.b.c` -> `b.c`).
pub fn parent(name: &str) -> Option<&str> {
    name.split_once('.').map(|(_, rest)| rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_refuses() {
        let cases: &[(&str, Wildcard, bool)] = &[
            ("shop.example.com", Wildcard::Refused, true),
            ("Shop.Example.COM", Wildcard::Refused, true),
            ("_acme.example.com", Wildcard::Refused, true),
            ("*.example.com", Wildcard::Allowed, true),
            ("*.example.com", Wildcard::Refused, false),
            ("*.com", Wildcard::Allowed, false),
            ("a.*.example.com", Wildcard::Allowed, false),
            ("example.com.", Wildcard::Refused, false),
            ("localhost", Wildcard::Refused, false),
            ("192.0.2.1", Wildcard::Refused, false),
            ("[2001:db8::1]", Wildcard::Refused, false),
            ("2001:db8::1", Wildcard::Refused, false),
            ("a..com", Wildcard::Refused, false),
            ("-a.com", Wildcard::Refused, false),
            ("a b.com", Wildcard::Refused, false),
            ("ex.123", Wildcard::Refused, false),
            ("", Wildcard::Refused, false),
        ];
        for (name, wildcard, ok) in cases {
            assert_eq!(check(name, *wildcard).is_ok(), *ok, "{name}");
        }
        let long = format!("{}.com", vec!["a".repeat(60); 5].join("."));
        assert!(long.len() > MAX_HOSTNAME_LEN);
        assert!(
            check(&long, Wildcard::Refused)
                .unwrap_err()
                .contains("at most 255")
        );
    }

    #[test]
    fn within() {
        assert!(is_within("example.com", "EXAMPLE.com"));
        assert!(is_within("a.example.com", "example.com"));
        assert!(!is_within("aexample.com", "example.com"));
        assert!(!is_within("com", "example.com"));
    }
}
