//! Ed25519 signatures (ed25519-dalek, RFC 8032; verification is strict).

use std::sync::Arc;

use conclave_plugin_sdk::{
    ErrorCode, PluginError, SecretBytes,
    counters::{Counters, Op},
    implement::SignerImpl,
    key_cache::ParsedKeys,
};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use zeroize::Zeroize;

use crate::rng;

type Result<T> = std::result::Result<T, PluginError>;

/// An Ed25519 signing key.
pub struct Ed25519Signer {
    key: SigningKey,
    counters: Arc<Counters>,
}

/// A new 32-byte Ed25519 seed.
pub fn generate(counters: &Counters) -> Result<SecretBytes> {
    rng::random(32, counters)
}

/// A signer from a 32-byte seed.
pub fn signer(secret: &[u8], counters: Arc<Counters>) -> Result<Ed25519Signer> {
    let mut seed: [u8; 32] = secret.try_into().map_err(|_| {
        PluginError::new(
            ErrorCode::INVALID_KEY,
            format!(
                "ed25519: secret key must be a 32-byte seed, got {} bytes",
                secret.len()
            ),
        )
    })?;
    let key = SigningKey::from_bytes(&seed);
    seed.zeroize();
    Ok(Ed25519Signer { key, counters })
}

impl SignerImpl for Ed25519Signer {
    fn algorithm(&self) -> String {
        "ed25519".into()
    }

    fn public_key(&self) -> Vec<u8> {
        self.key.verifying_key().to_bytes().to_vec()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        self.counters.bump(Op::Signature);
        Ok(self.key.sign(message).to_bytes().to_vec())
    }
}

/// A public key, parsed and checked: 32 bytes, a canonical encoding of a point not of
/// small order (RFC 8032 section 5.1.7, strictly; the same notion as every provider's).
pub fn parse_public(public_key: &[u8]) -> Result<VerifyingKey> {
    let bytes: [u8; 32] = public_key.try_into().map_err(|_| {
        PluginError::new(
            ErrorCode::INVALID_KEY,
            format!(
                "ed25519: public key must be 32 bytes, got {}",
                public_key.len()
            ),
        )
    })?;
    let not_canonical = || {
        PluginError::new(
            ErrorCode::INVALID_KEY,
            "ed25519: invalid public key (not a canonical point)",
        )
    };
    let pk = VerifyingKey::from_bytes(&bytes).map_err(|_| not_canonical())?;
    if pk.to_edwards().compress().to_bytes() != bytes {
        return Err(not_canonical());
    }
    if pk.is_weak() {
        return Err(PluginError::new(
            ErrorCode::INVALID_KEY,
            "ed25519: invalid public key (a point of small order)",
        ));
    }
    Ok(pk)
}

/// Strict verification: rejects non-canonical encodings and small-order keys. Keys are
/// parsed once per provider instance (`keys`).
pub fn verify(
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
    keys: &ParsedKeys<VerifyingKey>,
    counters: &Counters,
) -> Result<()> {
    counters.bump(Op::Verification);
    let pk = keys.get_or_parse(public_key, parse_public)?;
    let sig = Signature::from_slice(signature)
        .map_err(|_| PluginError::new(ErrorCode::BAD_SIGNATURE, "ed25519: malformed signature"))?;
    pk.verify_strict(message, &sig).map_err(|_| {
        PluginError::new(
            ErrorCode::BAD_SIGNATURE,
            "ed25519: signature does not verify",
        )
    })
}
