//! Identifiers and tokens for created objects: 32 hex digits from the OS's
//! random source, the shape of Cloudflare's ids.

use super::ApiError;

pub(super) fn new_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| {
        ApiError::new(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            super::envelope::code::INTERNAL,
            format!("no random id: {error}"),
        )
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
