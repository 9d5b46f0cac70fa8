//! The operating system's RNG.

use conclave_plugin_sdk::{ErrorCode, PluginError, SecretBytes, counters::Counters};

/// `len` bytes from the OS RNG, counted.
pub fn random(len: usize, counters: &Counters) -> Result<SecretBytes, PluginError> {
    let mut buf = SecretBytes::new(vec![0u8; len]);
    getrandom::fill(buf.expose_mut())
        .map_err(|e| PluginError::new(ErrorCode::RNG_FAILURE, format!("OS RNG failed: {e}")))?;
    counters.add_random(len);
    Ok(buf)
}
