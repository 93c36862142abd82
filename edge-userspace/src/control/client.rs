//! A client of the control socket: what `edge ctl` (and the tests and the
//! benchmark) speak to a running edge with. One HTTP/1.1 connection per call.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

pub struct Client {
    socket: PathBuf,
}

/// The HTTP status and the envelope (or, for raw endpoints, the text).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    /// JSON for the envelope, the Prometheus text format for `/metrics`.
    pub content_type: Option<String>,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "the edge answered {} with a body that is not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The envelope's `result` when `success`, else its errors as the error.
    pub fn result(&self) -> Result<Value> {
        let mut envelope = self.json()?;
        if envelope["success"] == Value::Bool(true) {
            return Ok(envelope["result"].take());
        }
        let errors: Vec<String> = envelope["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                format!(
                    "{} (code {})",
                    e["message"].as_str().unwrap_or("?"),
                    e["code"]
                )
            })
            .collect();
        anyhow::bail!("{}: {}", self.status, errors.join("; "))
    }
}

impl Client {
    pub fn new(socket: impl AsRef<Path>) -> Client {
        Client {
            socket: socket.as_ref().to_owned(),
        }
    }

    /// `method path` with `body` as JSON.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Answer> {
        let body = match body {
            Some(value) => Bytes::from(serde_json::to_vec(value)?),
            None => Bytes::new(),
        };
        self.send(method, path, body).await
    }

    /// `method path` with `body` as it is (also not JSON, for the tests).
    pub async fn send(&self, method: Method, path: &str, body: Bytes) -> Result<Answer> {
        let stream = UnixStream::connect(&self.socket).await.with_context(|| {
            format!(
                "connecting to the control socket {} (is the edge running? --socket)",
                self.socket.display()
            )
        })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let connection = tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "edge");
        if !body.is_empty() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        let response = sender.send_request(request.body(Full::new(body))?).await?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.into_body().collect().await?.to_bytes();
        drop(sender);
        let _ = connection.await;
        Ok(Answer {
            status,
            content_type,
            body,
        })
    }

    /// The `result` of a call that must succeed.
    pub async fn result(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        self.call(method, path, body).await?.result()
    }
}
