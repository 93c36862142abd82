//! The routing step of the pipeline: which chain a request belongs to, what
//! its zones' rules do to it, and which origin it then goes to.
//!
//! [`Routing`] is everything that step reads, built whole from a validated
//! [`State`] and swapped atomically, so that a request sees one consistent
//! version of the zones, their compiled rules and the chains between them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{ALT_SVC, HOST, HeaderValue};
use http::{Response, request, response};
use http_body_util::{BodyExt, Full};

use crate::chain::{
    Affected, Chain, EdgeError, ErrorKind, HostHeader, OriginSni, OriginTls, OwnAddresses, Snapshot,
};
use crate::downstream::{ConnInfo, h3};
use crate::metrics::{ChainCache, Metrics};
use crate::pipeline::{ErrorPage, Reply, Route, Routed, Router, normalize};
use crate::rules::{ClientInfo, CompiledRule, Field, Phase, RawRequest, ZoneRules};
use crate::stages::{self, RequestOutcome, RouteOverride, Stage};
use crate::state::{OriginUrl, State, UrlNormalization, ZoneState};
use crate::upstream;

/// The compiled, indexed form of a [`State`].
pub struct Routing {
    snapshot: Snapshot,
    /// By zone id; shared with the previous routing where a zone's rules and
    /// settings did not change.
    zones: HashMap<Arc<str>, Arc<CompiledZone>>,
    addresses: Arc<OwnAddresses>,
}

/// What a stage needs of its zone on every request.
struct CompiledZone {
    rules: ZoneRules,
    /// What the zone's response rules need of the request they answer.
    response_rules: ResponseRules,
    /// Bytes; from the zone's `max_upload`.
    max_request_body: Option<u64>,
    /// The zone's `http3` setting: advertise HTTP/3 on TCP responses.
    http3: bool,
    url_normalization: UrlNormalization,
}

impl CompiledZone {
    fn new(zone: &ZoneState) -> Result<CompiledZone> {
        let rules = ZoneRules::compile(&zone.zone.rulesets)
            .with_context(|| format!("zone {} ({}): rulesets", zone.zone.name, zone.zone.id))?;
        Ok(CompiledZone {
            response_rules: ResponseRules::of(&rules),
            rules,
            max_request_body: zone
                .zone
                .settings
                .max_upload
                .map(|mb| u64::from(mb.get()) << 20),
            http3: zone.zone.settings.http3.is_on(),
            url_normalization: zone.zone.settings.url_normalization,
        })
    }
}

/// What a zone's or a chain's response rules need, from least to most: the request's
/// head is copied past the request phases only for rules that read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ResponseRules {
    None,
    /// Rules that read only the response (e.g. an unconditional header rewrite).
    ResponseOnly,
    /// Rules some expression of which reads a request field.
    ReadRequest,
}

impl ResponseRules {
    fn of(rules: &ZoneRules) -> Self {
        let response = rules.rules(Phase::HttpResponseHeadersTransform);
        let reads_request = response
            .iter()
            .flat_map(CompiledRule::expressions)
            .any(|e| Field::ALL.iter().any(|f| !f.is_response() && e.reads(*f)));
        if reads_request {
            ResponseRules::ReadRequest
        } else if response.is_empty() {
            ResponseRules::None
        } else {
            ResponseRules::ResponseOnly
        }
    }
}

impl Routing {
    /// Validates `state` and compiles every zone's rules; on error nothing is
    /// built. With `previous`, unchanged chains keep their ids (the XDP route
    /// map stores them) and zones whose rules and settings are unchanged keep
    /// their compiled rules.
    pub fn build(state: &State, previous: Option<&Routing>) -> Result<Routing> {
        state.validate()?;
        let mut zones = HashMap::with_capacity(state.zones().len());
        for zone in state.zones() {
            let id: Arc<str> = Arc::from(zone.zone.id.as_str());
            let unchanged = previous.and_then(|previous| {
                let compiled = previous.zones.get(&id)?;
                (**previous.snapshot.zone(&id)? == zone.zone).then(|| compiled.clone())
            });
            let compiled = match unchanged {
                Some(compiled) => compiled,
                None => Arc::new(CompiledZone::new(zone)?),
            };
            zones.insert(id, compiled);
        }
        let snapshot = match previous {
            Some(previous) => previous.snapshot.rebuild(state),
            None => Snapshot::build(state),
        };
        Ok(Routing {
            snapshot,
            zones,
            addresses: Arc::new(OwnAddresses::build(state)),
        })
    }

