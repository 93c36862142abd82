//! Questions to the configured DNS resolver. Every answer is fetched fresh:
//! the resolver's own cache is off so that a customer who just fixed their DNS
//! and asks for a refresh is answered from DNS, not from a stale entry here.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};

use super::{Provider, VerifyError};
use crate::state::CnameCheck;

/// Longer CNAME chains are treated as loops, as for the edge's own zones.
const MAX_HOPS: usize = 16;

/// A resolver asking one DNS server over UDP, and over TCP when an answer
/// does not fit a datagram.
pub struct Dns {
    resolver: TokioResolver,
}

/// What a name holds instead of the record asked for.
enum Missing {
    /// NXDOMAIN: the name does not exist.
    Name,
    /// The name exists without records of the asked type.
    Records,
}

impl Dns {
    pub fn new(server: SocketAddr, timeout: Duration) -> Result<Dns, VerifyError> {
        let connection = |mut c: ConnectionConfig| {
            c.port = server.port();
            c
        };
        let name_server = NameServerConfig::new(
            server.ip(),
            true,
            vec![
                connection(ConnectionConfig::udp()),
                connection(ConnectionConfig::tcp()),
            ],
        );
        let mut options = ResolverOpts::default();
        options.timeout = timeout;
        options.cache_size = 0;
        options.positive_max_ttl = Some(Duration::ZERO);
        options.negative_max_ttl = Some(Duration::ZERO);
        options.use_hosts_file = ResolveHosts::Never;
        let config = ResolverConfig::from_parts(None, Vec::new(), vec![name_server]);
        let resolver = Resolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(options)
            .build()
            .map_err(|e| VerifyError::Config(format!("resolver {server}: {e}")))?;
        Ok(Dns { resolver })
    }

    /// The real-time CNAME check: follows `hostname`'s CNAME chain one hop
    /// at a time (so a recursive and an authoritative server answer alike)
    /// until it reaches the provider's CNAME target or zone, or ends.
    pub async fn cname_check(
        &self,
        hostname: &str,
        provider: &Provider,
    ) -> Result<CnameCheck, VerifyError> {
        let mut name = hostname.to_ascii_lowercase();
        let mut hops: Vec<String> = Vec::new();
        for _ in 0..MAX_HOPS {
            if provider.contains(&name) {
                return Ok(CnameCheck::Provider);
            }
            let end = match self.cname(&name).await? {
                Ok(next) => {
                    hops.push(next.clone());
                    name = next;
                    continue;
                }
                Err(missing) => missing,
            };
            let addresses = match end {
                Missing::Name => Vec::new(),
                Missing::Records => self.addresses(&name).await?,
            };
            let listed = addresses
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            if hops.is_empty() {
                return Ok(match addresses.is_empty() {
                    true => CnameCheck::NoRecord,
                    false => CnameCheck::Elsewhere { at: listed },
                });
            }
            let chain = hops.join(" → ");
            let at = match (end, addresses.is_empty()) {
                (Missing::Name, _) => format!("{chain}, which does not exist"),
                (Missing::Records, true) => format!("{chain}, which has no address"),
                (Missing::Records, false) => format!("{chain} ({listed})"),
            };
            return Ok(CnameCheck::Elsewhere { at });
        }
        Ok(CnameCheck::Elsewhere {
            at: format!("a CNAME chain longer than {MAX_HOPS} hops at {name}"),
        })
    }

    /// The TXT values at `name`, each record's strings joined as RFC 7208
    /// joins long values; empty when there are none.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, VerifyError> {
        let lookup = match self.lookup(name, RecordType::TXT).await? {
            Ok(lookup) => lookup,
            Err(_) => return Ok(Vec::new()),
        };
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s))
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect())
    }

    /// `name`'s IPv4 and IPv6 addresses; empty when it has none.
    pub async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, VerifyError> {
        let mut addresses = Vec::new();
        for record_type in [RecordType::A, RecordType::AAAA] {
            if let Ok(lookup) = self.lookup(name, record_type).await? {
                addresses.extend(lookup.answers().iter().filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                    _ => None,
                }));
            }
        }
        Ok(addresses)
    }

    /// The CNAME target of `name` (lower case, without the final dot).
    async fn cname(&self, name: &str) -> Result<Result<String, Missing>, VerifyError> {
        let lookup = match self.lookup(name, RecordType::CNAME).await? {
            Ok(lookup) => lookup,
            Err(missing) => return Ok(Err(missing)),
        };
        // Only the record of `name` itself: a resolver may add the rest of the chain.
        let target = lookup.answers().iter().find_map(|r| match &r.data {
            RData::CNAME(cname) if fqdn_to_host(&r.name.to_ascii()).eq_ignore_ascii_case(name) => {
                Some(fqdn_to_host(&cname.0.to_ascii()))
            }
            _ => None,
        });
        Ok(target.ok_or(Missing::Records))
    }

    async fn lookup(
        &self,
        name: &str,
        record_type: RecordType,
    ) -> Result<Result<hickory_resolver::lookup::Lookup, Missing>, VerifyError> {
        // Fully qualified, so no search domain is ever appended.
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match self.resolver.lookup(fqdn.as_str(), record_type).await {
            Ok(lookup) => Ok(Ok(lookup)),
            Err(e) if e.is_nx_domain() => Ok(Err(Missing::Name)),
            Err(e) if e.is_no_records_found() => Ok(Err(Missing::Records)),
            Err(e) => Err(dns_error(name, record_type, e)),
        }
    }
}

fn dns_error(name: &str, record_type: RecordType, error: NetError) -> VerifyError {
    VerifyError::Dns {
        name: format!("{name} {record_type}"),
        reason: error.to_string(),
    }
}

fn fqdn_to_host(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}
