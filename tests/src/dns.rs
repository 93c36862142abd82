//! A small authoritative DNS server (hickory-server, in-memory zones, UDP and
//! TCP on one ephemeral loopback port) whose records a test changes while it
//! runs, and an HTTP server answering hostname validation challenges.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use hickory_server::Server;
use hickory_server::proto::rr::rdata::{A, CNAME, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

/// Answers for the zones it was started with; stops when dropped.
pub struct DnsServer {
    pub addr: SocketAddr,
    zones: Vec<(String, Arc<InMemoryZoneHandler>)>,
    serial: Mutex<u32>,
    server: Server<Catalog>,
}

impl DnsServer {
    /// Serves `zones` (apexes such as `example.com`), each holding only its SOA.
    pub async fn start(zones: &[&str]) -> Result<DnsServer> {
        let mut catalog = Catalog::new();
        let mut handlers = Vec::new();
        for apex in zones {
            let origin = fqdn(apex)?;
            let mut handler =
                InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
            let soa = SOA::new(
                fqdn(&format!("ns.{apex}"))?,
                fqdn(&format!("hostmaster.{apex}"))?,
                1,
                3600,
                600,
                86400,
                0,
            );
            if !handler.upsert_mut(Record::from_rdata(origin.clone(), 0, RData::SOA(soa)), 1) {
                bail!("the SOA of {apex} was refused");
            }
            let handler = Arc::new(handler);
            catalog.upsert(
                LowerName::new(&origin),
                vec![handler.clone() as Arc<dyn ZoneHandler>],
            );
            handlers.push((apex.to_string(), handler));
        }
        let (udp, tcp) = bind_udp_and_tcp().await?;
        let addr = udp.local_addr()?;
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        Ok(DnsServer {
            addr,
            zones: handlers,
            serial: Mutex::new(1),
            server,
        })
    }

    /// Replaces every record at `name` with a CNAME to `target`.
    pub async fn cname(&self, name: &str, target: &str) -> Result<()> {
        self.set(name, vec![RData::CNAME(CNAME(fqdn(target)?))])
            .await
    }

    /// Replaces every record at `name` with an A record.
    pub async fn a(&self, name: &str, ip: Ipv4Addr) -> Result<()> {
        self.set(name, vec![RData::A(A(ip))]).await
    }

    /// Replaces every record at `name` with these TXT records.
    pub async fn txt(&self, name: &str, values: &[&str]) -> Result<()> {
        let records = values
            .iter()
            .map(|v| RData::TXT(TXT::new(vec![v.to_string()])))
            .collect();
        self.set(name, records).await
    }

    /// Removes every record at `name`, so that it does not exist.
    pub async fn remove(&self, name: &str) -> Result<()> {
        self.set(name, Vec::new()).await
    }

    async fn set(&self, name: &str, data: Vec<RData>) -> Result<()> {
        let owner = fqdn(name)?;
        let zone = self.zone_of(name)?;
        let lower = LowerName::new(&owner);
        zone.records_mut()
            .await
            .retain(|key, _| *key.name() != lower);
        let serial = {
            let mut serial = self.serial.lock().unwrap();
            *serial += 1;
            *serial
        };
        for rdata in data {
            // TTL 0: a resolver must never answer a later query from cache.
            if !zone
                .upsert(Record::from_rdata(owner.clone(), 0, rdata), serial)
                .await
            {
                bail!("record at {name} refused");
            }
        }
        Ok(())
    }

    fn zone_of(&self, name: &str) -> Result<&Arc<InMemoryZoneHandler>> {
        self.zones
            .iter()
            .filter(|(apex, _)| name == apex || name.ends_with(&format!(".{apex}")))
            .max_by_key(|(apex, _)| apex.len())
            .map(|(_, zone)| zone)
            .with_context(|| format!("{name} is in none of the test server's zones"))
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.server.shutdown_token().cancel();
    }
}

fn fqdn(name: &str) -> Result<Name> {
    Name::from_ascii(format!("{name}.")).with_context(|| format!("bad DNS name {name}"))
}

/// A UDP socket and a TCP listener on the same ephemeral loopback port.
async fn bind_udp_and_tcp() -> Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap()).context("no loopback port free for both UDP and TCP")
}

/// Serves `bodies` (path → body) with 200 and everything else with 404;
/// stops when dropped.
pub struct ChallengeServer {
    pub addr: SocketAddr,
    bodies: Arc<Mutex<HashMap<String, String>>>,
    task: JoinHandle<()>,
}

