//! `/metrics`: the edge's Prometheus metrics (and the XDP program's
//! counters, read from its maps) in the text format, outside the envelope.

use super::super::router::{Call, Reply};
use super::super::{ApiError, Control};

/// The content type of the Prometheus text exposition format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn get(control: &Control, _: &Call) -> Result<Reply, ApiError> {
    let metrics = control
        .metrics()
        .ok_or_else(|| ApiError::not_found("this edge keeps no metrics"))?;
    Ok(Reply::Text {
        content_type: PROMETHEUS_TEXT,
        body: metrics.encode(),
    })
}
