//! Signatures: Ed25519 (RFC 8032) and RSA-2048 with RSASSA-PSS.
//!
//! | name | secret key | public key | signature |
//! |---|---|---|---|
//! | `ed25519` | the 32-byte seed | 32 bytes | 64 bytes |
//! | `rsa-pss-2048` | PKCS #8 DER | SubjectPublicKeyInfo DER | 256 bytes: RSASSA-PSS, SHA-256, MGF1-SHA-256, 32-byte salt |

use std::sync::Arc;

use conclave_plugin_sdk::{
    ErrorCode, PluginError, SecretBytes,
    counters::{Counters, Op},
    implement::SignerImpl,
    key_cache::ParsedKeys,
};
use openssl::{
    hash::MessageDigest,
    pkey::{Id, PKey, Private, Public},
    rsa::{Padding, Rsa},
    sign::{RsaPssSaltlen, Signer, Verifier},
};

use crate::{Result, ossl};

/// The signature algorithms offered.
pub const ALGORITHMS: &[&str] = &["ed25519", "rsa-pss-2048"];

const RSA_BITS: u32 = 2048;

/// What OpenSSL's Ed25519 verification leaves to the caller (it accepts small-order
/// and non-canonical public keys, under which a signature with R = identity and S = 0
/// verifies): RFC 8032 section 5.1.7 decoding, strictly, as ed25519-dalek's
/// `verify_strict` does in the rustcrypto provider. The public key and R must be
/// canonical encodings of points that are not of small order; S must be reduced.
fn canonical_point(bytes: &[u8]) -> Option<curve25519_dalek::EdwardsPoint> {
    let bytes: [u8; 32] = bytes.try_into().ok()?;
    let p = curve25519_dalek::edwards::CompressedEdwardsY(bytes).decompress()?;
    (p.compress().to_bytes() == bytes).then_some(p)
}

/// The signature half of the strict checks (the key's are made once, when it is parsed).
fn strict_ed25519_signature(signature: &[u8]) -> Result<()> {
    use curve25519_dalek::scalar::Scalar;
    let bad_signature = |why| PluginError::new(ErrorCode::BAD_SIGNATURE, why);
    let r = canonical_point(&signature[..32]).ok_or_else(|| {
        bad_signature("ed25519: malformed signature (R is not a canonical point)")
    })?;
    if r.is_small_order() {
        return Err(bad_signature(
            "ed25519: malformed signature (R of small order)",
        ));
    }
    let s: [u8; 32] = signature[32..]
        .try_into()
        .map_err(|_| bad_signature("ed25519: malformed signature"))?;
    if !bool::from(Scalar::from_canonical_bytes(s).is_some()) {
        return Err(bad_signature(
            "ed25519: malformed signature (S is not reduced)",
        ));
    }
    Ok(())
}

/// An Ed25519 public key, checked strictly (32 bytes, canonical, not of small order)
/// and loaded into OpenSSL.
fn parse_ed25519(public_key: &[u8]) -> Result<PKey<Public>> {
    if public_key.len() != 32 {
        return Err(invalid_key(format_args!(
            "ed25519: public key must be 32 bytes, got {}",
            public_key.len()
        )));
    }
    let a = canonical_point(public_key)
        .ok_or_else(|| invalid_key("ed25519: invalid public key (not a canonical point)"))?;
    if a.is_small_order() {
        return Err(invalid_key(
            "ed25519: invalid public key (a point of small order)",
        ));
    }
    PKey::public_key_from_raw_bytes(public_key, Id::ED25519)
        .map_err(|_| invalid_key("ed25519: invalid public key"))
}

/// An RSA-PSS public key: SubjectPublicKeyInfo DER of a 2048-bit RSA key.
fn parse_rsa(public_key: &[u8]) -> Result<PKey<Public>> {
    let key = PKey::public_key_from_der(public_key)
        .map_err(|_| invalid_key("rsa-pss-2048: public key is not SubjectPublicKeyInfo DER"))?;
    if key.id() != Id::RSA || key.bits() != RSA_BITS {
        return Err(invalid_key(format_args!(
            "rsa-pss-2048: public key must be a {RSA_BITS}-bit RSA key"
        )));
    }
    Ok(key)
}

/// Public keys parsed once per provider instance, per algorithm.
#[derive(Default)]
pub struct VerifyingKeys {
    ed25519: ParsedKeys<PKey<Public>>,
    rsa: ParsedKeys<PKey<Public>>,
}

fn invalid_key(what: impl std::fmt::Display) -> PluginError {
    PluginError::new(ErrorCode::INVALID_KEY, what.to_string())
}

fn unsupported(name: &str) -> PluginError {
    PluginError::unsupported(format!("openssl: signature {name:?}"))
}

/// A new secret key for `name`.
pub fn generate(name: &str, counters: &Counters) -> Result<SecretBytes> {
    match name {
        "ed25519" => crate::rng::random(32, counters),
        "rsa-pss-2048" => {
            let rsa = Rsa::generate(RSA_BITS).map_err(ossl("RSA_generate_key"))?;
            let key = PKey::from_rsa(rsa).map_err(ossl("EVP_PKEY_assign"))?;
            key.private_key_to_pkcs8()
                .map(SecretBytes::new)
                .map_err(ossl("i2d_PKCS8PrivateKey"))
        }
        _ => Err(unsupported(name)),
    }
}

