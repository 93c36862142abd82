//! The per-request path, in the order of Pingora's phases:
//!
//! 1. request received ([`edge_headers::on_request`]): forged edge headers dropped, visitor
//!    identity, request id and loop guard stamped;
//! 2. route ([`Router::route`]): the chain and its zones' request stages decide where the
//!    request goes, or answer it themselves;
//! 3. upstream ([`crate::upstream::Client::send`]): the request streams to the origin;
//! 4. response filter ([`Router::on_response`]): the stages' response phases, in reverse;
//! 5. errors ([`ErrorPage`]): anything that stops the request becomes a Cloudflare-style page.

pub mod authority;
pub mod edge_headers;
pub mod error_page;
pub mod forward;
pub mod normalize;

use std::sync::Arc;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Method, Request, Response, StatusCode, Version, request, response};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};

use crate::chain::ErrorKind;
use crate::downstream::{self, BoxError, ConnInfo};
use crate::metrics::{ChainMetrics, InFlight, Metrics};
use crate::upstream::{self, IdleTimeout, Origin, UpstreamError};
pub use edge_headers::{LoopGuard, RequestIds};
pub use error_page::ErrorPage;

/// Body of every response the edge sends.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Where the routing step sends a request.
#[derive(Clone, Debug)]
pub struct Route {
    pub origin: Origin,
    /// `Host` (HTTP/1.1) / `:authority` (HTTP/2) the origin receives.
    pub host_header: HeaderValue,
    /// The zone's request body limit in bytes; larger uploads get 413.
    pub max_request_body: Option<u64>,
    /// The request's place under its chain's `max_concurrent_requests`, held until the
    /// response body ends (shared only because a route is cloneable).
    pub admitted: Option<Arc<crate::admission::Permit>>,
}

/// How the routing step stops a request instead of forwarding it.
pub enum Reply {
    /// A rule's own answer (redirect, custom block page, …); boxed to keep `Result`s small.
    Response(Box<Response<Body>>),
    /// An edge error (1001, 1014, 421, …), rendered for the client's `Accept`.
    Error(ErrorPage),
}

impl From<ErrorPage> for Reply {
    fn from(page: ErrorPage) -> Self {
        Reply::Error(page)
    }
}

/// What the routing step decided, with the metrics of the chain it found: a request its
/// chain's rules answered (a block, a redirect) is the chain's as much as one it forwarded.
pub struct Routed<S> {
    /// `None` when no chain took the request (or nothing is counted).
    pub metrics: Option<Arc<ChainMetrics>>,
    pub outcome: Result<(Route, S), Reply>,
}

impl<S> From<Result<(Route, S), Reply>> for Routed<S> {
    /// An outcome no chain's metrics count.
    fn from(outcome: Result<(Route, S), Reply>) -> Self {
        Routed {
            metrics: None,
            outcome,
        }
    }
}

/// The routing step: the only part of the pipeline that knows about zones.
///
/// This is where the chain resolver and the stage runner plug in: `route` resolves the chain
/// for the request's host (checking it against `conn.sni()`, 421 on mismatch) and runs the
/// request phases of each stage on `req`; `on_response` runs the response phases with the
/// `State` that `route` returned (e.g. the resolved chain). By the time `route` runs, every
/// client-sent edge-owned header is gone, so `cf-connecting-o2o` present on `req` afterwards
/// can only have been set by a stage.
pub trait Router: Send + Sync + 'static {
    /// Carried from `route` to `on_response` of the same request.
    type State: Send + 'static;

    fn route(&self, conn: &ConnInfo, req: &mut request::Parts) -> Routed<Self::State>;

    fn on_response(&self, state: Self::State, conn: &ConnInfo, resp: &mut response::Parts);
}

/// Settings of the pipeline itself (not of any zone).
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub loop_guard: LoopGuard,
    /// Suffix of request ids, e.g. the node's location code.
    pub node: String,
    /// Longest silence inside a client's request body.
    pub request_body_idle_timeout: std::time::Duration,
    /// Where requests and connections are counted; per chain when the router returns its
    /// chain's metrics ([`Routed::metrics`]).
    pub metrics: Option<Arc<Metrics>>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            loop_guard: LoopGuard::default(),
            node: "EDGE".into(),
            request_body_idle_timeout: std::time::Duration::from_secs(60),
            metrics: None,
        }
    }
}

