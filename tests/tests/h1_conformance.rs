//! HTTP/1.1 framing conformance of the client-facing server, as a table: exact request bytes
//! written on raw sockets (plain TCP and TLS with ALPN `http/1.1`) to the real `edge` binary,
//! in front of a real origin on loopback, and the answer each shape must get.
//!
//! Every row's bytes are followed by a probe (`GET /probe`, `connection: close`) in the same
//! write. A row whose request leaves the connection usable must get the probe answered after
//! its own responses; a row the edge must refuse (400 or 431, connection closed) must get
//! exactly its refusal and nothing for the probe: whatever followed the refused head was never
//! read as a request (the smuggling shapes: RFC 9112 §6.1, §6.3, §7.1, §5.2).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edge_tests::binary::EdgeProcess;
use edge_tests::chain::o2o_state;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HOST: &str = "mystore.example.com";
/// The edge's defaults, which the test runs on: `limits.max_header_bytes` (head and trailers)
/// and `limits.max_headers`.
const MAX_HEADER_BYTES: usize = 32 * 1024;
const MAX_HEADERS: usize = 100;
/// The longest chunk-size line (size and extensions) the edge reads.
const MAX_CHUNK_LINE: usize = 4096;

/// What a row must get: the statuses in order, and whether the probe after them is answered
/// (the connection stayed usable) or not (the edge closed it).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Answer {
    statuses: &'static [u16],
    probe_answered: bool,
}

const fn kept(statuses: &'static [u16]) -> Answer {
    Answer {
        statuses,
        probe_answered: true,
    }
}

const fn closed(statuses: &'static [u16]) -> Answer {
    Answer {
        statuses,
        probe_answered: false,
    }
}

const REFUSED: Answer = closed(&[400]);

struct Row {
    name: &'static str,
    request: Vec<u8>,
    want: Answer,
    /// Text the first response must contain (what the origin saw, a header, a trailer).
    saw: &'static [&'static str],
    /// The first request is a HEAD: its response has no body whatever its headers say.
    head: bool,
}

fn row(name: &'static str, request: impl Into<Vec<u8>>, want: Answer) -> Row {
    Row {
        name,
        request: request.into(),
        want,
        saw: &[],
        head: false,
    }
}

impl Row {
    fn saw(mut self, saw: &'static [&'static str]) -> Row {
        self.saw = saw;
        self
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: {HOST}\r\n\r\n")
}

fn post(headers: &str, body: &str) -> String {
    format!("POST /upload HTTP/1.1\r\nhost: {HOST}\r\n{headers}\r\n{body}")
}

