//! AEADs, block ciphers, hashes, HMAC and HKDF through OpenSSL's EVP interfaces.
//!
//! Ciphers are fetched once per key object and keyed once: every message re-initialises
//! the same `EVP_CIPHER_CTX` with only a new nonce or IV, so the key schedule is not
//! redone per message.

use std::sync::{Arc, OnceLock};

use conclave_plugin_sdk::{
    ErrorCode, PluginError, RVec, SecretBytes,
    counters::{Counters, Op},
    implement::{AeadImpl, BlockCipherImpl, MacImpl, open_by_into, seal_by_into},
};
use openssl::{
    cipher::Cipher,
    cipher_ctx::CipherCtx,
    hash::{Hasher, MessageDigest},
    md::Md,
    pkey::{Id, PKey, Private},
    pkey_ctx::PkeyCtx,
    provider::Provider,
    sign::Signer,
};

use crate::{Result, ossl};

fn bad_key(name: &str, want: &str, got: usize) -> PluginError {
    PluginError::invalid_argument(format!("{name}: key must be {want} bytes, got {got}"))
}

fn fetch(name: &str) -> Result<Cipher> {
    Cipher::fetch(None, name, None).map_err(ossl("EVP_CIPHER_fetch"))
}

/// OpenSSL's legacy provider, loaded once beside the default one (Blowfish lives there).
fn legacy() -> std::result::Result<(), &'static str> {
    static LEGACY: OnceLock<std::result::Result<Provider, String>> = OnceLock::new();
    LEGACY
        .get_or_init(|| Provider::try_load(None, "legacy", true).map_err(|e| e.to_string()))
        .as_ref()
        .map(drop)
        .map_err(String::as_str)
}

/// Whether Blowfish can be used: OpenSSL's legacy provider loads and offers it.
pub fn blowfish_available() -> bool {
    legacy().is_ok() && Cipher::fetch(None, "BF-ECB", None).is_ok()
}

fn fetch_blowfish(mode: &str) -> Result<Cipher> {
    legacy().map_err(|e| {
        PluginError::unsupported(format!(
            "blowfish needs OpenSSL's legacy provider (legacy.so), which could not be \
             loaded: {e}; install it or point OPENSSL_MODULES at its directory"
        ))
    })?;
    fetch(mode)
}

// ---------------------------------------------------------------------------------------
// AEAD

/// An AEAD keyed once, with one context per direction.
pub struct OsslAead {
    name: &'static str,
    enc: CipherCtx,
    dec: CipherCtx,
    counters: Arc<Counters>,
}

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// `aes-128-gcm`, `aes-256-gcm` or `chacha20-poly1305`, keyed.
pub fn aead(name: &str, key: &[u8], counters: Arc<Counters>) -> Result<Box<dyn AeadImpl>> {
    let (name, evp, key_len) = match name {
        "aes-128-gcm" => ("aes-128-gcm", "AES-128-GCM", 16),
        "aes-256-gcm" => ("aes-256-gcm", "AES-256-GCM", 32),
        "chacha20-poly1305" => ("chacha20-poly1305", "ChaCha20-Poly1305", 32),
        _ => return Err(PluginError::unsupported(format!("AEAD {name:?}"))),
    };
    if key.len() != key_len {
        return Err(bad_key(name, &key_len.to_string(), key.len()));
    }
    let cipher = fetch(evp)?;
    let mut enc = CipherCtx::new().map_err(ossl("EVP_CIPHER_CTX_new"))?;
    enc.encrypt_init(Some(&cipher), Some(key), None)
        .map_err(ossl("EVP_EncryptInit"))?;
    let mut dec = CipherCtx::new().map_err(ossl("EVP_CIPHER_CTX_new"))?;
    dec.decrypt_init(Some(&cipher), Some(key), None)
        .map_err(ossl("EVP_DecryptInit"))?;
    Ok(Box::new(OsslAead {
        name,
        enc,
        dec,
        counters,
    }))
}

impl OsslAead {
    fn check_nonce(&self, nonce: &[u8]) -> Result<()> {
        if nonce.len() != NONCE_LEN {
            return Err(PluginError::invalid_argument(format!(
                "{}: nonce must be {NONCE_LEN} bytes, got {}",
                self.name,
                nonce.len()
            )));
        }
        Ok(())
    }

    fn auth_failed(&self) -> PluginError {
        PluginError::new(
            ErrorCode::AUTHENTICATION_FAILED,
            format!("{}: tag mismatch (tampered or wrong key)", self.name),
        )
    }
}

