//! Known-answer vectors from the standards (`vectors/standards.json`, written and
//! cross-checked by `vectors/generate.py`).

use serde::Deserialize;

/// The vector file, embedded.
pub const STANDARDS_JSON: &str = include_str!("../vectors/standards.json");

/// An AEAD vector (NIST SP 800-38D / GCM specification test cases, RFC 8439).
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct AeadVector {
    pub algorithm: String,
    pub source: String,
    pub key: String,
    pub nonce: String,
    pub aad: String,
    pub plaintext: String,
    pub ciphertext: String,
    pub tag: String,
}

/// A block-cipher vector (FIPS 197, SP 800-38A, Blowfish).
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct BlockVector {
    pub algorithm: String,
    pub source: String,
    pub mode: String,
    pub key: String,
    pub iv: String,
    pub plaintext: String,
    pub ciphertext: String,
}

/// A hash vector (FIPS 180-4).
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct HashVector {
    pub algorithm: String,
    pub source: String,
    pub message: String,
    pub digest: String,
}

/// A MAC vector (RFC 4231).
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct MacVector {
    pub algorithm: String,
    pub source: String,
    pub key: String,
    pub message: String,
    pub tag: String,
}

/// A KDF vector (RFC 5869).
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct KdfVector {
    pub algorithm: String,
    pub source: String,
    pub ikm: String,
    pub salt: String,
    pub info: String,
    pub length: usize,
    pub okm: String,
}

/// A signature vector (RFC 8032).
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct SignatureVector {
    pub algorithm: String,
    pub source: String,
    pub secret_key: String,
    pub public_key: String,
    pub message: String,
    pub signature: String,
}

/// Every vector, by class.
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)]
pub struct Standards {
    pub aead: Vec<AeadVector>,
    pub block: Vec<BlockVector>,
    pub hash: Vec<HashVector>,
    pub mac: Vec<MacVector>,
    pub kdf: Vec<KdfVector>,
    pub signature: Vec<SignatureVector>,
}

/// Parses the embedded vectors.
pub fn standards() -> Standards {
    serde_json::from_str(STANDARDS_JSON)
        .unwrap_or_else(|e| panic!("vectors/standards.json is malformed: {e}"))
}

/// Decodes hex from the vector file.
pub fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("bad hex in vectors/standards.json: {e}"))
}
