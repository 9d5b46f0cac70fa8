//! OpenSSL's DRBG (`RAND_bytes`), seeded from the operating system.

use conclave_plugin_sdk::{ErrorCode, PluginError, SecretBytes, counters::Counters};

/// `len` bytes from OpenSSL's RNG, counted.
pub fn random(len: usize, counters: &Counters) -> Result<SecretBytes, PluginError> {
    let mut buf = SecretBytes::new(vec![0u8; len]);
    openssl::rand::rand_bytes(buf.expose_mut())
        .map_err(|e| PluginError::new(ErrorCode::RNG_FAILURE, format!("RAND_bytes failed: {e}")))?;
    counters.add_random(len);
    Ok(buf)
}