    /// The routing of `state`, which a narrow write (`affected`, see
    /// [`crate::chain::affected`]) made from `self`'s state: the snapshot is
    /// derived name by name, only the zones whose rulesets changed are
    /// compiled again. `state` is valid (the write validated it).
    pub fn update(&self, state: &State, affected: &Affected) -> Result<Routing> {
        let mut zones = self.zones.clone();
        for id in &affected.rulesets {
            let zone = state
                .zone(id)
                .with_context(|| format!("zone {id} is not in the state"))?;
            zones.insert(Arc::from(id.as_str()), Arc::new(CompiledZone::new(zone)?));
        }
        let rulesets: Vec<&str> = affected.rulesets.iter().map(String::as_str).collect();
        let addresses = if affected.records {
            Arc::new(OwnAddresses::build(state))
        } else {
            self.addresses.clone()
        };
        Ok(Routing {
            snapshot: self.snapshot.update(state, &affected.names, &rulesets),
            zones,
            addresses,
        })
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The chain's stages with their compiled rules, customer first.
    pub fn stages<'a>(&'a self, chain: &'a Chain) -> ChainStages<'a> {
        let stage = |i: usize| {
            let stage = &chain.stages[i];
            (&*stage.zone_name, &self.zone(&stage.zone_id).rules)
        };
        let len = chain.stages.len();
        assert!(
            (1..=2).contains(&len),
            "a chain has one or two stages, not {len}"
        );
        ChainStages {
            stages: [stage(0), stage(len - 1)],
            len,
        }
    }

    /// What the response rules of the chain's zones need of the request.
    fn response_rules(&self, chain: &Chain) -> ResponseRules {
        chain
            .stages
            .iter()
            .map(|stage| self.zone(&stage.zone_id).response_rules)
            .max()
            .unwrap_or(ResponseRules::None)
    }

    /// The strictest body limit of the chain's zones.
    fn max_request_body(&self, chain: &Chain) -> Option<u64> {
        chain
            .stages
            .iter()
            .filter_map(|stage| self.zone(&stage.zone_id).max_request_body)
            .min()
    }

    /// HTTP/3 is advertised only when every zone of the chain allows it.
    fn http3(&self, chain: &Chain) -> bool {
        chain
            .stages
            .iter()
            .all(|stage| self.zone(&stage.zone_id).http3)
    }

    /// The chain's URL normalisation: slashes merged when any zone merges them, the URL as
    /// sent to the origin only when every zone asks for it (a customer's path rules then
    /// cannot be walked around at the provider's origin unless both zones agree).
    pub fn url_normalization(&self, chain: &Chain) -> UrlNormalization {
        let zones = || {
            chain
                .stages
                .iter()
                .map(|s| self.zone(&s.zone_id).url_normalization)
        };
        UrlNormalization {
            merge_slashes: zones().any(|u| u.merge_slashes),
            origin: if zones().all(|u| u.origin == OriginUrl::AsSent) {
                OriginUrl::AsSent
            } else {
                OriginUrl::Normalized
            },
        }
    }

    fn zone(&self, id: &str) -> &CompiledZone {
        self.zones
            .get(id)
            .expect("every chain stage is a zone of the same state")
    }
}

/// A chain's stages, customer first: one or two, kept in place rather than in a `Vec` because
/// every request (and every response with rules) lists them.
pub struct ChainStages<'a> {
    stages: [Stage<'a>; 2],
    len: usize,
}

impl<'a> std::ops::Deref for ChainStages<'a> {
    type Target = [Stage<'a>];

    fn deref(&self) -> &[Stage<'a>] {
        &self.stages[..self.len]
    }
}

/// Origin names resolved through the live state's records (see [`OwnAddresses`]).
pub struct OwnRecords(pub Arc<ArcSwap<Routing>>);

impl upstream::LocalNames for OwnRecords {
    fn lookup(&self, name: &str) -> Option<Vec<IpAddr>> {
        self.0.load().addresses.lookup(name).map(<[IpAddr]>::to_vec)
    }
}

/// [`Router`] over the live [`Routing`].
pub struct ChainRouter {
    routing: Arc<ArcSwap<Routing>>,
    /// The edge's own listeners: an origin there would loop (error 1000).
    listeners: Vec<SocketAddr>,
    metrics: Option<ChainCache<Routing>>,
    /// `Alt-Svc` value for TCP responses when HTTP/3 is served.
    alt_svc: Option<HeaderValue>,
}

impl ChainRouter {
    pub fn new(routing: Arc<ArcSwap<Routing>>, listeners: Vec<SocketAddr>) -> Self {
        ChainRouter {
            routing,
            listeners,
            metrics: None,
            alt_svc: None,
        }
    }

    /// Returns every routed request's chain metrics with the route.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(ChainCache::new(metrics));
        self
    }