impl AeadImpl for OsslAead {
    fn algorithm(&self) -> String {
        self.name.into()
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
        self.check_nonce(nonce)?;
        let ctx = &mut self.enc;
        ctx.encrypt_init(None, None, Some(nonce))
            .map_err(ossl("EVP_EncryptInit"))?;
        if !aad.is_empty() {
            ctx.cipher_update(aad, None)
                .map_err(ossl("EVP_EncryptUpdate"))?;
        }
        let start = out.len();
        out.reserve(plaintext.len() + TAG_LEN);
        // GCM and ChaCha20-Poly1305 are stream modes: the output is as long as the
        // input, written over it by the update.
        out.extend_from_copy_slice(plaintext);
        let written = ctx
            .cipher_update_inplace(&mut out[start..], plaintext.len())
            .map_err(ossl("EVP_EncryptUpdate"))?;
        let mut tail = [0u8; TAG_LEN];
        let more = ctx
            .cipher_final(&mut tail)
            .map_err(ossl("EVP_EncryptFinal"))?;
        out.truncate(start + written);
        out.extend_from_copy_slice(&tail[..more]);
        ctx.tag(&mut tail).map_err(ossl("EVP_CTRL_AEAD_GET_TAG"))?;
        out.extend_from_copy_slice(&tail);
        self.counters.bump(Op::Encryption);
        Ok(())
    }

