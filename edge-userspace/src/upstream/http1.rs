//! An HTTP/1.1 origin connection driven by the request that holds it, not by a task of its own.
//!
//! hyper's HTTP/1.1 client is a handle ([`http1::SendRequest`]) and a future that does the
//! connection's reading and writing. Spawned, that future is a third task every request
//! crosses (client connection, request, origin connection), woken once to write the request
//! and once more to read the response. One connection carries one request at a time, so the
//! request's own task can drive it instead: while the head is awaited ([`Http1::send`]), then
//! while the response body is read (see [`super::lease`]). An idle connection is driven by
//! nobody; a checkout polls it once, which notices a connection the origin closed meanwhile.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1};

use super::RequestBody;
use super::connector::OriginIo;

/// The connection's future: reads and writes, and hands the socket over when the origin
/// switches protocols (so boxed: hyper's upgradeable connection has no nameable type).
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

pub(super) struct Http1 {
    sender: http1::SendRequest<RequestBody>,
    /// `None` once the connection has ended.
    driver: Option<Driver>,
    /// Whether a request was sent on it before.
    used: bool,
}

impl Http1 {
    pub fn new(
        sender: http1::SendRequest<RequestBody>,
        connection: http1::Connection<OriginIo, RequestBody>,
    ) -> Self {
        Self {
            sender,
            driver: Some(Box::pin(connection.with_upgrades())),
            used: false,
        }
    }

    /// Moves the connection along (writes what is queued, reads what arrived); `Ready` once it
    /// has ended: closed by either side, failed, or handed over to an upgrade.
    pub fn poll_driver(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(driver) = &mut self.driver else {
            return Poll::Ready(());
        };
        let Poll::Ready(ended) = driver.as_mut().poll(cx) else {
            return Poll::Pending;
        };
        if let Err(error) = ended {
            tracing::debug!(%error, "origin HTTP/1.1 connection ended");
        }
        self.driver = None;
        Poll::Ready(())
    }

    /// Whether an idle connection can take a request now. Polls it once, without waiting:
    /// that is when a close by the origin (or stray bytes) is noticed, and when a connection
    /// whose previous exchange is still finishing (an upload the origin answered early) shows
    /// as not ready; either is passed over.
    pub fn is_ready_now(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.poll_driver(&mut cx).is_pending()
            && matches!(self.sender.poll_ready(&mut cx), Poll::Ready(Ok(())))
    }

    /// Whether it carried a request before: a reused connection may have been closed by the
    /// origin while the next request was on its way.
    pub fn reused(&self) -> bool {
        self.used
    }

    pub fn is_closed(&self) -> bool {
        self.driver.is_none() || self.sender.is_closed()
    }

