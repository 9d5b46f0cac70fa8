//! AEADs, hashes, HMAC and HKDF from AWS-LC.

use std::sync::Arc;

use aws_lc_rs::{aead, digest, hkdf, hmac};
use conclave_plugin_sdk::{
    ErrorCode, PluginError, RVec, SecretBytes,
    counters::{Counters, Op},
    implement::{AeadImpl, MacImpl, open_by_into, seal_by_into},
};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

type Result<T> = std::result::Result<T, PluginError>;

/// The nonce length of every AEAD here.
const NONCE_LEN: usize = aead::NONCE_LEN;
/// The tag length of every AEAD here.
const TAG_LEN: usize = 16;

// ---------------------------------------------------------------------------------------
// AEAD

/// An AEAD keyed once: AWS-LC holds the key schedule in a context it allocates, and
/// wipes it when the context is freed.
pub struct AeadKey {
    name: &'static str,
    key: aead::LessSafeKey,
    counters: Arc<Counters>,
}

/// `aes-128-gcm`, `aes-256-gcm` or `chacha20-poly1305`, keyed.
pub fn aead(name: &str, key: &[u8], counters: Arc<Counters>) -> Result<Box<dyn AeadImpl>> {
    let (name, algorithm): (&'static str, &'static aead::Algorithm) = match name {
        "aes-128-gcm" => ("aes-128-gcm", &aead::AES_128_GCM),
        "aes-256-gcm" => ("aes-256-gcm", &aead::AES_256_GCM),
        "chacha20-poly1305" => ("chacha20-poly1305", &aead::CHACHA20_POLY1305),
        _ => return Err(PluginError::unsupported(format!("aws-lc: AEAD {name:?}"))),
    };
    let want = algorithm.key_len();
    if key.len() != want {
        return Err(PluginError::invalid_argument(format!(
            "{name}: key must be {want} bytes, got {}",
            key.len()
        )));
    }
    let unbound = aead::UnboundKey::new(algorithm, key)
        .map_err(|_| PluginError::invalid_argument(format!("{name}: key refused")))?;
    Ok(Box::new(AeadKey {
        name,
        key: aead::LessSafeKey::new(unbound),
        counters,
    }))
}

impl AeadKey {
    fn nonce(&self, nonce: &[u8]) -> Result<aead::Nonce> {
        aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| {
            PluginError::invalid_argument(format!("{}: nonce must be {NONCE_LEN} bytes", self.name))
        })
    }

    fn tag_mismatch(&self) -> PluginError {
        PluginError::new(
            ErrorCode::AUTHENTICATION_FAILED,
            format!("{}: tag mismatch (tampered or wrong key)", self.name),
        )
    }
}

impl AeadImpl for AeadKey {
    fn algorithm(&self) -> String {
        self.name.to_string()
    }

    fn nonce_len(&self) -> usize {
        NONCE_LEN
    }

    fn tag_len(&self) -> usize {
        TAG_LEN
    }

    fn seal(&mut self, nonce: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        seal_by_into(self, nonce, aad, plaintext)
    }

    fn open(&mut self, nonce: &[u8], aad: &[u8], ciphertext: &[u8]) -> Result<SecretBytes> {
        open_by_into(self, nonce, aad, ciphertext)
    }

    fn seal_into(
        &mut self,
        nonce: &[u8],
        aad: &[u8],
        plaintext: &[u8],
        out: &mut RVec<u8>,
    ) -> Result<()> {
        let nonce = self.nonce(nonce)?;
        self.counters.bump(Op::Encryption);
        let start = out.len();
        out.reserve(plaintext.len() + TAG_LEN);
        out.extend_from_copy_slice(plaintext);
        match self
            .key
            .seal_in_place_separate_tag(nonce, aead::Aad::from(aad), &mut out[start..])
        {
            Ok(tag) => {
                out.extend_from_copy_slice(tag.as_ref());
                Ok(())
            }
            Err(_) => {
                // The plaintext was copied in: wipe it before cutting back.
                out[start..].zeroize();
                out.truncate(start);
                Err(PluginError::invalid_argument(format!(
                    "{}: message or AAD too long",
                    self.name
                )))
            }
        }
    }

