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