impl ChallengeServer {
    pub async fn start() -> Result<ChallengeServer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let bodies: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let served = bodies.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let bodies = served.clone();
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let body = bodies.lock().unwrap().get(request.uri().path()).cloned();
                            async move {
                                let response = match body {
                                    Some(body) => {
                                        hyper::Response::new(Full::new(Bytes::from(body)))
                                    }
                                    None => {
                                        let mut not_found = hyper::Response::new(Full::new(
                                            Bytes::from_static(b"not found"),
                                        ));
                                        *not_found.status_mut() = hyper::StatusCode::NOT_FOUND;
                                        not_found
                                    }
                                };
                                Ok::<_, Infallible>(response)
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Ok(ChallengeServer { addr, bodies, task })
    }

    pub fn serve(&self, path: &str, body: &str) {
        self.bodies
            .lock()
            .unwrap()
            .insert(path.to_string(), body.to_string());
    }
}

impl Drop for ChallengeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How [`FlakyResolver`] fails the names it is told to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Answers SERVFAIL.
    ServFail,
    /// Never answers, over UDP or TCP: the asker times out.
    Silent,
}

/// A resolver in front of a [`DnsServer`]: passes queries through over UDP,
/// except for a name told to fail and the names under it (its
/// `_cf-custom-hostname.` TXT name), which get SERVFAIL or no answer at all.
/// Its TCP port accepts connections and never answers. Stops when dropped.
pub struct FlakyResolver {
    pub addr: SocketAddr,
    failing: Arc<Mutex<HashMap<String, Failure>>>,
    task: JoinHandle<()>,
    _tcp: TcpListener,
}

impl FlakyResolver {
    pub async fn start(upstream: SocketAddr) -> Result<FlakyResolver> {
        use hickory_server::proto::op::{Message, ResponseCode};
        let (udp, tcp) = bind_udp_and_tcp().await?;
        let addr = udp.local_addr()?;
        let udp = Arc::new(udp);
        let failing: Arc<Mutex<HashMap<String, Failure>>> = Arc::default();
        let task = tokio::spawn({
            let failing = failing.clone();
            async move {
                let mut buffer = vec![0u8; 4096];
                while let Ok((len, from)) = udp.recv_from(&mut buffer).await {
                    let query = buffer[..len].to_vec();
                    let Ok(message) = Message::from_vec(&query) else {
                        continue;
                    };
                    let name = message.queries.first().map(|q| {
                        q.name()
                            .to_ascii()
                            .trim_end_matches('.')
                            .to_ascii_lowercase()
                    });
                    let failure = name.and_then(|name| {
                        let failing = failing.lock().unwrap();
                        failing
                            .iter()
                            .find(|(failing, _)| {
                                name == **failing || name.ends_with(&format!(".{failing}"))
                            })
                            .map(|(_, f)| *f)
                    });
                    match failure {
                        Some(Failure::Silent) => {}
                        Some(Failure::ServFail) => {
                            let answer = Message::error_msg(
                                message.metadata.id,
                                message.metadata.op_code,
                                ResponseCode::ServFail,
                            );
                            if let Ok(bytes) = answer.to_vec() {
                                let _ = udp.send_to(&bytes, from).await;
                            }
                        }
                        None => {
                            let udp = udp.clone();
                            tokio::spawn(async move {
                                let Ok(socket) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await
                                else {
                                    return;
                                };
                                let mut answer = vec![0u8; 4096];
                                if socket.send_to(&query, upstream).await.is_ok()
                                    && let Ok(Ok(len)) = tokio::time::timeout(
                                        Duration::from_secs(5),
                                        socket.recv(&mut answer),
                                    )
                                    .await
                                {
                                    let _ = udp.send_to(&answer[..len], from).await;
                                }
                            });
                        }
                    }
                }
            }
        });
        Ok(FlakyResolver {
            addr,
            failing,
            task,
            _tcp: tcp,
        })
    }

    /// Fails `name` and every name under it from now on.
    pub fn fail(&self, name: &str, failure: Failure) {
        self.failing
            .lock()
            .unwrap()
            .insert(name.to_ascii_lowercase(), failure);
    }

    /// Answers `name` again.
    pub fn heal(&self, name: &str) {
        self.failing.lock().unwrap().remove(name);
    }
}

impl Drop for FlakyResolver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
