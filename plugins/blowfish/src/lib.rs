//! The `blowfish` cipher plugin: Blowfish-CBC with HMAC-SHA256, encrypt-then-MAC: the
//! cipher of the Secure Spread paper (section 5.2), kept for comparison and for
//! interoperating with legacy deployments. **Legacy**: prefer `aes-gcm` or
//! `chacha20-poly1305`.
//!
//! # Construction
//!
//! The SDK's [cipher kit](conclave_plugin_sdk::cipher_kit) supplies what every Conclave
//! cipher shares: the 17-byte header (format, epoch, sequence number), per-sender keys
//! derived with HKDF-SHA256 from the epoch's 32-byte group key, the replay window and the
//! epoch rules. Each 48-byte per-sender key splits into a 16-byte Blowfish key and a
//! 32-byte HMAC-SHA256 key. A message body is
//!
//! ```text
//! IV (8, random) || Blowfish-CBC(PKCS#7(plaintext)) || HMAC-SHA256(tag input) (32)
//! tag input = "conclave/blowfish-etm/v1" || len(aad) (u64 BE) || aad || IV || ciphertext
//! ```
//!
//! where `aad` is the header followed by the application's associated data, so the tag
//! binds the epoch and sequence number. The tag is checked (in constant time) before
//! anything is decrypted; padding is only looked at after that, so there is no padding
//! oracle.
//!
//! # How much data per key
//!
//! Blowfish has a 64-bit block. After about 2^32 blocks under one key, CBC ciphertext
//! blocks collide with good probability and leak plaintext XORs (the "Sweet32" attack).
//! After `n` blocks the collision probability is about `n^2 / 2^65`. This plugin stops a
//! per-sender key after 2^22 blocks (32 MiB of plaintext, probability about 2^-21) or
//! 2^22 messages, whichever comes first: sealing then fails with `KEY_EXHAUSTED`, and the
//! group must rekey (the policy's rekey interval should keep groups well below this).
//! Since keys are per sender and per epoch, the limit is per member between rekeys.

use conclave_plugin_sdk::{
    Algorithm, AlgorithmClass, ErrorCode, PluginError, PluginKind, SecretBytes,
    api::cipher::CipherConfig,
    cipher_kit::{KitCipher, Limits, SenderCipher, SenderCipherFactory},
    host::{BlockCipher, Mac, Provider},
    implement::{GroupCipherImpl, Plugin},
};
use zeroize::Zeroizing;

/// The plugin's name.
pub const NAME: &str = "blowfish";
/// The algorithm it offers.
pub const ALGORITHM: &str = "blowfish-cbc-hmac-sha256";
/// The KDF that derives per-sender keys.
pub const KDF: &str = "hkdf-sha256";
/// The group key's length.
pub const KEY_LEN: usize = 32;
/// Per-sender-key limits: 2^22 messages, 2^25 bytes (2^22 Blowfish blocks).
pub const LIMITS: Limits = Limits {
    max_messages: 1 << 22,
    max_bytes: 1 << 25,
};

const BLOCK: usize = 8;
const BF_KEY: usize = 16;
const MAC_KEY: usize = 32;
const TAG: usize = 32;
const DOMAIN: &[u8] = b"conclave/blowfish-etm/v1";

/// The plugin (marker type).
pub struct BlowfishPlugin;

impl Plugin for BlowfishPlugin {
    const NAME: &'static str = NAME;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const KIND: PluginKind = PluginKind::Cipher;
    const DESCRIPTION: &'static str =
        "legacy: Blowfish-CBC + HMAC-SHA256 encrypt-then-MAC, random IV, 32 MiB per sender key";

    fn algorithms() -> Vec<Algorithm> {
        vec![Algorithm::new(AlgorithmClass::GroupCipher, ALGORITHM)]
    }

    fn new_cipher(config: &CipherConfig) -> Result<Box<dyn GroupCipherImpl>, PluginError> {
        if config.algorithm.as_str() != ALGORITHM {
            return Err(PluginError::unsupported(format!(
                "blowfish: algorithm {:?} (offers {ALGORITHM})",
                config.algorithm.as_str()
            )));
        }
        if let Some(entry) = config.options.entries.first() {
            return Err(PluginError::new(
                ErrorCode::BAD_CONFIG,
                format!("blowfish: unknown option {:?}", entry.key.as_str()),
            ));
        }
        let provider = Provider::from_abi(conclave_plugin_sdk::api::provider::share_provider(
            &config.provider,
        ));
        // Fail now, naming what is missing, if the provider lacks a primitive.
        provider.block_cipher("blowfish", &[0u8; BF_KEY])?;
        provider.mac("hmac-sha256", &[0u8; MAC_KEY])?;
        Ok(Box::new(KitCipher::new(
            config,
            KEY_LEN,
            KDF,
            Box::new(EtmFactory),
            LIMITS,
        )?))
    }
}

