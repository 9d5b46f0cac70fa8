//! AEADs, block ciphers, hashes, HMAC and HKDF from the RustCrypto crates.

use std::sync::Arc;

use aes_gcm::{
    Aes128Gcm, Aes256Gcm,
    aead::{AeadCore, AeadInOut, KeyInit, Nonce, Tag},
};
use cbc::cipher::{
    Array, BlockCipherDecrypt, BlockCipherEncrypt, BlockModeDecrypt, BlockModeEncrypt,
    BlockSizeUser, InnerIvInit,
};
use chacha20poly1305::ChaCha20Poly1305;
use conclave_plugin_sdk::{
    ErrorCode, PluginError, RVec, SecretBytes,
    counters::{Counters, Op},
    implement::{AeadImpl, BlockCipherImpl, MacImpl, open_by_into, seal_by_into},
};
use hmac::Hmac;
use sha2::{Digest, Sha256, Sha384, Sha512};
use zeroize::Zeroize;

type Result<T> = std::result::Result<T, PluginError>;

fn bad_key(name: &str, want: usize, got: usize) -> PluginError {
    PluginError::new(
        ErrorCode::INVALID_ARGUMENT,
        format!("{name}: key must be {want} bytes, got {got}"),
    )
}

// ---------------------------------------------------------------------------------------
// AEAD

/// An AEAD with a key schedule made once per key.
pub struct AeadCipher<C> {
    name: &'static str,
    cipher: C,
    counters: Arc<Counters>,
}

/// `aes-128-gcm`, `aes-256-gcm` or `chacha20-poly1305`, keyed.
pub fn aead(name: &str, key: &[u8], counters: Arc<Counters>) -> Result<Box<dyn AeadImpl>> {
    match name {
        "aes-128-gcm" => Ok(Box::new(AeadCipher {
            name: "aes-128-gcm",
            cipher: Aes128Gcm::new_from_slice(key).map_err(|_| bad_key(name, 16, key.len()))?,
            counters,
        })),
        "aes-256-gcm" => Ok(Box::new(AeadCipher {
            name: "aes-256-gcm",
            cipher: Aes256Gcm::new_from_slice(key).map_err(|_| bad_key(name, 32, key.len()))?,
            counters,
        })),
        "chacha20-poly1305" => Ok(Box::new(AeadCipher {
            name: "chacha20-poly1305",
            cipher: ChaCha20Poly1305::new_from_slice(key)
                .map_err(|_| bad_key(name, 32, key.len()))?,
            counters,
        })),
        _ => Err(PluginError::unsupported(format!("AEAD {name:?}"))),
    }
}

impl<C> AeadImpl for AeadCipher<C>
where
    C: AeadInOut + AeadCore + Send,
{
    fn algorithm(&self) -> String {
        self.name.to_string()
    }

    fn nonce_len(&self) -> usize {
        12
    }

    fn tag_len(&self) -> usize {
        16
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
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce, aad, (&mut out[start..]).into())
            .map_err(|_| {
                PluginError::invalid_argument(format!("{}: message or AAD too long", self.name))
            })?;
        out.extend_from_copy_slice(&tag);
        Ok(())
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
        let tag = Tag::<C>::try_from(tag).map_err(|_| self.tag_mismatch())?;
        let start = out.len();
        out.extend_from_copy_slice(body);
        let opened =
            self.cipher
                .decrypt_inout_detached(&nonce, aad, (&mut out[start..]).into(), &tag);
        if opened.is_err() {
            // Wiped here too: this object may be called without the adapter.
            out[start..].zeroize();
            out.truncate(start);
            return Err(self.tag_mismatch());
        }
        Ok(())
    }
}

/// The tag length of every AEAD here.
const TAG_LEN: usize = 16;

impl<C: AeadCore> AeadCipher<C> {
    fn nonce(&self, nonce: &[u8]) -> Result<Nonce<C>> {
        Nonce::<C>::try_from(nonce).map_err(|_| {
            PluginError::invalid_argument(format!("{}: nonce must be 12 bytes", self.name))
        })
    }

    fn tag_mismatch(&self) -> PluginError {
        PluginError::new(
            ErrorCode::AUTHENTICATION_FAILED,
            format!("{}: tag mismatch (tampered or wrong key)", self.name),
        )
    }
}

