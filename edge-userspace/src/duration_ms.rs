//! Durations in the config file, written as whole milliseconds (`"idle_timeout_ms": 60000`), so
//! that tests can set sub-second timeouts and operators read one unit everywhere.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// `#[serde(with = "crate::duration_ms")]` for a [`Duration`] field.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_millis)
}
