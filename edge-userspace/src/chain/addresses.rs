//! The edge's own addresses for origin names: an origin named by one of the edge's zones is
//! reached where that zone's A/AAAA records say, whatever public DNS answers. Built from the
//! state beside the snapshot, like the chains whose origins it resolves.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::state::{RecordType, State};

/// The addresses of this edge's own A/AAAA records, by lower-case name (wildcards as
/// `*.suffix`), CNAMEs between its own records followed: an origin named by one of the
/// edge's zones is reached where that zone says, whatever public DNS answers.
#[derive(Debug, Default)]
pub struct OwnAddresses(HashMap<String, Vec<IpAddr>>);

/// CNAME hops followed between the edge's own records.
const MAX_CNAME_HOPS: usize = 8;

impl OwnAddresses {
    pub fn build(state: &State) -> Self {
        let records = || state.zones().iter().flat_map(|zone| &zone.dns_records);
        let mut by_name: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for record in records() {
            if matches!(record.record_type, RecordType::A | RecordType::Aaaa)
                && let Ok(ip) = record.content.parse()
            {
                by_name
                    .entry(record.name.to_ascii_lowercase())
                    .or_default()
                    .push(ip);
            }
        }
        let cnames: HashMap<String, String> = records()
            .filter(|record| record.record_type == RecordType::Cname)
            .map(|record| {
                (
                    record.name.to_ascii_lowercase(),
                    record.content.trim_end_matches('.').to_ascii_lowercase(),
                )
            })
            .collect();
        let mut own = OwnAddresses(by_name);
        let aliases: Vec<(String, Vec<IpAddr>)> = cnames
            .keys()
            .filter_map(|name| {
                let mut target = &cnames[name];
                for _ in 0..MAX_CNAME_HOPS {
                    if let Some(ips) = own.lookup(target) {
                        return Some((name.clone(), ips.to_vec()));
                    }
                    target = cnames.get(target)?;
                }
                None
            })
            .collect();
        own.0.extend(aliases);
        own
    }

    /// The addresses of `name` (any case, trailing dot or not): exact, then the wildcard
    /// one label up.
    pub fn lookup(&self, name: &str) -> Option<&[IpAddr]> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let exact = self.0.get(&name);
        let wildcard = || {
            let (_, parent) = name.split_once('.')?;
            self.0.get(&format!("*.{parent}"))
        };
        exact.or_else(wildcard).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn own(records: serde_json::Value) -> OwnAddresses {
        let state: State = serde_json::from_value(json!({
            "accounts": [{"id": "a", "name": "A"}],
            "zones": [{"zone": {"id": "z", "name": "example.com", "account": {"id": "a"}},
                       "dns_records": records}]
        }))
        .unwrap();
        OwnAddresses::build(&state)
    }

    fn record(id: usize, kind: &str, name: &str, content: &str) -> serde_json::Value {
        json!({"id": format!("r{id}"), "type": kind, "name": name, "content": content, "proxied": true})
    }

    #[test]
    fn records_wildcards_and_cnames_between_them() {
        let own = own(json!([
            record(1, "A", "origin.example.com", "192.0.2.1"),
            record(2, "AAAA", "origin.example.com", "2001:db8::1"),
            record(3, "A", "*.pool.example.com", "192.0.2.2"),
            record(4, "CNAME", "alias.example.com", "Origin.example.com."),
            record(5, "CNAME", "away.example.com", "elsewhere.example.net"),
        ]));
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(own.lookup("ORIGIN.example.com."), Some(&[v4, v6][..]));
        assert_eq!(own.lookup("alias.example.com"), Some(&[v4, v6][..]));
        assert_eq!(
            own.lookup("a.pool.example.com"),
            Some(&["192.0.2.2".parse().unwrap()][..])
        );
        assert_eq!(own.lookup("a.b.pool.example.com"), None, "one label");
        assert_eq!(own.lookup("away.example.com"), None, "not the edge's");
    }

    /// CNAMEs are followed at most [`MAX_CNAME_HOPS`] deep; a chain ten times as long and a
    /// loop end there.
    #[test]
    fn cname_chains_are_followed_a_bounded_depth() {
        let long = 10 * MAX_CNAME_HOPS;
        let mut records = vec![record(0, "A", "n0.example.com", "192.0.2.9")];
        for i in 1..=long {
            let (name, target) = (
                format!("n{i}.example.com"),
                format!("n{}.example.com", i - 1),
            );
            records.push(record(i, "CNAME", &name, &target));
        }
        records.push(record(
            long + 1,
            "CNAME",
            "loop-a.example.com",
            "loop-b.example.com",
        ));
        records.push(record(
            long + 2,
            "CNAME",
            "loop-b.example.com",
            "loop-a.example.com",
        ));
        let own = own(json!(records));
        assert!(
            own.lookup(&format!("n{MAX_CNAME_HOPS}.example.com"))
                .is_some()
        );
        assert!(
            own.lookup(&format!("n{}.example.com", MAX_CNAME_HOPS + 1))
                .is_none()
        );
        assert!(own.lookup(&format!("n{long}.example.com")).is_none());
        assert!(own.lookup("loop-a.example.com").is_none());
    }
}
