//! `/accounts/{account}/request-tracer/trace`: what the edge would do with a
//! request, without sending it anywhere: the chain it resolves to, then every
//! stage, phase and rule in execution order (customer first, provider next,
//! response phases in reverse), with the field values that decided each rule.
//! This answers "which zone's rule acted on my O2O request?".

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use http::{HeaderName, HeaderValue, Method, Uri};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::control::router::Call;
use crate::control::{ApiError, Control};
use crate::rules::ClientInfo;
use crate::stages::{self, RequestOutcome, Trace};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// Rules reading `ip.src` see this address: a trace has no real client.
const TRACE_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub(super) fn trace(control: &Control, call: &Call) -> Result<Value, ApiError> {
    let body: Request = call.json()?;
    let account = call.param("account");
    let state = control.state();
    if !state.accounts().iter().any(|a| a.id == account) {
        return Err(ApiError::not_found(format!("no account `{account}`")));
    }
    let uri: Uri = body
        .url
        .parse()
        .map_err(|e| ApiError::invalid(format!("`url`: {e}")))?;
    let host = uri
        .host()
        .ok_or_else(|| ApiError::invalid("`url` must be absolute (https://host/path)"))?
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let method = match &body.method {
        Some(m) => Method::from_bytes(m.as_bytes())
            .map_err(|e| ApiError::invalid(format!("`method`: {e}")))?,
        None => Method::GET,
    };
    let mut request = http::Request::builder().method(method).uri(uri.clone());
    for (name, value) in &body.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| ApiError::invalid(format!("`headers`: `{name}`: {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| ApiError::invalid(format!("`headers.{name}`: {e}")))?;
        request = request.header(name, value);
    }
    if !body.headers.keys().any(|n| n.eq_ignore_ascii_case("host")) {
        request = request.header(http::header::HOST, host.as_str());
    }
    let (mut parts, ()) = request
        .body(())
        .map_err(|e| ApiError::invalid(e.to_string()))?
        .into_parts();

    let routing = control.routing().load_full();
    let chain = match routing.snapshot().resolve(&host) {
        Ok(chain) => chain,
        Err(error) => {
            return Ok(json!({
                "host": host,
                "chain": null,
                "error": {"code": error.code(), "status": error.status().as_u16(), "title": error.title(), "detail": error.detail()},
                "trace": [],
            }));
        }
    };
    if !chain.stages.iter().any(|s| &*s.account_id == account) {
        return Err(ApiError::not_found(format!(
            "no zone of account `{account}` is in the chain of {host}"
        )));
    }
    let stages = routing.stages(chain);
    let client = ClientInfo {
        ip: TRACE_CLIENT,
        tls: uri.scheme_str() == Some("https"),
        metadata: chain
            .custom_hostname
            .as_ref()
            .and_then(|h| h.metadata.as_deref()),
    };
    let raw = stages::capture_raw(&stages, &parts);
    // Rules see the normalised URL, as they do on the request path.
    let url = routing.url_normalization(chain);
    if let Some(normal) = crate::pipeline::normalize::uri(&parts.uri, url.merge_slashes) {
        parts.uri = normal;
    }
    let mut trace = Trace::default();
    let outcome = match stages::run_request(
        &stages,
        chain.o2o,
        &mut parts,
        &client,
        &raw,
        Some(&mut trace),
    ) {
        RequestOutcome::Continue(route) => {
            // The response phases, as for an origin answering 200.
            let (mut response, ()) = http::Response::new(()).into_parts();
            stages::run_response(
                &stages,
                &parts,
                &client,
                &raw,
                &mut response,
                Some(&mut trace),
            );
            json!({
                "action": "origin",
                "origin": {
                    "host": route.origin_host.unwrap_or_else(|| chain.origin.host.to_string()),
                    "port": route.origin_port.unwrap_or_else(|| chain.origin.port_or_default()),
                    "host_header": route.host_header.and_then(|v| v.to_str().ok().map(str::to_owned)),
                    "sni": route.sni,
                },
                "response_headers": headers(&response.headers),
            })
        }
        RequestOutcome::Respond { stage, response } => json!({
            "action": "respond",
            "zone": chain.stages[stage].zone_name.as_ref(),
            "status": response.status.as_u16(),
            "headers": headers(&response.headers),
        }),
    };
    Ok(json!({
        "host": host,
        "chain": {
            "id": chain.id,
            "o2o": chain.o2o,
            "zones": chain.stages.iter().map(|s| s.zone_name.as_ref()).collect::<Vec<_>>(),
            "custom_hostname": chain.custom_hostname.as_ref().map(|h| h.hostname()),
        },
        "request": {
            "method": parts.method.as_str(),
            "uri": parts.uri.to_string(),
            "headers": headers(&parts.headers),
        },
        "outcome": outcome,
        "trace": trace.stages,
    }))
}

fn headers(map: &http::HeaderMap) -> Value {
    let mut out = serde_json::Map::new();
    for (name, value) in map {
        let entry = out
            .entry(name.as_str())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = entry {
            list.push(Value::from(String::from_utf8_lossy(value.as_bytes())));
        }
    }
    Value::Object(out)
}