    /// Sends `req` and drives the connection until the response head arrives. The request
    /// comes back unsent, as from hyper, when the connection ended before taking it (boxed:
    /// it is the rare path, and a request head is large).
    pub async fn send(
        &mut self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, Box<TrySendError<Request<RequestBody>>>> {
        self.used = true;
        let response = self.sender.try_send_request(req);
        let mut response = std::pin::pin!(response);
        let response = std::future::poll_fn(|cx| {
            // An ended connection answers every request it held, with the request itself when
            // unsent: `response` completes right after.
            let _ = self.poll_driver(cx);
            response.as_mut().poll(cx)
        })
        .await
        .map_err(Box::new)?;
        if response.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(driver) = self.driver.take()
        {
            // The socket now belongs to the upgrade, which the connection hands over when it
            // is next polled; nothing else will poll it.
            tokio::spawn(async move {
                if let Err(error) = driver.await {
                    tracing::debug!(%error, "origin connection failed to upgrade");
                }
            });
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use bytes::Bytes;
    use http_body::{Body, Frame};
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;

    use super::*;

    /// An upload whose chunks the test sends, and which ends when the test drops its sender.
    struct Upload(mpsc::Receiver<Bytes>);

    impl Body for Upload {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.0
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
        }
    }

    fn request(method: &str, body: RequestBody) -> Request<RequestBody> {
        Request::builder()
            .method(method)
            .uri("/")
            .header("host", "origin.test")
            .body(body)
            .unwrap()
    }

    fn empty() -> RequestBody {
        Empty::new().map_err(|never| match never {}).boxed_unsync()
    }

    async fn connect(origin: std::net::SocketAddr) -> Http1 {
        let tcp = TcpStream::connect(origin).await.unwrap();
        let io = OriginIo::Plain(TokioIo::new(tcp));
        let (sender, connection) = http1::handshake(io).await.unwrap();
        Http1::new(sender, connection)
    }

    /// Reads a response body to its end, driving the connection as the edge's response body
    /// does.
    async fn read_body(conn: &mut Http1, mut body: Incoming) -> Bytes {
        let mut read = Vec::new();
        loop {
            let frame = std::future::poll_fn(|cx| {
                if let Poll::Ready(frame) = Pin::new(&mut body).poll_frame(cx) {
                    return Poll::Ready(frame);
                }
                let _ = conn.poll_driver(cx);
                Pin::new(&mut body).poll_frame(cx)
            });
            match tokio::time::timeout(Duration::from_secs(5), frame)
                .await
                .unwrap()
            {
                None => return read.into(),
                Some(frame) => read.extend_from_slice(&frame.unwrap().into_data().unwrap()),
            }
        }
    }

    /// Reads one request head from `tcp`; `false` at end of stream.
    async fn read_head(tcp: &mut TcpStream) -> bool {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if tcp.read(&mut byte).await.unwrap_or(0) == 0 {
                return false;
            }
            head.push(byte[0]);
        }
        true
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    #[tokio::test]
    async fn the_request_drives_its_connection_which_then_carries_the_next() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut answered = 0;
            while read_head(&mut tcp).await {
                tcp.write_all(OK).await.unwrap();
                answered += 1;
            }
            answered
        });
        // No task drives the connection: only these requests do.
        let mut conn = connect(origin).await;
        for _ in 0..3 {
            let response = conn.send(request("GET", empty())).await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(read_body(&mut conn, response.into_body()).await, "ok");
            assert!(conn.is_ready_now(), "the exchange is complete");
        }
        drop(conn);
        assert_eq!(server.await.unwrap(), 3, "three requests on one connection");
    }

    #[tokio::test]
    async fn a_connection_still_sending_an_upload_the_origin_answered_is_not_ready() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            assert!(read_head(&mut tcp).await);
            // Answered before the upload ends; then the rest of it is read.
            tcp.write_all(OK).await.unwrap();
            let mut rest = Vec::new();
            tcp.read_to_end(&mut rest).await.unwrap();
            rest
        });
        let mut conn = connect(origin).await;
        let (chunks, upload) = mpsc::channel(1);
        chunks.send(Bytes::from_static(b"first")).await.unwrap();
        let body = Upload(upload)
            .map_err(|never| match never {})
            .boxed_unsync();
        let response = conn.send(request("POST", body)).await.unwrap();
        assert_eq!(read_body(&mut conn, response.into_body()).await, "ok");
        assert!(
            !conn.is_ready_now(),
            "the upload is still going: another request must not wait behind it"
        );
        assert!(!conn.is_closed());
        drop(chunks);
        // The end of the upload goes out as the connection is driven again.
        for _ in 0..100 {
            if conn.is_ready_now() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(conn.is_ready_now(), "the exchange completed");
        drop(conn);
        let rest = server.await.unwrap();
        assert!(
            rest.windows(5).any(|w| w == b"first"),
            "{:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    #[tokio::test]
    async fn an_idle_connection_the_origin_closed_is_not_ready() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            assert!(read_head(&mut tcp).await);
            tcp.write_all(OK).await.unwrap();
            tcp.shutdown().await.unwrap();
            // The edge closes its side once it notices.
            let mut rest = Vec::new();
            tcp.read_to_end(&mut rest).await.unwrap();
            rest
        });
        let mut conn = connect(origin).await;
        let response = conn.send(request("GET", empty())).await.unwrap();
        assert_eq!(read_body(&mut conn, response.into_body()).await, "ok");
        // The close arrives on its own time; polled, the idle connection notices it.
        let mut ready = true;
        for _ in 0..100 {
            ready = conn.is_ready_now();
            if !ready {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!ready, "a closed connection is passed over");
        assert!(conn.is_closed());
        let rest = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the edge closed the connection without being dropped")
            .unwrap();
        assert!(rest.is_empty(), "nothing more was sent");
    }
}