/// The request handler given to [`downstream::serve`].
pub struct Proxy<R> {
    router: R,
    client: upstream::Client,
    config: PipelineConfig,
    ids: RequestIds,
    /// `config.loop_guard.cdn_id` as the `cdn-loop` entry every request gets.
    cdn_loop: HeaderValue,
}

impl<R: Router> Proxy<R> {
    pub fn new(router: R, client: upstream::Client, config: PipelineConfig) -> Arc<Self> {
        let ids = RequestIds::new(&config.node);
        let cdn_loop = HeaderValue::try_from(config.loop_guard.cdn_id.as_str())
            .expect("cdn id is a header token");
        Arc::new(Self {
            router,
            client,
            config,
            ids,
            cdn_loop,
        })
    }

    /// Runs one request through every phase, whichever front door (HTTP/1.1, HTTP/2, HTTP/3)
    /// it came in by: the only difference between them is the body type.
    pub async fn respond<B>(&self, conn: &ConnInfo, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let started = std::time::Instant::now();
        let ray = self.ids.next();
        let http1 = req.version() <= Version::HTTP_11;
        // Kept for the error page: the request itself moves into the pipeline.
        let request_headers = error_page_headers(req.headers());
        let mut in_flight = None;
        let mut response = match self.proxy(conn, req, &ray, &mut in_flight).await {
            Ok(response) => response,
            Err(Reply::Response(response)) => *response,
            Err(Reply::Error(page)) => page.render(
                &request_headers,
                ray.to_str().expect("request ids are ASCII"),
            ),
        };
        response.headers_mut().insert(edge_headers::CF_RAY, ray);
        if http1 && response.status() == StatusCode::BAD_REQUEST {
            // A request the edge could not read unambiguously: nothing after it on the
            // connection can be trusted to be framed as the client meant.
            response
                .headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        let unrouted = || Some(self.config.metrics.as_ref()?.unrouted().start());
        if let Some(in_flight) = in_flight.or_else(unrouted) {
            in_flight.answered(response.status(), started.elapsed());
        }
        response
    }

    async fn proxy<B>(
        &self,
        conn: &ConnInfo,
        mut req: Request<B>,
        ray: &HeaderValue,
        in_flight: &mut Option<InFlight>,
    ) -> Result<Response<Body>, Reply>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        if req.method() == Method::CONNECT {
            return Err(ErrorPage::new(ErrorKind::Connect).into());
        }
        // Only HTTP/1.1 has upgrades: its server puts the client's side in the request.
        let client_upgrade = req
            .extensions_mut()
            .remove::<downstream::http1::ClientUpgrade>();
        let (mut parts, body) = req.into_parts();
        let upgrading = forward::is_upgrade(&parts);
        // Phase 1, request received. The client's hop-by-hop headers (and those its
        // `Connection` names) go first, so that its list applies to what it sent and never to
        // what the edge or a rule adds below.
        authority::settle(&mut parts)?;
        forward::strip_hop_by_hop(&mut parts.headers, upgrading);
        edge_headers::on_request(
            &mut parts.headers,
            conn,
            ray,
            &self.config.loop_guard,
            &self.cdn_loop,
        )?;

        // Phase 2, route: chain resolution and the zones' request stages.
        let routed = self.router.route(conn, &mut parts);
        if let Some(chain) = routed.metrics {
            *in_flight = Some(chain.start());
        }
        let (route, state) = routed.outcome?;

        // Phase 3, upstream.
        if let Some(max) = route.max_request_body
            && declared_length(&parts.headers).is_some_and(|len| len > max)
        {
            return Err(body_too_large().into());
        }
        let body = if body.is_end_stream() {
            // Nothing to time or limit; an empty body is zero-sized, so boxing it allocates
            // nothing.
            Empty::new().map_err(|never| match never {}).boxed_unsync()
        } else {
            // A client's trailers carry no more authority than its headers.
            let body = body.map_frame(edge_headers::drop_vouched_trailers as fn(_) -> _);
            // Marked, so that a body the client botched (bad chunked framing, a reset) is told
            // apart from an origin failure.
            let body = body.map_err(|error| Box::new(ClientBodyError(error.into())) as BoxError);
            let body = IdleTimeout::new(body, self.config.request_body_idle_timeout);
            match route.max_request_body {
                None => body.boxed_unsync(),
                // Chunked or HTTP/2 uploads without a length are cut off when they cross the
                // limit.
                Some(max) => {
                    Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX)).boxed_unsync()
                }
            }
        };
        let upstream_req = forward::origin_request(parts, body, &route.host_header);
        let mut response = self
            .client
            .send(&route.origin, conn.peer.ip(), upstream_req)
            .await
            .map_err(|error| {
                if error.caused_by::<LengthLimitError>() {
                    body_too_large()
                } else if error.caused_by::<ClientBodyError>() {
                    bad_request_body()
                } else if error.caused_by::<upstream::BodyIdleTimeout>() {
                    // Only the request body is timed before the response head.
                    request_body_timeout()
                } else if let UpstreamError::ClientCap = error {
                    too_many_in_flight()
                } else {
                    if let Some(in_flight) = in_flight {
                        in_flight.upstream_error();
                    }
                    upstream_error(&route.origin, &error)
                }
            })?;

        // Phase 4, response filter: the zones' response stages, in reverse.
        let switched = upgrading && response.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switched && let Some(client_upgrade) = client_upgrade {
            forward::tunnel(client_upgrade, hyper::upgrade::on(&mut response));
        }
        let (mut parts, body) = response.into_parts();
        forward::strip_hop_by_hop(&mut parts.headers, switched);
        self.router.on_response(state, conn, &mut parts);
        let body = match route.admitted {
            // The permit lives as long as the body: it is freed when the body ends or is
            // dropped (client gone, write timeout).
            Some(permit) => body
                .map_frame(move |frame| {
                    let _held = &permit;
                    frame
                })
                .boxed_unsync(),
            None => body.boxed_unsync(),
        };
        Ok(Response::from_parts(parts, body))
    }
}

fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn body_too_large() -> ErrorPage {
    ErrorPage::new(ErrorKind::BodyTooLarge)
}

/// The client's request body failed on its way in (malformed chunked framing, a reset):
/// the client's fault, not the origin's.
#[derive(Debug)]
struct ClientBodyError(BoxError);

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request body: {}", self.0)
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

fn bad_request_body() -> ErrorPage {
    ErrorPage::new(ErrorKind::BadBody)
}

fn request_body_timeout() -> ErrorPage {
    ErrorPage::new(ErrorKind::BodyTimeout)
}

fn too_many_in_flight() -> ErrorPage {
    ErrorPage::new(ErrorKind::TooManyInFlight)
}

fn upstream_error(origin: &Origin, error: &UpstreamError) -> ErrorPage {
    tracing::info!(origin = %origin.host, port = origin.port, %error, "origin request failed");
    ErrorPage::new(match error.status() {
        StatusCode::GATEWAY_TIMEOUT => ErrorKind::GatewayTimeout,
        _ => ErrorKind::BadGateway,
    })
}

impl<R: Router> downstream::Handler for Arc<Proxy<R>> {
    type Body = Body;

    async fn handle<B>(&self, conn: Arc<ConnInfo>, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        self.respond(&conn, req).await
    }

    fn accepted(&self) -> impl Send + 'static {
        self.config.metrics.as_ref().map(|m| m.connection())
    }

    fn closed(&self, why: downstream::Closed) {
        if let Some(metrics) = &self.config.metrics {
            metrics.connection_closed(why);
        }
    }
}

impl<R: Router> downstream::h3::H3Handler for Arc<Proxy<R>> {
    type Body = Body;

    async fn handle(
        &self,
        conn: Arc<ConnInfo>,
        req: Request<downstream::h3::RequestBody>,
    ) -> Response<Body> {
        self.respond(&conn, req).await
    }

    fn accepted(&self) -> impl Send + 'static {
        self.config.metrics.as_ref().map(|m| m.connection())
    }

    fn answered_locally(&self, status: StatusCode) {
        if let Some(metrics) = &self.config.metrics {
            metrics
                .unrouted()
                .start()
                .answered(status, std::time::Duration::ZERO);
        }
    }
}

/// The only request header error pages depend on.
fn error_page_headers(headers: &http::HeaderMap) -> http::HeaderMap {
    let mut kept = http::HeaderMap::new();
    for value in headers.get_all(http::header::ACCEPT) {
        kept.append(http::header::ACCEPT, value.clone());
    }
    kept
}