// ---------------------------------------------------------------------------------------
// Block ciphers

/// A block cipher with raw ECB and CBC, key schedule made once.
pub struct Block<C> {
    name: &'static str,
    cipher: C,
    counters: Arc<Counters>,
}

/// `aes-128`, `aes-256` or `blowfish` (keys of 4 to 56 bytes), keyed.
pub fn block(name: &str, key: &[u8], counters: Arc<Counters>) -> Result<Box<dyn BlockCipherImpl>> {
    match name {
        "aes-128" => Ok(Box::new(Block {
            name: "aes-128",
            cipher: aes::Aes128::new_from_slice(key).map_err(|_| bad_key(name, 16, key.len()))?,
            counters,
        })),
        "aes-256" => Ok(Box::new(Block {
            name: "aes-256",
            cipher: aes::Aes256::new_from_slice(key).map_err(|_| bad_key(name, 32, key.len()))?,
            counters,
        })),
        "blowfish" => Ok(Box::new(Block {
            name: "blowfish",
            cipher: <blowfish::Blowfish>::new_from_slice(key).map_err(|_| {
                PluginError::invalid_argument(format!(
                    "blowfish: key must be 4 to 56 bytes, got {}",
                    key.len()
                ))
            })?,
            counters,
        })),
        _ => Err(PluginError::unsupported(format!("block cipher {name:?}"))),
    }
}

impl<C> Block<C>
where
    C: BlockSizeUser,
{
    fn check_len(&self, data: &[u8]) -> Result<()> {
        let bs = C::block_size();
        if !data.len().is_multiple_of(bs) {
            return Err(PluginError::invalid_argument(format!(
                "{}: data length {} is not a multiple of the {bs}-byte block",
                self.name,
                data.len()
            )));
        }
        Ok(())
    }
}

impl<C> BlockCipherImpl for Block<C>
where
    C: BlockCipherEncrypt + BlockCipherDecrypt + Clone + Send,
{
    fn algorithm(&self) -> String {
        self.name.to_string()
    }

    fn block_len(&self) -> usize {
        C::block_size()
    }

    fn encrypt_ecb(&mut self, blocks: &[u8]) -> Result<Vec<u8>> {
        self.check_len(blocks)?;
        self.counters.bump(Op::Encryption);
        let mut buf = blocks.to_vec();
        let (chunks, _) = Array::slice_as_chunks_mut(&mut buf);
        self.cipher.encrypt_blocks(chunks);
        Ok(buf)
    }

    fn decrypt_ecb(&mut self, blocks: &[u8]) -> Result<SecretBytes> {
        self.check_len(blocks)?;
        self.counters.bump(Op::Decryption);
        let mut buf = SecretBytes::copy_from(blocks);
        let (chunks, _) = Array::slice_as_chunks_mut(buf.expose_mut());
        self.cipher.decrypt_blocks(chunks);
        Ok(buf)
    }

    fn encrypt_cbc(&mut self, iv: &[u8], data: &[u8]) -> Result<Vec<u8>> {
        self.check_len(data)?;
        let mut mode = cbc::Encryptor::<C>::inner_iv_slice_init(self.cipher.clone(), iv)
            .map_err(|_| PluginError::invalid_argument(format!("{}: bad IV length", self.name)))?;
        self.counters.bump(Op::Encryption);
        let mut buf = data.to_vec();
        let (chunks, _) = Array::slice_as_chunks_mut(&mut buf);
        mode.encrypt_blocks(chunks);
        Ok(buf)
    }

    fn decrypt_cbc(&mut self, iv: &[u8], data: &[u8]) -> Result<SecretBytes> {
        self.check_len(data)?;
        let mut mode = cbc::Decryptor::<C>::inner_iv_slice_init(self.cipher.clone(), iv)
            .map_err(|_| PluginError::invalid_argument(format!("{}: bad IV length", self.name)))?;
        self.counters.bump(Op::Decryption);
        let mut buf = SecretBytes::copy_from(data);
        let (chunks, _) = Array::slice_as_chunks_mut(buf.expose_mut());
        mode.decrypt_blocks(chunks);
        Ok(buf)
    }
}

// ---------------------------------------------------------------------------------------
// Hashes

