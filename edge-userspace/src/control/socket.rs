//! The Unix domain socket and its HTTP/1.1 server.
//!
//! The socket is bound under a temporary name, given its mode (0600, or 0660
//! with the configured group) and only then renamed into place, so that there
//! is no moment at which the final path accepts connections with looser
//! permissions. A socket left behind by a killed edge is replaced the same
//! way; one that still answers belongs to another edge and is left alone.

use std::convert::Infallible;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tokio::task::JoinSet;

use super::envelope::{code, failure, success};
use super::router::{self, Call, Found, Reply};
use super::{ApiError, Control};
use crate::config::ControlConfig;

/// The bound socket; the file is removed when this is dropped (the edge stops).
pub struct Socket {
    listener: UnixListener,
    path: PathBuf,
}

impl Socket {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the control socket of `config` (must run inside the runtime).
pub fn bind(config: &ControlConfig, state_dir: &Path) -> Result<Socket> {
    let path = config.socket_path(state_dir);
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .with_context(|| format!("creating the directory of {}", path.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("control socket path {} names no file", path.display()))?;
    let staging = parent.join(format!(
        ".{}.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    // A socket left by a killed edge refuses connections; a live one answers.
    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
        anyhow::bail!(
            "another process answers on the control socket {}: is another edge using it?",
            path.display()
        );
    }
    let _ = std::fs::remove_file(&staging);
    let listener = std::os::unix::net::UnixListener::bind(&staging)
        .with_context(|| format!("binding the control socket {}", staging.display()))?;
    let staged = restrict(&staging, config.group.as_deref()).and_then(|()| {
        std::fs::rename(&staging, &path)
            .with_context(|| format!("moving the control socket to {}", path.display()))
    });
    if let Err(error) = staged {
        let _ = std::fs::remove_file(&staging);
        return Err(error);
    }
    listener.set_nonblocking(true)?;
    Ok(Socket {
        listener: UnixListener::from_std(listener)?,
        path,
    })
}

fn restrict(path: &Path, group: Option<&str>) -> Result<()> {
    let mode = match group {
        None => 0o600,
        Some(name) => {
            let group = nix::unistd::Group::from_name(name)
                .with_context(|| format!("looking up the control socket's group `{name}`"))?
                .with_context(|| format!("control.group: no group `{name}`"))?;
            nix::unistd::chown(path, None, Some(group.gid))
                .with_context(|| format!("giving {} to group `{name}`", path.display()))?;
            0o660
        }
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

/// Answers on `socket` until `stop` resolves, then ends the open
/// connections and returns once none of them holds `control` any more, so
/// that the store (and its lock on the state directory) can be released.
pub async fn serve(socket: Socket, control: Control, stop: impl Future<Output = ()>) {
    let mut connections = JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let stream = tokio::select! {
            () = &mut stop => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = socket.listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!("control socket accept: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let control = control.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let control = control.clone();
                async move { Ok::<_, Infallible>(handle(control, req).await) }
            });
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("control connection: {error}");
            }
        });
    }
    connections.shutdown().await;
}

async fn handle(control: Control, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match dispatch(control, req).await {
        Ok(Reply::Json(result)) => json(StatusCode::OK, &success(result)),
        Ok(Reply::Text { content_type, body }) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            response
        }
        Err(error) => json(error.status, &failure(&error)),
    }
}

async fn dispatch(control: Control, req: Request<Incoming>) -> Result<Reply, ApiError> {
    let (route, params) = match router::find(super::api::ROUTES, req.method(), req.uri().path())? {
        Found::Route(route, params) => (route, params),
        Found::WrongMethod => {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                code::METHOD,
                format!("{} is not allowed on {}", req.method(), req.uri().path()),
            ));
        }
    };
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::TOO_LARGE,
            format!("the body exceeds {} bytes", route.max_body),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > route.max_body as u64) {
        return Err(too_large());
    }
    let query = req.uri().query().map(str::to_owned);
    let body = Limited::new(req.into_body(), route.max_body)
        .collect()
        .await
        .map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                ApiError::malformed(format!("reading the body: {error}"))
            }
        })?
        .to_bytes();
    let call = Call::new(params, query.as_deref(), body);
    let handler = route.handler;
    // Writes compile rules and wait for fsync, `/xdp` makes syscalls: off
    // the async workers.
    tokio::task::spawn_blocking(move || handler.call(&control, &call))
        .await
        .unwrap_or_else(|panic| {
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                code::INTERNAL,
                format!("the handler failed: {panic}"),
            ))
        })
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut bytes = serde_json::to_vec(body).expect("JSON values serialise");
    bytes.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
