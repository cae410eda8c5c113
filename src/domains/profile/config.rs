//! The profile domain's configuration, `[profile]`: avatar limits. Types and defaults
//! only; the domain reads them, the application's `Config` names them.

use serde::{Deserialize, Serialize};

/// `[profile]`: profile limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileConfig {
    /// Largest avatar upload in bytes.
    pub avatar_max_bytes: usize,
    /// Thumbnail edge in pixels.
    pub thumbnail_px: u32,
    /// Largest avatar width or height in pixels; larger images are refused before they
    /// are decoded (decompression bombs).
    pub avatar_max_edge_px: u32,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        Self { avatar_max_bytes: 5 << 20, thumbnail_px: 128, avatar_max_edge_px: 4096 }
    }
}
