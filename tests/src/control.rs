//! Calls to an edge's control socket for the tests: the status and the
//! envelope, and assertions on Cloudflare v4 error envelopes.

use std::path::Path;

use bytes::Bytes;
use edge_userspace::control::client::Client;
use http::{Method, StatusCode};
use serde_json::Value;

pub struct Control(Client);

impl Control {
    pub fn new(socket: &Path) -> Control {
        Control(Client::new(socket))
    }

    /// `method path` with a JSON body: the status and the envelope.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let answer = self.0.call(method, path, body.as_ref()).await.unwrap();
        (answer.status, answer.json().unwrap())
    }

    /// `method path` with raw bytes as the body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Bytes>,
    ) -> (StatusCode, Value) {
        let answer = self.0.send(method, path, body.into()).await.unwrap();
        (answer.status, answer.json().unwrap())
    }

    /// The `result` of a call that must succeed.
    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, envelope) = self.call(method.clone(), path, body).await;
        assert_eq!(status, StatusCode::OK, "{method} {path}: {envelope}");
        assert_eq!(envelope["success"], true, "{envelope}");
        assert_eq!(envelope["errors"], serde_json::json!([]));
        envelope["result"].clone()
    }

    /// A call that must be refused with `status` and `code`, whose message
    /// contains `needle` (the field it names); returns the message.
    pub async fn refused(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: StatusCode,
        code: u64,
        needle: &str,
    ) -> String {
        let (got, envelope) = self.call(method.clone(), path, body).await;
        check_refusal(
            &format!("{method} {path}"),
            got,
            &envelope,
            status,
            code,
            needle,
        )
    }
}

pub fn check_refusal(
    what: &str,
    got: StatusCode,
    envelope: &Value,
    status: StatusCode,
    code: u64,
    needle: &str,
) -> String {
    assert_eq!(got, status, "{what}: {envelope}");
    assert_eq!(envelope["success"], false, "{what}: {envelope}");
    assert!(envelope["result"].is_null(), "{what}: {envelope}");
    assert_eq!(envelope["errors"][0]["code"], code, "{what}: {envelope}");
    let message = envelope["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains(needle),
        "{what}: `{needle}` not in `{message}`"
    );
    message
}