    /// Advertises HTTP/3 on UDP `port` in responses over TCP, for chains whose zones allow it.
    pub fn with_alt_svc(mut self, port: u16) -> Self {
        let value = format!("h3=\":{port}\"; ma=86400");
        self.alt_svc = Some(HeaderValue::from_str(&value).expect("an ASCII header value"));
        self
    }
}

/// What the response phases need of the request they answer.
pub struct Pending {
    routing: Arc<Routing>,
    chain: Arc<Chain>,
    response_rules: ResponseRules,
    /// The request head as the last stage left it, and the client's original; kept only
    /// when a response rule of the chain reads the request.
    request: Option<Box<(request::Parts, RawRequest)>>,
}

impl Router for ChainRouter {
    type State = Pending;

    fn route(&self, conn: &ConnInfo, req: &mut request::Parts) -> Routed<Pending> {
        let routing = self.routing.load_full();
        let Some(host) = request_host(req) else {
            return Routed::from(Err(edge_error(&EdgeError::new(
                ErrorKind::DirectIp,
                "The request names no host, so no zone can be chosen for it.",
            ))));
        };
        // The one reference-count write per request, on the chain's line that the stages
        // below read.
        let chain = match resolve(&routing, conn, &host) {
            Ok(chain) => chain.clone(),
            Err(reply) => return Routed::from(Err(reply)),
        };
        let metrics = self
            .metrics
            .as_ref()
            .map(|cache| cache.get(&routing, &chain));
        Routed {
            metrics,
            outcome: self.run_stages(routing, chain, &host, conn, req),
        }
    }

    fn on_response(&self, pending: Pending, conn: &ConnInfo, resp: &mut response::Parts) {
        if let Some(alt_svc) = &self.alt_svc
            && !is_http3(conn)
            && pending.routing.http3(&pending.chain)
        {
            resp.headers.insert(ALT_SVC, alt_svc.clone());
        }
        let empty;
        let (req, raw) = match (pending.response_rules, &pending.request) {
            (ResponseRules::None, _) => return,
            (_, Some(request)) => (&request.0, &request.1),
            // Rules that read nothing of the request run against an empty one.
            (_, None) => {
                empty = empty_request();
                (&empty.0, &empty.1)
            }
        };
        let stages = pending.routing.stages(&pending.chain);
        let client = client_info(conn, &pending.chain);
        stages::run_response(&stages, req, &client, raw, resp, None);
    }
}

impl ChainRouter {
    /// The chain's request stages on `req`, then its origin: where the request goes, or the
    /// answer a rule or the origin check gave instead.
    fn run_stages(
        &self,
        routing: Arc<Routing>,
        chain: Arc<Chain>,
        host: &str,
        conn: &ConnInfo,
        req: &mut request::Parts,
    ) -> Result<(Route, Pending), Reply> {
        let stages = routing.stages(&chain);
        let client = client_info(conn, &chain);
        // The raw fields keep the URL as sent; every rule reads the normalised one.
        let raw = stages::capture_raw(&stages, req);
        let url = routing.url_normalization(&chain);
        let normalised = normalize::uri(&req.uri, url.merge_slashes);
        if let Some(uri) = &normalised {
            req.uri = uri.clone();
        }
        // Rules may set `Host`; the host is parsed again only if one did.
        let visitor_host_header = req.headers.get(HOST).cloned();
        let overrides = match stages::run_request(&stages, chain.o2o, req, &client, &raw, None) {
            RequestOutcome::Continue(overrides) => overrides,
            RequestOutcome::Respond { response, .. } => {
                return Err(Reply::Response(Box::new(rule_response(
                    response.into_response(),
                ))));
            }
        };
        // Unless a rule rewrote it, the origin gets the URL as sent when the chain says so.
        if url.origin == OriginUrl::AsSent && normalised.is_some_and(|uri| uri == req.uri) {
            req.uri = raw.uri.clone();
        }
        let request_host = if req.headers.get(HOST) == visitor_host_header.as_ref() {
            None
        } else {
            request_host(req)
        };
        let (origin, host_header) =
            self.origin(&chain, host, request_host.as_deref(), overrides)?;
        // Counted once the rules have let the request through, until its response body ends.
        let admitted = chain.admission.enter().map_err(|_| {
            edge_error(&EdgeError::new(
                ErrorKind::ChainAtCapacity,
                "The chain's max_concurrent_requests are all in progress.",
            ))
        })?;
        let route = Route {
            origin,
            host_header,
            max_request_body: routing.max_request_body(&chain),
            admitted: admitted.map(Arc::new),
        };
        let response_rules = routing.response_rules(&chain);
        let request =
            (response_rules == ResponseRules::ReadRequest).then(|| Box::new((req.clone(), raw)));
        Ok((
            route,
            Pending {
                routing,
                chain,
                response_rules,
                request,
            },
        ))
    }