fn table() -> Vec<Row> {
    let long_ext = "x".repeat(10 * MAX_CHUNK_LINE);
    let big_trailer = "t".repeat(10 * MAX_HEADER_BYTES);
    let big_head = "h".repeat(10 * MAX_HEADER_BYTES);
    let many_headers: String = (0..10 * MAX_HEADERS)
        .map(|i| format!("x-h{i}: 1\r\n"))
        .collect();
    vec![
        // Keep-alive and close.
        row("keep-alive GET", get("/a"), kept(&[200])).saw(&[r#""path":"/a""#]),
        row(
            "connection: close",
            format!("GET /a HTTP/1.1\r\nhost: {HOST}\r\nconnection: close\r\n\r\n"),
            closed(&[200]),
        ),
        row(
            "HTTP/1.0 closes by default",
            format!("GET /a HTTP/1.0\r\nhost: {HOST}\r\n\r\n"),
            closed(&[200]),
        ),
        row(
            "HTTP/1.0 keep-alive",
            format!("GET /a HTTP/1.0\r\nhost: {HOST}\r\nconnection: keep-alive\r\n\r\n"),
            kept(&[200]),
        ),
        row(
            "pipelined requests answered in order",
            format!(
                "{}{}{}",
                get("/one"),
                post("content-length: 3\r\n", "abc"),
                get("/three")
            ),
            kept(&[200, 200, 200]),
        )
        .saw(&[r#""path":"/one""#]),
        // Bodies.
        row(
            "content-length body",
            post("content-length: 5\r\n", "hello"),
            kept(&[200]),
        )
        .saw(&[r#""length":5"#]),
        row(
            "chunked body",
            post(
                "transfer-encoding: chunked\r\n",
                "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            ),
            kept(&[200]),
        )
        .saw(&[r#""length":11"#, r#""content_length":[]"#]),
        row(
            "chunk extensions are skipped",
            post(
                "transfer-encoding: chunked\r\n",
                "5;name=value;flag\r\nhello\r\n0;last\r\n\r\n",
            ),
            kept(&[200]),
        )
        .saw(&[r#""length":5"#]),
        row(
            "chunk size with leading zeros",
            post(
                "transfer-encoding: chunked\r\n",
                "0005\r\nhello\r\n0\r\n\r\n",
            ),
            kept(&[200]),
        )
        .saw(&[r#""length":5"#]),
        row(
            "request trailers",
            post(
                "transfer-encoding: chunked\r\n",
                "5\r\nhello\r\n0\r\nx-trailer: 1\r\n\r\n",
            ),
            kept(&[200]),
        )
        .saw(&[r#""length":5"#]),
        row(
            // RFC 9112 §6.3: a list of identical values is that one value.
            "same content-length twice",
            post("content-length: 5\r\ncontent-length: 5\r\n", "hello"),
            kept(&[200]),
        )
        .saw(&[r#""length":5"#]),
        row(
            "same content-length as a list",
            post("content-length: 5, 5\r\n", "hello"),
            kept(&[200]),
        )
        .saw(&[r#""length":5"#]),
        row(
            "expect: 100-continue",
            post("content-length: 5\r\nexpect: 100-continue\r\n", "hello"),
            kept(&[100, 200]),
        )
        .saw(&[r#""length":5"#]),
        // Responses without a body.
        Row {
            head: true,
            ..row(
                "HEAD: length announced, no body",
                format!("HEAD /a HTTP/1.1\r\nhost: {HOST}\r\n\r\n"),
                kept(&[200]),
            )
        }
        .saw(&["content-length:"]),
        row("204 has no body", get("/status/204"), kept(&[204])),
        row("304 has no body", get("/status/304"), kept(&[304])),
        row(
            "chunked response with trailers",
            format!("GET /trailers HTTP/1.1\r\nhost: {HOST}\r\nte: trailers\r\n\r\n"),
            kept(&[200]),
        )
        .saw(&["transfer-encoding: chunked", "x-checksum: 42"]),
        // Hosts (the pipeline's rules need every Host line).
        row(
            "absolute-form target",
            format!("GET http://{HOST}/abs HTTP/1.1\r\nhost: {HOST}\r\n\r\n"),
            kept(&[200]),
        )
        .saw(&[r#""path":"/abs""#]),
        row(
            "two Host lines",
            format!("GET /a HTTP/1.1\r\nhost: {HOST}\r\nhost: other.example\r\n\r\n"),
            REFUSED,
        ),
        row("no Host", "GET /a HTTP/1.1\r\n\r\n", REFUSED),
        // Smuggling shapes: refused, connection closed.
        row(
            "content-length with transfer-encoding",
            post(
                "content-length: 5\r\ntransfer-encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            REFUSED,
        ),
        row(
            "transfer-encoding with content-length",
            post(
                "transfer-encoding: chunked\r\ncontent-length: 5\r\n",
                "0\r\n\r\n",
            ),
            REFUSED,
        ),
        row(
            "two different content-lengths",
            post("content-length: 5\r\ncontent-length: 6\r\n", "hello!"),
            REFUSED,
        ),
        row(
            "content-length list of different values",
            post("content-length: 5, 6\r\n", "hello!"),
            REFUSED,
        ),
        row(
            "content-length not a number",
            post("content-length: +5\r\n", "hello"),
            REFUSED,
        ),
        row(
            "transfer-encoding chunked, identity",
            post("transfer-encoding: chunked, identity\r\n", "0\r\n\r\n"),
            REFUSED,
        ),
        row(
            "transfer-encoding identity",
            post("transfer-encoding: identity\r\n", "0\r\n\r\n"),
            REFUSED,
        ),
        row(
            "transfer-encoding gzip",
            post("transfer-encoding: gzip\r\n", "0\r\n\r\n"),
            REFUSED,
        ),
        row(
            "transfer-encoding gzip, chunked",
            post("transfer-encoding: gzip, chunked\r\n", "0\r\n\r\n"),
            REFUSED,
        ),
        row(
            "transfer-encoding chunked twice",
            post(
                "transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            REFUSED,
        ),
        row(
            "HTTP/1.0 with transfer-encoding",
            format!(
                "POST /upload HTTP/1.0\r\nhost: {HOST}\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
            REFUSED,
        ),
        row(
            "obs-fold",
            format!("GET /a HTTP/1.1\r\nhost: {HOST}\r\nx-folded: a\r\n  b\r\n\r\n"),
            REFUSED,
        ),
        row(
            "bare LF line endings",
            format!("GET /a HTTP/1.1\nhost: {HOST}\n\n"),
            REFUSED,
        ),
        row(
            "bare LF in chunked framing",
            post("transfer-encoding: chunked\r\n", "5\nhello\n0\n\n"),
            REFUSED,
        ),
        row(
            "chunk size overflowing 64 bits",
            post(
                "transfer-encoding: chunked\r\n",
                "1ffffffffffffffff\r\nhello\r\n0\r\n\r\n",
            ),
            REFUSED,
        ),
        row(
            "chunk size not hex",
            post("transfer-encoding: chunked\r\n", "zz\r\nhello\r\n0\r\n\r\n"),
            REFUSED,
        ),
        row(
            "chunk data longer than its size",
            post(
                "transfer-encoding: chunked\r\n",
                "5\r\nhello!!\r\n0\r\n\r\n",
            ),
            REFUSED,
        ),
        // Bounds, each at ten times.
        row(
            "chunk extension at 10x the chunk-line bound",
            post(
                "transfer-encoding: chunked\r\n",
                &format!("5;{long_ext}\r\nhello\r\n0\r\n\r\n"),
            ),
            REFUSED,
        ),
        row(
            "trailers at 10x max_header_bytes",
            post(
                "transfer-encoding: chunked\r\n",
                &format!("5\r\nhello\r\n0\r\nx-big: {big_trailer}\r\n\r\n"),
            ),
            REFUSED,
        ),
        row(
            "head at 10x max_header_bytes",
            format!("GET /a HTTP/1.1\r\nhost: {HOST}\r\nx-big: {big_head}\r\n\r\n"),
            closed(&[431]),
        ),
        row(
            "header lines at 10x max_headers",
            format!("GET /a HTTP/1.1\r\nhost: {HOST}\r\n{many_headers}\r\n"),
            closed(&[431]),
        ),
    ]
}

/// The origin behind the edge: `/status/{n}` answers `n`, `/trailers` a chunked body with a
/// trailer, anything else what it received, as JSON.
async fn spawn_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service =
                    service_fn(|req| async move { Ok::<_, Infallible>(answer(req).await) });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

type OriginBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn answer(req: Request<Incoming>) -> Response<OriginBody> {
    let path = req.uri().path().to_owned();
    if let Some(code) = path.strip_prefix("/status/") {
        let mut response = Response::new(Full::new(Bytes::from_static(b"none")).boxed());
        *response.status_mut() = StatusCode::from_u16(code.parse().unwrap()).unwrap();
        return response;
    }
    if path == "/trailers" {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-checksum", "42".parse().unwrap());
        let frames = futures_util::stream::iter([
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"hello"))),
            Ok(Frame::trailers(trailers)),
        ]);
        let mut response = Response::new(StreamBody::new(frames).boxed());
        response
            .headers_mut()
            .insert("trailer", "x-checksum".parse().unwrap());
        return response;
    }
    let values = |name| -> Vec<String> {
        req.headers()
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    };
    let (method, content_length, te) = (
        req.method().to_string(),
        values("content-length"),
        values("transfer-encoding"),
    );
    let length = req.into_body().collect().await.map(|b| b.to_bytes().len());
    let json = json!({
        "method": method,
        "path": path,
        "length": length.ok(),
        "content_length": content_length,
        "transfer_encoding": te,
    });
    Response::new(Full::new(Bytes::from(json.to_string())).boxed())
}

/// One response as read off the wire.
struct Answered {
    status: u16,
    text: String,
}

/// Splits what the edge sent into responses, framed as RFC 9112 §6.3 says for a response
/// (`head` for the first: it answers a HEAD). Parse errors end the list, marked.
fn responses(mut bytes: &[u8], mut head: bool) -> Result<Vec<Answered>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(bytes) {
            Ok(httparse::Status::Complete(len)) => len,
            other => {
                return Err(format!(
                    "unparsable response ({other:?}) after {} answers: {:?}",
                    out.len(),
                    String::from_utf8_lossy(bytes)
                ));
            }
        };
        let status = response.code.unwrap();
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).into_owned())
        };
        let body_len = if head || (100..200).contains(&status) || status == 204 || status == 304 {
            0
        } else if header("transfer-encoding").is_some() {
            chunked_len(&bytes[len..])?
        } else if let Some(length) = header("content-length") {
            length.parse::<usize>().map_err(|e| e.to_string())?
        } else {
            bytes.len() - len
        };
        let end = (len + body_len).min(bytes.len());
        out.push(Answered {
            status,
            text: String::from_utf8_lossy(&bytes[..end]).into_owned(),
        });
        bytes = &bytes[end..];
        head = false;
    }
    Ok(out)
}

/// Length of a chunked body on the wire, trailers included.
fn chunked_len(body: &[u8]) -> Result<usize, String> {
    let mut at = 0;
    loop {
        let (line, size) = match httparse::parse_chunk_size(&body[at..]) {
            Ok(httparse::Status::Complete(parsed)) => parsed,
            other => return Err(format!("bad chunk size in response: {other:?}")),
        };
        at += line;
        if size == 0 {
            // Trailers, then the empty line.
            let rest = &body[at..];
            let end = rest
                .windows(2)
                .enumerate()
                .find(|(i, w)| *w == b"\r\n" && (*i == 0 || rest[..*i].ends_with(b"\r\n")))
                .map(|(i, _)| i + 2)
                .ok_or("unterminated trailers")?;
            return Ok(at + end);
        }
        at += usize::try_from(size).unwrap() + 2;
    }
}

/// Writes `bytes` and reads everything until the edge closes (the probe asks it to).
async fn exchange<S>(stream: S, bytes: Vec<u8>) -> Result<Vec<u8>, String>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut read, mut write) = tokio::io::split(stream);
    // Written beside the reading: the edge may refuse and close before taking it all.
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&bytes).await;
        let _ = write.flush().await;
        write
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let read_all = async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    let ended = tokio::time::timeout(Duration::from_secs(10), read_all).await;
    drop(writer.await);
    ended.map_err(|_| {
        format!(
            "the edge did not close the connection: {:?}",
            String::from_utf8_lossy(&out)
        )
    })?;
    Ok(out)
}

fn probe() -> Vec<u8> {
    format!("GET /probe HTTP/1.1\r\nhost: {HOST}\r\nconnection: close\r\n\r\n").into_bytes()
}

/// Runs `row` on `stream`; `Err` says how the answer differs from the row's.
async fn check<S>(row: &Row, stream: S) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let mut bytes = row.request.clone();
    bytes.extend(probe());
    let got = exchange(stream, bytes).await?;
    let mut answers = responses(&got, row.head)?;
    let probe_answered = answers
        .last()
        .is_some_and(|a| a.status == 200 && a.text.contains(r#""path":"/probe""#));
    if probe_answered {
        answers.pop();
    }
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    let want = row.want;
    if statuses != want.statuses || probe_answered != want.probe_answered {
        return Err(format!(
            "got {statuses:?}, probe answered: {probe_answered}; want {:?}, probe answered: {}\n{}",
            want.statuses,
            want.probe_answered,
            String::from_utf8_lossy(&got[..got.len().min(2000)])
        ));
    }
    let first = answers
        .iter()
        .find(|a| a.status >= 200)
        .map(|a| a.text.as_str());
    for saw in row.saw {
        if !first.is_some_and(|t| t.contains(saw)) {
            return Err(format!("the answer lacks {saw}: {first:?}"));
        }
    }
    Ok(())
}

async fn tls(edge: &EdgeProcess) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&edge.ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(edge.https).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(HOST.try_into().unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test]
async fn every_framing_shape_gets_its_answer_over_tcp_and_tls() {
    let origin = spawn_origin().await;
    let edge = tokio::task::spawn_blocking(move || {
        EdgeProcess::start(o2o_state(origin), json!({}), json!({})).unwrap()
    })
    .await
    .unwrap();
    let mut failures = Vec::new();
    for row in table() {
        let plain = TcpStream::connect(edge.http).await.unwrap();
        if let Err(why) = check(&row, plain).await {
            failures.push(format!("[tcp] {}: {why}", row.name));
        }
        if let Err(why) = check(&row, tls(&edge).await).await {
            failures.push(format!("[tls] {}: {why}", row.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows differ:\n{}",
        failures.len(),
        table().len(),
        failures.join("\n\n")
    );
}
