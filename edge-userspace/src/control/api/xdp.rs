//! `/xdp` and `/xdp/routes`: the XDP classifier of the running edge, read
//! from the kernel's maps, and attached, detached or re-configured at run
//! time.
//!
//! `PUT /xdp` takes one object, validated whole before anything changes:
//! - `{"interface": "eth0", "mode": "native" | "generic" | null}` attaches
//!   (`mode` null or absent: native, falling back to generic);
//! - `{"attached": false}` detaches (also when not attached);
//! - `{"unknown_sni": "pass" | "drop"}` sets the unknown-SNI policy, alone
//!   or with an attach or a detach.
//!
//! Every answer is the status as `GET /xdp` gives it.

use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::super::envelope::code;
use super::super::router::Call;
use super::super::{ApiError, Control};
use super::to_value;
use crate::xdp::{AttachMode, UnknownSni, XdpError, XdpRuntime};

pub fn get(control: &Control, _: &Call) -> Result<Value, ApiError> {
    let xdp = control.xdp().ok_or_else(no_xdp)?;
    status(&xdp)
}

pub fn routes(control: &Control, _: &Call) -> Result<Value, ApiError> {
    let xdp = control.xdp().ok_or_else(no_xdp)?;
    Ok(to_value(&xdp.routes().map_err(kernel)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Put {
    #[serde(default)]
    interface: Option<String>,
    #[serde(default)]
    mode: Option<AttachMode>,
    #[serde(default)]
    attached: Option<bool>,
    #[serde(default)]
    unknown_sni: Option<UnknownSni>,
}

/// What a valid `PUT /xdp` asks for.
#[derive(Debug, PartialEq, Eq)]
enum Attachment {
    Keep,
    Attach {
        interface: String,
        mode: Option<AttachMode>,
    },
    Detach,
}

impl Put {
    fn attachment(self) -> Result<(Attachment, Option<UnknownSni>), ApiError> {
        let attachment = match (self.attached, self.interface) {
            (Some(false), None) if self.mode.is_none() => Attachment::Detach,
            (Some(false), _) => {
                return Err(ApiError::invalid(
                    "`attached`: false detaches; `interface` and `mode` belong to an attach",
                ));
            }
            (Some(true) | None, Some(interface)) => Attachment::Attach {
                interface,
                mode: self.mode,
            },
            (Some(true), None) => {
                return Err(ApiError::invalid(
                    "`interface` is required to attach (`attached`: true)",
                ));
            }
            (None, None) if self.mode.is_some() => {
                return Err(ApiError::invalid(
                    "`mode` needs an `interface` to attach to",
                ));
            }
            (None, None) => Attachment::Keep,
        };
        if attachment == Attachment::Keep && self.unknown_sni.is_none() {
            return Err(ApiError::invalid(
                "nothing to change: give `interface` (attach), `attached`: false (detach) \
                 or `unknown_sni`",
            ));
        }
        Ok((attachment, self.unknown_sni))
    }
}

pub fn put(control: &Control, call: &Call) -> Result<Value, ApiError> {
    let (attachment, policy) = call.json::<Put>()?.attachment()?;
    control.xdp_write(|xdp| {
        match attachment {
            Attachment::Keep => {}
            Attachment::Detach => {
                xdp.detach().map_err(kernel)?;
            }
            Attachment::Attach { interface, mode } => {
                // The policy is the one the program loads with: set it
                // only on a detached runtime, and put the old one back if
                // the attach fails.
                if xdp.is_attached() {
                    return Err(ApiError::invalid(
                        "XDP is already attached; detach it first (`attached`: false)",
                    ));
                }
                let previous = xdp.unknown_sni();
                if let Some(policy) = policy {
                    xdp.set_unknown_sni(policy).map_err(kernel)?;
                }
                if let Err(error) = xdp.attach(&interface, mode) {
                    if let Err(revert) = xdp.set_unknown_sni(previous) {
                        tracing::error!("unknown-SNI policy not put back: {revert:#}");
                    }
                    return Err(attach_error(error));
                }
                return status(xdp);
            }
        }
        if let Some(policy) = policy {
            xdp.set_unknown_sni(policy).map_err(kernel)?;
        }
        status(xdp)
    })
}

fn status(xdp: &XdpRuntime) -> Result<Value, ApiError> {
    Ok(to_value(&xdp.status().map_err(kernel)?))
}

fn attach_error(error: XdpError) -> ApiError {
    match error {
        XdpError::Refused(message) => ApiError::invalid(message),
        XdpError::Kernel(error) => kernel(error),
    }
}

fn kernel(error: anyhow::Error) -> ApiError {
    tracing::error!("XDP control call failed: {error:#}");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        code::INTERNAL,
        format!("the kernel refused: {error:#}"),
    )
}

/// This edge runs without an XDP runtime (an embedding, not `edge serve`).
pub fn no_xdp() -> ApiError {
    ApiError::not_found("this edge has no XDP runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<(Attachment, Option<UnknownSni>), ApiError> {
        serde_json::from_str::<Put>(body)
            .map_err(|e| ApiError::malformed(e.to_string()))?
            .attachment()
    }

    #[test]
    fn bodies_name_one_change_or_are_refused_whole() {
        assert_eq!(
            parse(r#"{"interface": "eth0", "mode": null}"#).unwrap(),
            (
                Attachment::Attach {
                    interface: "eth0".into(),
                    mode: None
                },
                None
            )
        );
        assert_eq!(
            parse(r#"{"attached": false, "unknown_sni": "drop"}"#).unwrap(),
            (Attachment::Detach, Some(UnknownSni::Drop))
        );
        assert_eq!(
            parse(r#"{"unknown_sni": "pass"}"#).unwrap(),
            (Attachment::Keep, Some(UnknownSni::Pass))
        );
        for bad in [
            r#"{}"#,
            r#"{"attached": true}"#,
            r#"{"attached": false, "interface": "eth0"}"#,
            r#"{"attached": false, "mode": "native"}"#,
            r#"{"mode": "generic"}"#,
            r#"{"interface": "eth0", "mode": "fast"}"#,
            r#"{"unknown_sni": "maybe"}"#,
            r#"{"interface": "eth0", "colour": "red"}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