    fn open_into(
        &mut self,
        nonce: &[u8],
        aad: &[u8],
        ciphertext: &[u8],
        out: &mut RVec<u8>,
    ) -> Result<()> {
        let nonce = self.nonce(nonce)?;
        self.counters.bump(Op::Decryption);
        let Some(body_len) = ciphertext.len().checked_sub(TAG_LEN) else {
            return Err(self.tag_mismatch());
        };
        let (body, tag) = ciphertext.split_at(body_len);
        let start = out.len();
        out.extend_from_copy_slice(body);
        let opened = self.key.open_in_place_separate_tag(
            nonce,
            aead::Aad::from(aad),
            tag,
            &mut out[start..],
        );
        if opened.is_err() {
            // Wiped here too: this object may be called without the adapter.
            out[start..].zeroize();
            out.truncate(start);
            return Err(self.tag_mismatch());
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Hashes

/// The digest of the concatenation of `parts`.
pub fn hash(name: &str, parts: &[&[u8]], counters: &Counters) -> Result<Vec<u8>> {
    let algorithm = match name {
        "sha256" => &digest::SHA256,
        "sha384" => &digest::SHA384,
        "sha512" => &digest::SHA512,
        _ => return Err(PluginError::unsupported(format!("aws-lc: hash {name:?}"))),
    };
    let mut context = digest::Context::new(algorithm);
    for p in parts {
        context.update(p);
    }
    counters.bump(Op::Hash);
    Ok(context.finish().as_ref().to_vec())
}

// ---------------------------------------------------------------------------------------
// HMAC

/// HMAC keyed once (AWS-LC's context, wiped when freed).
pub struct HmacKey {
    name: &'static str,
    key: hmac::Key,
    counters: Arc<Counters>,
}

/// `hmac-sha256`, `hmac-sha384` or `hmac-sha512`, keyed.
pub fn hmac(name: &str, key: &[u8], counters: Arc<Counters>) -> Result<Box<dyn MacImpl>> {
    let (name, algorithm) = match name {
        "hmac-sha256" => ("hmac-sha256", hmac::HMAC_SHA256),
        "hmac-sha384" => ("hmac-sha384", hmac::HMAC_SHA384),
        "hmac-sha512" => ("hmac-sha512", hmac::HMAC_SHA512),
        _ => return Err(PluginError::unsupported(format!("aws-lc: MAC {name:?}"))),
    };
    // HMAC accepts keys of any length; an empty key is refused as a likely mistake
    // (as by every provider).
    if key.is_empty() {
        return Err(PluginError::invalid_argument(format!("{name}: empty key")));
    }
    Ok(Box::new(HmacKey {
        name,
        key: hmac::Key::new(algorithm, key),
        counters,
    }))
}

impl HmacKey {
    fn tag(&self, parts: &[&[u8]]) -> hmac::Tag {
        self.counters.bump(Op::Mac);
        let mut context = hmac::Context::with_key(&self.key);
        for p in parts {
            context.update(p);
        }
        context.sign()
    }
}

impl MacImpl for HmacKey {
    fn algorithm(&self) -> String {
        self.name.to_string()
    }

    fn output_len(&self) -> usize {
        self.key.algorithm().digest_algorithm().output_len()
    }

    fn compute(&mut self, parts: &[&[u8]]) -> Result<Vec<u8>> {
        Ok(self.tag(parts).as_ref().to_vec())
    }

    fn verify(&mut self, parts: &[&[u8]], tag: &[u8]) -> Result<()> {
        let expected = self.tag(parts);
        // Constant time in the contents; a wrong length is no secret.
        if bool::from(expected.as_ref().ct_eq(tag)) {
            Ok(())
        } else {
            Err(PluginError::new(
                ErrorCode::AUTHENTICATION_FAILED,
                format!("{}: tag mismatch", self.name),
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------
// HKDF

/// An output length for `aws-lc-rs`'s HKDF.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF extract-and-expand (RFC 5869). An empty salt is the hash length of zeros, as
/// the RFC says (HMAC pads any short key with zeros).
pub fn hkdf(
    name: &str,
    salt: &[u8],
    ikm: &[u8],
    info: &[u8],
    len: usize,
    counters: &Counters,
) -> Result<SecretBytes> {
    let algorithm = match name {
        "hkdf-sha256" => hkdf::HKDF_SHA256,
        "hkdf-sha384" => hkdf::HKDF_SHA384,
        "hkdf-sha512" => hkdf::HKDF_SHA512,
        _ => return Err(PluginError::unsupported(format!("aws-lc: KDF {name:?}"))),
    };
    let too_long = || {
        PluginError::invalid_argument(format!("{name}: {len} bytes is more than 255 hash blocks"))
    };
    let prk = hkdf::Salt::new(algorithm, salt).extract(ikm);
    let info = [info];
    let okm = prk.expand(&info, Len(len)).map_err(|_| too_long())?;
    let mut out = SecretBytes::new(vec![0u8; len]);
    okm.fill(out.expose_mut()).map_err(|_| too_long())?;
    counters.bump(Op::Kdf);
    Ok(out)
}
