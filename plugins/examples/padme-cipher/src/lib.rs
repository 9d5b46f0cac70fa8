//! `padme`: an example third-party cipher plugin for Conclave.
//!
//! It seals group messages with AES-256-GCM (from whatever provider the policy names),
//! and first pads every plaintext to a PADME length (Nikitin et al., "Reducing Metadata
//! Leakage from Encrypted Files and Communication with PURBs", PETS 2019), so that an
//! observer learns at most O(log log n) bits about a message's length. Everything else
//! (per-sender keys, nonces, replay window, epochs) comes from the SDK's cipher kit.
//!
//! One option, from the policy: `options.padme = { padding = "padme" }` (the default)
//! or `{ padding = "none" }` (only the end marker: the length shows, for comparison).

use conclave_plugin_sdk::{
    Algorithm, AlgorithmClass, ErrorCode, PluginError, PluginKind,
    api::{Options, cipher::CipherConfig, cipher::OpenedMessage},
    cipher_kit::{KitCipher, Limits, ProviderAead},
    host::Provider,
    implement::{GroupCipherImpl, Plugin},
};

/// The padded length of a message of `len` bytes (PADME), at least `len`.
pub fn padme(len: usize) -> usize {
    if len < 2 {
        return len;
    }
    let e = usize::BITS - 1 - len.leading_zeros(); // floor(log2 len)
    let s = u32::BITS - e.leading_zeros(); // floor(log2 e) + 1
    let last_bits = e - s;
    let mask = (1usize << last_bits) - 1;
    (len + mask) & !mask
}

/// Pads `m` to `padme(len + 1)` bytes: `m || 0x80 || 0x00...`.
pub fn pad(m: &[u8]) -> Vec<u8> {
    pad_to(m, padme(m.len() + 1))
}

/// `m || 0x80`, then zeros up to `len` bytes (at least `m.len() + 1`).
fn pad_to(m: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len.max(m.len() + 1));
    out.extend_from_slice(m);
    out.push(0x80);
    out.resize(len.max(m.len() + 1), 0);
    out
}

/// How plaintexts are padded (the `padding` option).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// To a PADME length (the default).
    Padme,
    /// Only the end marker.
    None,
}

impl Padding {
    /// The `padding` option of `options`: `Ok` with the scheme, or why it is refused.
    pub fn from_options(options: &Options) -> Result<Self, PluginError> {
        let invalid = |why: String| PluginError::new(ErrorCode::BAD_CONFIG, why);
        let mut padding = Padding::Padme;
        for e in options.entries.iter() {
            match (e.key.as_str(), e.value.as_str()) {
                ("padding", "padme") => padding = Padding::Padme,
                ("padding", "none") => padding = Padding::None,
                ("padding", other) => {
                    return Err(invalid(format!(
                        "padme: padding \"{other}\" is not \"padme\" or \"none\""
                    )));
                }
                (key, _) => {
                    return Err(invalid(format!(
                        "padme: unknown option \"{key}\" (the only one is \"padding\")"
                    )));
                }
            }
        }
        Ok(padding)
    }
}

/// Removes the padding of [`pad`].
pub fn unpad(mut m: Vec<u8>) -> Result<Vec<u8>, PluginError> {
    let end = m.iter().rposition(|&b| b != 0);
    match end {
        Some(i) if m[i] == 0x80 => {
            m.truncate(i);
            Ok(m)
        }
        _ => Err(PluginError::new(ErrorCode::MALFORMED, "padme: bad padding")),
    }
}

struct Padme {
    inner: KitCipher,
    padding: Padding,
}

impl GroupCipherImpl for Padme {
    fn algorithm(&self) -> String {
        "padme-aes-256-gcm".into()
    }
    fn key_len(&self) -> usize {
        self.inner.key_len()
    }
    fn overhead(&self) -> usize {
        // The padding adds at most 1/8 of a large message; this bound covers messages up
        // to 16 MiB (PADME adds < 2^21 bytes there).
        self.inner.overhead() + (1 << 21)
    }
    fn install_key(&mut self, epoch: u64, key: &[u8]) -> Result<(), PluginError> {
        self.inner.install_key(epoch, key)
    }
    fn retire_key(&mut self, epoch: u64) -> bool {
        self.inner.retire_key(epoch)
    }
    fn seal(&mut self, epoch: u64, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, PluginError> {
        let padded = match self.padding {
            Padding::Padme => pad(plaintext),
            Padding::None => pad_to(plaintext, 0),
        };
        self.inner.seal(epoch, aad, &padded)
    }
    fn open(
        &mut self,
        sender: &str,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<OpenedMessage, PluginError> {
        let mut opened = self.inner.open(sender, aad, sealed)?;
        opened.plaintext = unpad(opened.plaintext.into_vec())?.into();
        Ok(opened)
    }
}

/// The plugin (marker type).
pub struct PadmePlugin;

impl Plugin for PadmePlugin {
    const NAME: &'static str = "padme";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const KIND: PluginKind = PluginKind::Cipher;
    const DESCRIPTION: &'static str = "example: AES-256-GCM with PADME length hiding";

    fn algorithms() -> Vec<Algorithm> {
        vec![Algorithm::new(
            AlgorithmClass::GroupCipher,
            "padme-aes-256-gcm",
        )]
    }

    fn check_options(options: &Options) -> Result<(), PluginError> {
        Padding::from_options(options).map(|_| ())
    }

    fn new_cipher(config: &CipherConfig) -> Result<Box<dyn GroupCipherImpl>, PluginError> {
        if config.algorithm.as_str() != "padme-aes-256-gcm" {
            return Err(PluginError::unsupported(format!(
                "padme: {}",
                config.algorithm
            )));
        }
        let provider = Provider::from_abi(conclave_plugin_sdk::api::provider::share_provider(
            &config.provider,
        ));
        let aead = ProviderAead::new(&provider, "aes-256-gcm", 32)?;
        let inner = KitCipher::new(config, 32, "hkdf-sha256", Box::new(aead), Limits::UNLIMITED)?;
        let padding = Padding::from_options(&config.options)?;
        Ok(Box::new(Padme { inner, padding }))
    }
}

conclave_plugin_sdk::export_plugin!(PadmePlugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padme_matches_the_paper() {
        // 9: E=3, S=2, one low bit cleared -> 10; 100 -> 104; 1000 -> 1024.
        assert_eq!(padme(9), 10);
        assert_eq!(padme(100), 104);
        assert_eq!(padme(1000), 1024);
        for n in 0..5000 {
            assert!(padme(n) >= n);
        }
    }

    #[test]
    fn pad_round_trips() {
        for n in [0usize, 1, 7, 100, 1000] {
            let m: Vec<u8> = (0..n).map(|i| i as u8).collect();
            assert_eq!(unpad(pad(&m)).unwrap(), m);
        }
        assert!(unpad(vec![0, 0]).is_err());
    }
}