/// The digest of the concatenation of `parts`.
pub fn hash(name: &str, parts: &[&[u8]], counters: &Counters) -> Result<Vec<u8>> {
    fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
        let mut d = D::new();
        for p in parts {
            d.update(p);
        }
        d.finalize().to_vec()
    }
    let out = match name {
        "sha256" => run::<Sha256>(parts),
        "sha384" => run::<Sha384>(parts),
        "sha512" => run::<Sha512>(parts),
        _ => return Err(PluginError::unsupported(format!("hash {name:?}"))),
    };
    counters.bump(Op::Hash);
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// HMAC

/// HMAC keyed once: each computation clones the keyed state.
pub struct HmacKeyed<M> {
    name: &'static str,
    keyed: M,
    counters: Arc<Counters>,
}

/// `hmac-sha256`, `hmac-sha384` or `hmac-sha512`, keyed.
pub fn hmac(name: &str, key: &[u8], counters: Arc<Counters>) -> Result<Box<dyn MacImpl>> {
    // HMAC accepts keys of any length; an empty key is refused as a likely mistake.
    if key.is_empty() {
        return Err(PluginError::invalid_argument(format!("{name}: empty key")));
    }
    let err = |_| PluginError::invalid_argument(format!("{name}: bad key"));
    match name {
        "hmac-sha256" => Ok(Box::new(HmacKeyed {
            name: "hmac-sha256",
            keyed: <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key).map_err(err)?,
            counters,
        })),
        "hmac-sha384" => Ok(Box::new(HmacKeyed {
            name: "hmac-sha384",
            keyed: <Hmac<Sha384> as hmac::KeyInit>::new_from_slice(key).map_err(err)?,
            counters,
        })),
        "hmac-sha512" => Ok(Box::new(HmacKeyed {
            name: "hmac-sha512",
            keyed: <Hmac<Sha512> as hmac::KeyInit>::new_from_slice(key).map_err(err)?,
            counters,
        })),
        _ => Err(PluginError::unsupported(format!("MAC {name:?}"))),
    }
}

impl<M> MacImpl for HmacKeyed<M>
where
    M: hmac::Mac + Clone + Send,
{
    fn algorithm(&self) -> String {
        self.name.to_string()
    }

    fn output_len(&self) -> usize {
        <M as hmac::digest::OutputSizeUser>::output_size()
    }

    fn compute(&mut self, parts: &[&[u8]]) -> Result<Vec<u8>> {
        self.counters.bump(Op::Mac);
        let mut m = self.keyed.clone();
        for p in parts {
            m.update(p);
        }
        Ok(m.finalize().into_bytes().to_vec())
    }

    fn verify(&mut self, parts: &[&[u8]], tag: &[u8]) -> Result<()> {
        self.counters.bump(Op::Mac);
        let mut m = self.keyed.clone();
        for p in parts {
            m.update(p);
        }
        m.verify_slice(tag).map_err(|_| {
            PluginError::new(
                ErrorCode::AUTHENTICATION_FAILED,
                format!("{}: tag mismatch", self.name),
            )
        })
    }
}

// ---------------------------------------------------------------------------------------
// HKDF

/// HKDF extract-and-expand (RFC 5869).
pub fn hkdf(
    name: &str,
    salt: &[u8],
    ikm: &[u8],
    info: &[u8],
    len: usize,
    counters: &Counters,
) -> Result<SecretBytes> {
    let salt = (!salt.is_empty()).then_some(salt);
    let mut okm = SecretBytes::new(vec![0u8; len]);
    let too_long = |_| {
        PluginError::invalid_argument(format!("{name}: {len} bytes is more than 255 hash blocks"))
    };
    match name {
        "hkdf-sha256" => hkdf::Hkdf::<Sha256>::new(salt, ikm)
            .expand(info, okm.expose_mut())
            .map_err(too_long)?,
        "hkdf-sha384" => hkdf::Hkdf::<Sha384>::new(salt, ikm)
            .expand(info, okm.expose_mut())
            .map_err(too_long)?,
        "hkdf-sha512" => hkdf::Hkdf::<Sha512>::new(salt, ikm)
            .expand(info, okm.expose_mut())
            .map_err(too_long)?,
        _ => return Err(PluginError::unsupported(format!("KDF {name:?}"))),
    }
    counters.bump(Op::Kdf);
    Ok(okm)
}