    /// The chain's origin and the `Host` it receives, origin rules applied; `request_host`
    /// when a rule changed the request's host, else the visitor's stands.
    fn origin(
        &self,
        chain: &Chain,
        visitor_host: &str,
        request_host: Option<&str>,
        overrides: RouteOverride,
    ) -> Result<(upstream::Origin, HeaderValue), Reply> {
        let origin = &chain.origin;
        let host = overrides
            .origin_host
            .unwrap_or_else(|| origin.host.to_string());
        let port = overrides
            .origin_port
            .unwrap_or_else(|| origin.port_or_default());
        if self.is_own_listener(&host, port) {
            return Err(edge_error(&EdgeError::origin_is_edge(&format!(
                "{host}:{port}"
            ))));
        }
        let request_host = request_host.unwrap_or(visitor_host);
        let tls = match origin.tls {
            OriginTls::Plain => None,
            verified @ (OriginTls::Unverified | OriginTls::Verified) => Some(upstream::OriginTls {
                sni: overrides.sni.unwrap_or_else(|| match &origin.sni {
                    OriginSni::RequestHost => request_host.to_owned(),
                    OriginSni::Name(name) => name.to_string(),
                }),
                verify: verified == OriginTls::Verified,
            }),
        };
        let host_header = match overrides.host_header {
            Some(value) => value,
            None => {
                let name = match origin.host_header {
                    HostHeader::Request => request_host,
                    HostHeader::CustomHostname => visitor_host,
                };
                HeaderValue::from_str(name).expect("host names are valid header values")
            }
        };
        Ok((upstream::Origin { host, port, tls }, host_header))
    }

    fn is_own_listener(&self, host: &str, port: u16) -> bool {
        host.parse()
            .is_ok_and(|ip| self.listeners.contains(&SocketAddr::new(ip, port)))
    }
}

/// The request response rules that read nothing of it are given.
fn empty_request() -> (request::Parts, RawRequest) {
    let (head, ()) = http::Request::new(()).into_parts();
    let raw = RawRequest::capture(&head, false);
    (head, raw)
}

fn is_http3(conn: &ConnInfo) -> bool {
    conn.tls
        .as_ref()
        .and_then(|tls| tls.alpn.as_deref())
        .is_some_and(|alpn| alpn == h3::ALPN)
}

/// What rules may read about the client and the hostname beyond the request head.
fn client_info<'a>(conn: &ConnInfo, chain: &'a Chain) -> ClientInfo<'a> {
    ClientInfo {
        ip: conn.peer.ip(),
        tls: conn.tls.is_some(),
        metadata: chain
            .custom_hostname
            .as_ref()
            .and_then(|h| h.metadata.as_deref()),
    }
}

/// The chain of the SNI (the connection's) and of the `Host` must agree:
/// otherwise one tenant's TLS session could front for another's zone. The
/// chain the connection was classified into at accept stands for the SNI's
/// while its snapshot is the live one (so most requests resolve nothing);
/// after a reload the SNI is resolved again.
fn resolve<'a>(
    routing: &'a Routing,
    conn: &'a ConnInfo,
    host: &str,
) -> Result<&'a Arc<Chain>, Reply> {
    let classified = conn.chain().filter(|chain| {
        routing
            .snapshot
            .chain(chain.id)
            .is_some_and(|live| Arc::ptr_eq(live, chain))
    });
    let Some(sni) = conn.sni().filter(|sni| !sni.eq_ignore_ascii_case(host)) else {
        return match classified {
            Some(chain) => Ok(chain),
            None => routing.snapshot.resolve(host).map_err(|e| edge_error(&e)),
        };
    };
    let by_sni = match classified {
        Some(chain) => Ok(chain),
        None => routing.snapshot.resolve(sni),
    };
    match (by_sni, routing.snapshot.resolve(host)) {
        (Ok(a), Ok(b)) if a.id == b.id => Ok(b),
        (Err(e), _) => Err(edge_error(&e)),
        _ => Err(edge_error(&EdgeError::fronting(sni, host))),
    }
}

/// The request's host without port: `Host` (HTTP/1.1) or `:authority` (HTTP/2).
fn request_host(req: &request::Parts) -> Option<String> {
    let authority = match req.headers.get(HOST) {
        Some(value) => value.to_str().ok()?,
        None => req.uri.authority()?.as_str(),
    };
    let authority: http::uri::Authority = authority.parse().ok()?;
    let host = authority.host();
    (!host.is_empty()).then(|| host.trim_end_matches('.').to_ascii_lowercase())
}

/// The public page says what Cloudflare's says (see [`ErrorPage::edge`]).
fn edge_error(error: &EdgeError) -> Reply {
    Reply::Error(ErrorPage::edge(error))
}

/// A rule's own answer (block page, redirect) as a pipeline response.
fn rule_response(response: Response<Bytes>) -> Response<crate::pipeline::Body> {
    response.map(|body| {
        Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync()
    })
}

#[cfg(test)]
mod tests;