conclave_plugin_sdk::builtin_plugin!(BlowfishPlugin);

/// Makes one [`Etm`] per sender key.
struct EtmFactory;

impl SenderCipherFactory for EtmFactory {
    fn sender_key_len(&self) -> usize {
        BF_KEY + MAC_KEY
    }

    fn overhead(&self) -> usize {
        BLOCK + BLOCK + TAG
    }

    fn min_body_len(&self) -> usize {
        BLOCK + BLOCK + TAG
    }

    fn new_sender(
        &self,
        provider: &Provider,
        key: &[u8],
    ) -> Result<Box<dyn SenderCipher>, PluginError> {
        let (bf_key, mac_key) = key.split_at(BF_KEY);
        Ok(Box::new(Etm {
            provider: provider.clone(),
            cipher: provider.block_cipher("blowfish", bf_key)?,
            mac: provider.mac("hmac-sha256", mac_key)?,
        }))
    }
}

/// Blowfish-CBC then HMAC-SHA256 under one sender's key.
struct Etm {
    provider: Provider,
    cipher: BlockCipher,
    mac: Mac,
}

fn malformed(why: &str) -> PluginError {
    PluginError::new(ErrorCode::MALFORMED, format!("blowfish: {why}"))
}

impl Etm {
    fn tag_parts<'a>(
        aad_len: &'a [u8; 8],
        aad: &'a [u8],
        iv: &'a [u8],
        ct: &'a [u8],
    ) -> [&'a [u8]; 5] {
        [DOMAIN, aad_len, aad, iv, ct]
    }
}

impl SenderCipher for Etm {
    fn seal(
        &mut self,
        _sequence: u64,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, PluginError> {
        let iv = self.provider.random_bytes(BLOCK)?;
        let pad = BLOCK - plaintext.len() % BLOCK;
        let mut padded = Zeroizing::new(Vec::with_capacity(plaintext.len() + pad));
        padded.extend_from_slice(plaintext);
        padded.resize(plaintext.len() + pad, pad as u8);
        let ct = self.cipher.encrypt_cbc(iv.expose(), &padded)?;
        let aad_len = (aad.len() as u64).to_be_bytes();
        let tag = self
            .mac
            .compute(&Self::tag_parts(&aad_len, aad, iv.expose(), &ct))?;
        let mut body = Vec::with_capacity(BLOCK + ct.len() + TAG);
        body.extend_from_slice(iv.expose());
        body.extend_from_slice(&ct);
        body.extend_from_slice(&tag);
        Ok(body)
    }

    fn open(
        &mut self,
        _sequence: u64,
        aad: &[u8],
        body: &[u8],
    ) -> Result<SecretBytes, PluginError> {
        if body.len() < BLOCK + BLOCK + TAG || !(body.len() - TAG).is_multiple_of(BLOCK) {
            return Err(malformed("body is not IV, whole blocks and a tag"));
        }
        let (iv, rest) = body.split_at(BLOCK);
        let (ct, tag) = rest.split_at(rest.len() - TAG);
        let aad_len = (aad.len() as u64).to_be_bytes();
        self.mac
            .verify(&Self::tag_parts(&aad_len, aad, iv, ct), tag)
            .map_err(|_| {
                PluginError::new(
                    ErrorCode::AUTHENTICATION_FAILED,
                    "blowfish: tag mismatch (tampered or wrong key)",
                )
            })?;
        let padded = self.cipher.decrypt_cbc(iv, ct)?;
        // Authentic, so only a sender holding the key could have made bad padding.
        let buf = padded.expose();
        let pad = usize::from(buf.last().copied().unwrap_or(0));
        if pad == 0
            || pad > BLOCK
            || !buf[buf.len() - pad..]
                .iter()
                .all(|&b| usize::from(b) == pad)
        {
            return Err(malformed("bad padding in an authentic message"));
        }
        Ok(SecretBytes::copy_from(&buf[..buf.len() - pad]))
    }
}
