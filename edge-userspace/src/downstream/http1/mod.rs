//! The edge's own HTTP/1.1 server connection, on httparse (the design of Pingora's
//! `protocols/http/v1`): httparse reads heads and chunk sizes, [`head`] decides the framing and
//! refuses the ambiguous shapes (which hyper accepts or rewrites before a handler could see
//! them: it drops `Content-Length` beside `Transfer-Encoding`), [`body`] decodes the request
//! body off the connection's buffer, [`write`] frames the response, [`conn`] runs the
//! keep-alive loop. HTTP/2 stays on hyper (the listener picks by ALPN or preface).

pub mod body;
pub mod conn;
pub mod head;
pub mod write;

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

pub use body::{BodyError, RequestBody};
pub use conn::{Settings, serve};

/// The client's side of an upgrade, in the extensions of a request that asked for one: it
/// resolves to the connection once the `101` has been written to the client, and fails if the
/// answer was anything else.
/// (Extensions must be `Clone`: the receiver is shared, and taken once.)
#[derive(Clone)]
pub struct ClientUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

/// The client's connection after a `101`, starting with any bytes it sent after its request.
pub type Upgraded = Box<dyn Io>;

/// A client connection, whichever stream (TCP, TLS) it is.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

impl ClientUpgrade {
    fn new(rx: oneshot::Receiver<Upgraded>) -> Self {
        Self(Arc::new(Mutex::new(Some(rx))))
    }

    pub async fn upgraded(self) -> Result<Upgraded, &'static str> {
        let rx = self.0.lock().expect("upgrade lock poisoned").take();
        rx.ok_or("the upgrade was taken already")?
            .await
            .map_err(|_| "the client connection did not switch protocols")
    }
}