/// A signing key held by OpenSSL.
pub struct OsslSigner {
    name: &'static str,
    key: PKey<Private>,
    public: Vec<u8>,
    counters: Arc<Counters>,
}

/// A signer for `name` from its secret key.
pub fn signer(name: &str, secret: &[u8], counters: Arc<Counters>) -> Result<OsslSigner> {
    let (name, key, public) = match name {
        "ed25519" => {
            if secret.len() != 32 {
                return Err(invalid_key(format_args!(
                    "ed25519: secret key must be a 32-byte seed, got {} bytes",
                    secret.len()
                )));
            }
            let key = PKey::private_key_from_raw_bytes(secret, Id::ED25519)
                .map_err(|_| invalid_key("ed25519: invalid secret key"))?;
            let public = key
                .raw_public_key()
                .map_err(ossl("EVP_PKEY_get_raw_public_key"))?;
            ("ed25519", key, public)
        }
        "rsa-pss-2048" => {
            let key = PKey::private_key_from_pkcs8(secret)
                .map_err(|_| invalid_key("rsa-pss-2048: secret key is not PKCS #8 DER"))?;
            if key.id() != Id::RSA || key.bits() != RSA_BITS {
                return Err(invalid_key(format_args!(
                    "rsa-pss-2048: secret key must be a {RSA_BITS}-bit RSA key"
                )));
            }
            let public = key.public_key_to_der().map_err(ossl("i2d_PUBKEY"))?;
            ("rsa-pss-2048", key, public)
        }
        _ => return Err(unsupported(name)),
    };
    Ok(OsslSigner {
        name,
        key,
        public,
        counters,
    })
}

/// RSASSA-PSS parameters: SHA-256, MGF1-SHA-256, a salt as long as the digest.
trait PssParams {
    fn pss(&mut self) -> Result<()>;
}

impl PssParams for Signer<'_> {
    fn pss(&mut self) -> Result<()> {
        self.set_rsa_padding(Padding::PKCS1_PSS)
            .and_then(|_| self.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH))
            .and_then(|_| self.set_rsa_mgf1_md(MessageDigest::sha256()))
            .map_err(ossl("RSA-PSS parameters"))
    }
}

impl PssParams for Verifier<'_> {
    fn pss(&mut self) -> Result<()> {
        self.set_rsa_padding(Padding::PKCS1_PSS)
            .and_then(|_| self.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH))
            .and_then(|_| self.set_rsa_mgf1_md(MessageDigest::sha256()))
            .map_err(ossl("RSA-PSS parameters"))
    }
}

impl SignerImpl for OsslSigner {
    fn algorithm(&self) -> String {
        self.name.into()
    }

    fn public_key(&self) -> Vec<u8> {
        self.public.clone()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        self.counters.bump(Op::Signature);
        if self.name == "ed25519" {
            let mut s =
                Signer::new_without_digest(&self.key).map_err(ossl("EVP_DigestSignInit"))?;
            s.sign_oneshot_to_vec(message)
                .map_err(ossl("EVP_DigestSign"))
        } else {
            let mut s = Signer::new(MessageDigest::sha256(), &self.key)
                .map_err(ossl("EVP_DigestSignInit"))?;
            s.pss()?;
            s.update(message).map_err(ossl("EVP_DigestSignUpdate"))?;
            s.sign_to_vec().map_err(ossl("EVP_DigestSignFinal"))
        }
    }
}

fn bad_signature(name: &str) -> PluginError {
    PluginError::new(
        ErrorCode::BAD_SIGNATURE,
        format!("{name}: signature does not verify"),
    )
}

/// Verifies `signature` over `message` under `public_key`.
pub fn verify(
    name: &str,
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
    keys: &VerifyingKeys,
    counters: &Counters,
) -> Result<()> {
    counters.bump(Op::Verification);
    let ok = match name {
        "ed25519" => {
            let key = keys.ed25519.get_or_parse(public_key, parse_ed25519)?;
            if signature.len() != 64 {
                return Err(PluginError::new(
                    ErrorCode::BAD_SIGNATURE,
                    "ed25519: malformed signature",
                ));
            }
            strict_ed25519_signature(signature)?;
            let mut v = Verifier::new_without_digest(&key).map_err(ossl("EVP_DigestVerifyInit"))?;
            v.verify_oneshot(signature, message).unwrap_or(false)
        }
        "rsa-pss-2048" => {
            let key = keys.rsa.get_or_parse(public_key, parse_rsa)?;
            let mut v = Verifier::new(MessageDigest::sha256(), &key)
                .map_err(ossl("EVP_DigestVerifyInit"))?;
            v.pss()?;
            v.update(message).map_err(ossl("EVP_DigestVerifyUpdate"))?;
            v.verify(signature).unwrap_or(false)
        }
        _ => return Err(unsupported(name)),
    };
    // A failed verification leaves entries on OpenSSL's per-thread error queue.
    let _ = openssl::error::ErrorStack::get();
    if ok { Ok(()) } else { Err(bad_signature(name)) }
}
