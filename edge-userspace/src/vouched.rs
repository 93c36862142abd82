//! The one list of headers the edge vouches for to origins.
//!
//! Everything that protects them reads this list and nothing else: the pipeline drops a
//! client's copy on arrival (in the head and in trailers), and rule compilation refuses any
//! rule that sets, adds or removes one, so no tenant's stage can forge or erase what another
//! account's origin trusts. The README's table of vouched-for headers is this list in prose.

use std::sync::LazyLock;

use http::header::HeaderName;

/// What happens to a client's copy of a vouched-for header when the request arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCopy {
    /// Dropped; the edge sets its own value (or none).
    Dropped,
    /// Kept and appended to, as every proxy in a row does (`x-forwarded-for`, `cdn-loop`):
    /// the edge vouches only for the entry it adds last.
    Appended,
}

/// A header the edge vouches for.
#[derive(Debug)]
pub struct Vouched {
    pub name: HeaderName,
    pub client_copy: ClientCopy,
}

const fn dropped(name: &'static str) -> Vouched {
    Vouched {
        name: HeaderName::from_static(name),
        client_copy: ClientCopy::Dropped,
    }
}

pub const CF_CONNECTING_O2O: HeaderName = HeaderName::from_static("cf-connecting-o2o");
pub const CF_CONNECTING_IP: HeaderName = HeaderName::from_static("cf-connecting-ip");
pub const CF_RAY: HeaderName = HeaderName::from_static("cf-ray");
pub const CF_VISITOR: HeaderName = HeaderName::from_static("cf-visitor");
pub const CDN_LOOP: HeaderName = HeaderName::from_static("cdn-loop");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Every header the edge vouches for. Rules may touch none of them.
pub static VOUCHED: [Vouched; 13] = [
    dropped("cf-connecting-o2o"),
    dropped("cf-connecting-ip"),
    dropped("cf-connecting-ipv6"),
    dropped("cf-pseudo-ipv4"),
    dropped("cf-ipcountry"),
    dropped("cf-ray"),
    dropped("cf-visitor"),
    dropped("cf-ew-via"),
    dropped("cf-worker"),
    dropped("true-client-ip"),
    dropped("x-forwarded-proto"),
    Vouched {
        name: X_FORWARDED_FOR,
        client_copy: ClientCopy::Appended,
    },
    Vouched {
        name: CDN_LOOP,
        client_copy: ClientCopy::Appended,
    },
];

/// The lengths of the names on the list, one bit each: checked on every header of every
/// request, and most names are ruled out by their length alone.
static LENGTHS: LazyLock<u64> = LazyLock::new(|| {
    VOUCHED
        .iter()
        .map(|v| v.name.as_str().len())
        .inspect(|&len| assert!(len < 64, "a vouched-for name fits the length mask"))
        .fold(0, |mask, len| mask | 1 << len)
});

/// The entry for `name`, if the edge vouches for it.
pub fn lookup(name: &HeaderName) -> Option<&'static Vouched> {
    let len = name.as_str().len();
    if len >= 64 || *LENGTHS & (1 << len) == 0 {
        return None;
    }
    VOUCHED.iter().find(|v| v.name == name)
}

/// `true` when a client's copy of `name` is dropped on arrival.
pub fn dropped_on_arrival(name: &HeaderName) -> bool {
    lookup(name).is_some_and(|v| v.client_copy == ClientCopy::Dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_named_constants_are_on_the_list() {
        for name in [
            CF_CONNECTING_O2O,
            CF_CONNECTING_IP,
            CF_RAY,
            CF_VISITOR,
            CDN_LOOP,
            X_FORWARDED_FOR,
            X_FORWARDED_PROTO,
        ] {
            assert!(lookup(&name).is_some(), "{name}");
        }
    }

    #[test]
    fn every_name_is_found_and_others_are_not() {
        for vouched in &VOUCHED {
            assert!(lookup(&vouched.name).is_some(), "{}", vouched.name);
        }
        for other in ["host", "cf-connecting-o2", "x-forwarded-host", "accept"] {
            assert!(lookup(&HeaderName::from_static(other)).is_none(), "{other}");
        }
    }

    #[test]
    fn names_are_unique() {
        for (i, a) in VOUCHED.iter().enumerate() {
            assert!(
                VOUCHED[i + 1..].iter().all(|b| b.name != a.name),
                "{}",
                a.name
            );
        }
    }
}