    fn open_into(
        &mut self,
        nonce: &[u8],
        aad: &[u8],
        ciphertext: &[u8],
        out: &mut RVec<u8>,
    ) -> Result<()> {
        self.check_nonce(nonce)?;
        let Some(body_len) = ciphertext.len().checked_sub(TAG_LEN) else {
            return Err(self.auth_failed());
        };
        let (body, tag) = ciphertext.split_at(body_len);
        self.counters.bump(Op::Decryption);
        let ctx = &mut self.dec;
        ctx.decrypt_init(None, None, Some(nonce))
            .map_err(ossl("EVP_DecryptInit"))?;
        ctx.set_tag(tag).map_err(ossl("EVP_CTRL_AEAD_SET_TAG"))?;
        if !aad.is_empty() {
            ctx.cipher_update(aad, None)
                .map_err(ossl("EVP_DecryptUpdate"))?;
        }
        let start = out.len();
        out.extend_from_copy_slice(body);
        // Unauthenticated plaintext, wiped below if the tag turns out wrong.
        let written = ctx
            .cipher_update_inplace(&mut out[start..], body.len())
            .map_err(ossl("EVP_DecryptUpdate"))?;
        out.truncate(start + written);
        let mut tail = [0u8; TAG_LEN];
        match ctx.cipher_final(&mut tail) {
            Ok(more) => {
                out.extend_from_copy_slice(&tail[..more]);
                Ok(())
            }
            Err(_) => {
                // Wiped here too: this object may be called without the adapter.
                zeroize::Zeroize::zeroize(&mut out[start..]);
                out.truncate(start);
                Err(self.auth_failed())
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Block ciphers

/// A block cipher with raw ECB and CBC (no padding), keyed once per mode and direction.
pub struct OsslBlock {
    name: &'static str,
    block: usize,
    ecb_enc: CipherCtx,
    ecb_dec: CipherCtx,
    cbc_enc: CipherCtx,
    cbc_dec: CipherCtx,
    counters: Arc<Counters>,
}

fn keyed(cipher: &Cipher, key: &[u8], encrypt: bool) -> Result<CipherCtx> {
    let mut ctx = CipherCtx::new().map_err(ossl("EVP_CIPHER_CTX_new"))?;
    if encrypt {
        ctx.encrypt_init(Some(cipher), None, None)
    } else {
        ctx.decrypt_init(Some(cipher), None, None)
    }
    .map_err(ossl("EVP_CipherInit"))?;
    if ctx.key_length() != key.len() {
        ctx.set_key_length(key.len())
            .map_err(ossl("EVP_CIPHER_CTX_set_key_length"))?;
    }
    if encrypt {
        ctx.encrypt_init(None, Some(key), None)
    } else {
        ctx.decrypt_init(None, Some(key), None)
    }
    .map_err(ossl("EVP_CipherInit"))?;
    ctx.set_padding(false);
    Ok(ctx)
}

/// `aes-128`, `aes-256` or `blowfish` (keys of 4 to 56 bytes), keyed.
pub fn block(name: &str, key: &[u8], counters: Arc<Counters>) -> Result<Box<dyn BlockCipherImpl>> {
    let (name, ecb, cbc, block) = match name {
        "aes-128" if key.len() != 16 => return Err(bad_key(name, "16", key.len())),
        "aes-256" if key.len() != 32 => return Err(bad_key(name, "32", key.len())),
        "blowfish" if !(4..=56).contains(&key.len()) => {
            return Err(bad_key(name, "4 to 56", key.len()));
        }
        "aes-128" => ("aes-128", fetch("AES-128-ECB")?, fetch("AES-128-CBC")?, 16),
        "aes-256" => ("aes-256", fetch("AES-256-ECB")?, fetch("AES-256-CBC")?, 16),
        "blowfish" => (
            "blowfish",
            fetch_blowfish("BF-ECB")?,
            fetch_blowfish("BF-CBC")?,
            8,
        ),
        _ => return Err(PluginError::unsupported(format!("block cipher {name:?}"))),
    };
    Ok(Box::new(OsslBlock {
        name,
        block,
        ecb_enc: keyed(&ecb, key, true)?,
        ecb_dec: keyed(&ecb, key, false)?,
        cbc_enc: keyed(&cbc, key, true)?,
        cbc_dec: keyed(&cbc, key, false)?,
        counters,
    }))
}

impl OsslBlock {
    fn check(&self, data: &[u8], iv: Option<&[u8]>) -> Result<()> {
        if !data.len().is_multiple_of(self.block) {
            return Err(PluginError::invalid_argument(format!(
                "{}: data length {} is not a multiple of the {}-byte block",
                self.name,
                data.len(),
                self.block
            )));
        }
        if iv.is_some_and(|iv| iv.len() != self.block) {
            return Err(PluginError::invalid_argument(format!(
                "{}: IV must be {} bytes",
                self.name, self.block
            )));
        }
        Ok(())
    }
}

fn run(ctx: &mut CipherCtx, encrypt: bool, iv: Option<&[u8]>, data: &[u8]) -> Result<Vec<u8>> {
    if encrypt {
        ctx.encrypt_init(None, None, iv)
    } else {
        ctx.decrypt_init(None, None, iv)
    }
    .map_err(ossl("EVP_CipherInit"))?;
    let mut out = Vec::with_capacity(data.len() + 32);
    ctx.cipher_update_vec(data, &mut out)
        .map_err(ossl("EVP_CipherUpdate"))?;
    ctx.cipher_final_vec(&mut out)
        .map_err(ossl("EVP_CipherFinal"))?;
    Ok(out)
}

impl BlockCipherImpl for OsslBlock {
    fn algorithm(&self) -> String {
        self.name.into()
    }

    fn block_len(&self) -> usize {
        self.block
    }

    fn encrypt_ecb(&mut self, blocks: &[u8]) -> Result<Vec<u8>> {
        self.check(blocks, None)?;
        self.counters.bump(Op::Encryption);
        run(&mut self.ecb_enc, true, None, blocks)
    }

    fn decrypt_ecb(&mut self, blocks: &[u8]) -> Result<SecretBytes> {
        self.check(blocks, None)?;
        self.counters.bump(Op::Decryption);
        run(&mut self.ecb_dec, false, None, blocks).map(SecretBytes::new)
    }

    fn encrypt_cbc(&mut self, iv: &[u8], data: &[u8]) -> Result<Vec<u8>> {
        self.check(data, Some(iv))?;
        self.counters.bump(Op::Encryption);
        run(&mut self.cbc_enc, true, Some(iv), data)
    }

    fn decrypt_cbc(&mut self, iv: &[u8], data: &[u8]) -> Result<SecretBytes> {
        self.check(data, Some(iv))?;
        self.counters.bump(Op::Decryption);
        run(&mut self.cbc_dec, false, Some(iv), data).map(SecretBytes::new)
    }
}

// ---------------------------------------------------------------------------------------
// Hashes

fn digest(name: &str) -> Option<(MessageDigest, &'static openssl::md::MdRef)> {
    match name {
        "sha256" | "hmac-sha256" | "hkdf-sha256" => Some((MessageDigest::sha256(), Md::sha256())),
        "sha384" | "hmac-sha384" | "hkdf-sha384" => Some((MessageDigest::sha384(), Md::sha384())),
        "sha512" | "hmac-sha512" | "hkdf-sha512" => Some((MessageDigest::sha512(), Md::sha512())),
        _ => None,
    }
}

/// The digest of the concatenation of `parts`.
pub fn hash(name: &str, parts: &[&[u8]], counters: &Counters) -> Result<Vec<u8>> {
    let (md, _) = digest(name)
        .filter(|_| name.starts_with("sha"))
        .ok_or_else(|| PluginError::unsupported(format!("hash {name:?}")))?;
    let mut h = Hasher::new(md).map_err(ossl("EVP_DigestInit"))?;
    for p in parts {
        h.update(p).map_err(ossl("EVP_DigestUpdate"))?;
    }
    let out = h.finish().map_err(ossl("EVP_DigestFinal"))?;
    counters.bump(Op::Hash);
    Ok(out.to_vec())
}

// ---------------------------------------------------------------------------------------
// HMAC

/// HMAC with its key held in an OpenSSL key object.
pub struct OsslHmac {
    name: &'static str,
    md: MessageDigest,
    key: PKey<Private>,
    counters: Arc<Counters>,
}

/// `hmac-sha256`, `hmac-sha384` or `hmac-sha512`, keyed.
pub fn hmac(name: &str, key: &[u8], counters: Arc<Counters>) -> Result<Box<dyn MacImpl>> {
    let (name, md) = match (name, digest(name)) {
        ("hmac-sha256", Some((md, _))) => ("hmac-sha256", md),
        ("hmac-sha384", Some((md, _))) => ("hmac-sha384", md),
        ("hmac-sha512", Some((md, _))) => ("hmac-sha512", md),
        _ => return Err(PluginError::unsupported(format!("MAC {name:?}"))),
    };
    if key.is_empty() {
        return Err(PluginError::invalid_argument(format!("{name}: empty key")));
    }
    Ok(Box::new(OsslHmac {
        name,
        md,
        key: PKey::hmac(key).map_err(ossl("EVP_PKEY_new_mac_key"))?,
        counters,
    }))
}

impl OsslHmac {
    fn tag(&self, parts: &[&[u8]]) -> Result<Vec<u8>> {
        self.counters.bump(Op::Mac);
        let mut s = Signer::new(self.md, &self.key).map_err(ossl("EVP_DigestSignInit"))?;
        for p in parts {
            s.update(p).map_err(ossl("EVP_DigestSignUpdate"))?;
        }
        s.sign_to_vec().map_err(ossl("EVP_DigestSignFinal"))
    }
}

impl MacImpl for OsslHmac {
    fn algorithm(&self) -> String {
        self.name.into()
    }

    fn output_len(&self) -> usize {
        self.md.size()
    }

    fn compute(&mut self, parts: &[&[u8]]) -> Result<Vec<u8>> {
        self.tag(parts)
    }

    fn verify(&mut self, parts: &[&[u8]], tag: &[u8]) -> Result<()> {
        let want = self.tag(parts)?;
        // `memcmp::eq` is constant-time but requires equal lengths.
        if want.len() == tag.len() && openssl::memcmp::eq(&want, tag) {
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

/// HKDF extract-and-expand (RFC 5869).
pub fn hkdf(
    name: &str,
    salt: &[u8],
    ikm: &[u8],
    info: &[u8],
    len: usize,
    counters: &Counters,
) -> Result<SecretBytes> {
    let (md, evp_md) = digest(name)
        .filter(|_| name.starts_with("hkdf-"))
        .ok_or_else(|| PluginError::unsupported(format!("KDF {name:?}")))?;
    if len > 255 * md.size() {
        return Err(PluginError::invalid_argument(format!(
            "{name}: {len} bytes is more than 255 hash blocks"
        )));
    }
    let mut okm = SecretBytes::new(vec![0u8; len]);
    if len == 0 {
        return Ok(okm);
    }
    let mut ctx = PkeyCtx::new_id(Id::HKDF).map_err(ossl("EVP_PKEY_CTX_new_id"))?;
    ctx.derive_init().map_err(ossl("EVP_PKEY_derive_init"))?;
    ctx.set_hkdf_md(evp_md)
        .map_err(ossl("EVP_PKEY_CTX_set_hkdf_md"))?;
    ctx.set_hkdf_key(ikm)
        .map_err(ossl("EVP_PKEY_CTX_set1_hkdf_key"))?;
    if !salt.is_empty() {
        ctx.set_hkdf_salt(salt)
            .map_err(ossl("EVP_PKEY_CTX_set1_hkdf_salt"))?;
    }
    if !info.is_empty() {
        ctx.add_hkdf_info(info)
            .map_err(ossl("EVP_PKEY_CTX_add1_hkdf_info"))?;
    }
    ctx.derive(Some(okm.expose_mut()))
        .map_err(ossl("EVP_PKEY_derive"))?;
    counters.bump(Op::Kdf);
    Ok(okm)
}
