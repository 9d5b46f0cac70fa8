//! Crypto providers: named primitives behind one object.
//!
//! A provider is created by the host (the policy names it) and shared, as a
//! [`CryptoProviderArc`], with the cipher and key-agreement plugins of a group. Every
//! primitive is looked up by name; the names a provider offers are listed in its
//! [`crate::PluginMetadata`] and by [`CryptoProvider::algorithms`].
//!
//! Canonical names (lower case):
//!
//! | class | names |
//! |---|---|
//! | DH group | `modp2048`, `modp3072` (RFC 3526), `ffdhe2048`, `ffdhe3072`, `ffdhe4096` (RFC 7919), `ristretto255`, `p256` |
//! | AEAD | `aes-128-gcm`, `aes-256-gcm`, `chacha20-poly1305` |
//! | block cipher | `aes-128`, `aes-256`, `blowfish` |
//! | hash | `sha256`, `sha384`, `sha512` |
//! | MAC | `hmac-sha256`, `hmac-sha384`, `hmac-sha512` |
//! | KDF | `hkdf-sha256`, `hkdf-sha384`, `hkdf-sha512` |
//! | signature | `ed25519`, `rsa2048-pss-sha256` |
//! | RNG | `os` |
//!
//! # Encodings
//!
//! * Group elements: finite-field groups use big-endian integers padded to the byte
//!   length of `p`; Ristretto255 uses its 32-byte canonical encoding.
//! * Scalars (exponents) are opaque to callers: produced by [`DhGroup::random_scalar`],
//!   [`DhGroup::invert_scalar`] and [`DhGroup::mul_scalars`], and consumed by
//!   [`DhGroup::exp`]. They are integers modulo the prime order `q` of the group,
//!   big-endian for finite-field groups, little-endian 32 bytes for Ristretto255. Zero is
//!   never a valid scalar.

use abi_stable::{
    StableAbi, sabi_trait,
    std_types::{RArc, RBox, RResult, RSlice, RStr, RString, RVec},
};

use crate::{Algorithm, PluginResult, SecretBytes};

/// Counts of the expensive operations a provider performed, for benchmarks and for
/// comparison with the paper's tables. Counting costs one relaxed atomic add.
#[repr(C)]
#[derive(StableAbi, Copy, Clone, Default, Debug, PartialEq, Eq)]
pub struct OpCounters {
    /// DH exponentiations (scalar multiplications), fixed-base and variable-base.
    pub exponentiations: u64,
    /// Inversions of a scalar modulo the group order.
    pub inversions: u64,
    /// Validations of received group elements.
    pub validations: u64,
    /// Signatures made.
    pub signatures: u64,
    /// Signatures verified (successfully or not).
    pub verifications: u64,
    /// AEAD and block-cipher encryptions (one per call).
    pub encryptions: u64,
    /// AEAD and block-cipher decryptions (one per call).
    pub decryptions: u64,
    /// MAC computations and verifications.
    pub macs: u64,
    /// Hash computations.
    pub hashes: u64,
    /// HKDF derivations.
    pub kdfs: u64,
    /// Bytes drawn from the random number generator.
    pub random_bytes: u64,
}

impl OpCounters {
    /// Field-wise difference `self - earlier` (saturating), for measuring one operation.
    pub fn since(&self, earlier: &OpCounters) -> OpCounters {
        OpCounters {
            exponentiations: self.exponentiations.saturating_sub(earlier.exponentiations),
            inversions: self.inversions.saturating_sub(earlier.inversions),
            validations: self.validations.saturating_sub(earlier.validations),
            signatures: self.signatures.saturating_sub(earlier.signatures),
            verifications: self.verifications.saturating_sub(earlier.verifications),
            encryptions: self.encryptions.saturating_sub(earlier.encryptions),
            decryptions: self.decryptions.saturating_sub(earlier.decryptions),
            macs: self.macs.saturating_sub(earlier.macs),
            hashes: self.hashes.saturating_sub(earlier.hashes),
            kdfs: self.kdfs.saturating_sub(earlier.kdfs),
            random_bytes: self.random_bytes.saturating_sub(earlier.random_bytes),
        }
    }
}

/// A provider shared between the host and the plugins of a group.
pub type CryptoProviderArc = CryptoProvider_TO<'static, RArc<()>>;
/// Another handle to the same provider instance (shares its counters).
pub fn share_provider(provider: &CryptoProviderArc) -> CryptoProviderArc {
    CryptoProvider_TO::from_sabi(provider.obj.shallow_clone())
}

/// An owned DH group object.
pub type DhGroupBox = DhGroup_TO<'static, RBox<()>>;
/// An owned, keyed AEAD object.
pub type AeadBox = Aead_TO<'static, RBox<()>>;
/// An owned, keyed block-cipher object.
pub type BlockCipherBox = BlockCipher_TO<'static, RBox<()>>;
/// An owned, keyed MAC object.
pub type MacBox = Mac_TO<'static, RBox<()>>;
/// An owned signing key.
pub type SignerBox = Signer_TO<'static, RBox<()>>;

/// A prime-order group for Diffie-Hellman, with the operations group key agreement needs.
#[sabi_trait]
pub trait DhGroup: Send + Sync {
    /// The group's canonical name (`ffdhe2048`, `ristretto255`, ...).
    fn name(&self) -> RString;

    /// Length in bytes of an encoded group element.
    fn element_len(&self) -> usize;

    /// Length in bytes of an encoded scalar.
    fn scalar_len(&self) -> usize;

    /// The encoded generator `g`.
    fn generator(&self) -> RVec<u8>;

    /// A fresh random non-zero scalar from the provider's RNG.
    fn random_scalar(&self) -> PluginResult<SecretBytes>;

    /// `g^scalar`, with whatever fixed-base speed-up the provider has.
    fn exp_generator(&self, scalar: RSlice<'_, u8>) -> PluginResult<RVec<u8>>;

    /// `element^scalar`. The element must be well formed (but is not checked to be in
    /// the prime-order subgroup: call [`DhGroup::validate_element`] on received values).
    /// The result is returned as a secret because it often is one (a shared key).
    fn exp(&self, element: RSlice<'_, u8>, scalar: RSlice<'_, u8>) -> PluginResult<SecretBytes>;

    /// `scalar^-1 mod q`.
    fn invert_scalar(&self, scalar: RSlice<'_, u8>) -> PluginResult<SecretBytes>;

    /// `a * b mod q`.
    fn mul_scalars(&self, a: RSlice<'_, u8>, b: RSlice<'_, u8>) -> PluginResult<SecretBytes>;

    /// Checks that a received element is in the prime-order subgroup and is not the
    /// identity: out-of-range, identity and wrong-subgroup values are refused with
    /// [`crate::ErrorCode::INVALID_ELEMENT`].
    #[sabi(last_prefix_field)]
    fn validate_element(&self, element: RSlice<'_, u8>) -> PluginResult<()>;

    /// `a * b`, the group operation on two well-formed elements (not checked to be in
    /// the prime-order subgroup: validate received values first). The result is
    /// returned as a secret because in group key agreement it often is one (a
    /// Burmester-Desmedt key is a product). A product that the group's encoding cannot
    /// represent (the identity of P-256) is refused with
    /// [`crate::ErrorCode::INVALID_ELEMENT`].
    ///
    /// Added after the first version of the ABI: a provider built before it answers
    /// [`crate::ErrorCode::UNSUPPORTED`].
    fn mul_elements(&self, a: RSlice<'_, u8>, b: RSlice<'_, u8>) -> PluginResult<SecretBytes> {
        let _ = (a, b);
        RResult::RErr(crate::PluginError::unsupported(
            "this provider predates element multiplication",
        ))
    }

    /// `a^-1`, the inverse of a well-formed element (see [`DhGroup::mul_elements`]).
    ///
    /// Added after the first version of the ABI: a provider built before it answers
    /// [`crate::ErrorCode::UNSUPPORTED`].
    fn invert_element(&self, a: RSlice<'_, u8>) -> PluginResult<SecretBytes> {
        let _ = a;
        RResult::RErr(crate::PluginError::unsupported(
            "this provider predates element inversion",
        ))
    }

    /// The product of the running products of `start` and `factors`: with
    /// `a_0 = start` and `a_j = a_(j-1) * factors[j-1]`, `a_0 * a_1 * ... * a_m` for
    /// `m = factors.len()`, that is `start^(m+1) * factors[0]^m * ... * factors[m-1]`.
    /// This is a Burmester-Desmedt key from `A_0` and the round-2 values (`2m` group
    /// operations); a provider can keep the running products in its internal form and
    /// encode once, where `2m` calls of [`DhGroup::mul_elements`] decode and encode at
    /// every step. The elements are checked as `mul_elements` checks them; the result is
    /// a secret.
    ///
    /// Added in ABI 1.4: for a provider built before, this default body multiplies
    /// through [`DhGroup::mul_elements`] (and so answers `UNSUPPORTED` where that does).
    fn chain_product(
        &self,
        start: RSlice<'_, u8>,
        factors: RSlice<'_, RSlice<'_, u8>>,
    ) -> PluginResult<SecretBytes> {
        chain_product_by(
            start.as_slice(),
            factors.iter().map(|f| f.as_slice()),
            |a, b| self.mul_elements(a.into(), b.into()).into_result(),
        )
        .into()
    }
}

/// [`DhGroup::chain_product`] through a multiplication of encoded elements: the form a
/// provider without a faster one answers with.
pub fn chain_product_by<'a, E>(
    start: &[u8],
    factors: impl IntoIterator<Item = &'a [u8]>,
    mut mul: impl FnMut(&[u8], &[u8]) -> Result<SecretBytes, E>,
) -> Result<SecretBytes, E> {
    let mut a = SecretBytes::copy_from(start);
    let mut product = SecretBytes::copy_from(start);
    for f in factors {
        a = mul(a.expose(), f)?;
        product = mul(product.expose(), a.expose())?;
    }
    Ok(product)
}

/// An AEAD under one key. Objects may keep and reuse contexts, hence `&mut self`.
#[sabi_trait]
pub trait Aead: Send {
    /// The algorithm's canonical name.
    fn algorithm(&self) -> RString;

    /// Nonce length in bytes.
    fn nonce_len(&self) -> usize;

    /// Tag length in bytes (the ciphertext is `plaintext.len() + tag_len()` long).
    fn tag_len(&self) -> usize;

    /// Encrypts and authenticates; returns `ciphertext || tag`.
    fn seal(
        &mut self,
        nonce: RSlice<'_, u8>,
        aad: RSlice<'_, u8>,
        plaintext: RSlice<'_, u8>,
    ) -> PluginResult<RVec<u8>>;

    /// Verifies and decrypts `ciphertext || tag`; fails with
    /// [`crate::ErrorCode::AUTHENTICATION_FAILED`] without releasing any plaintext.
    #[sabi(last_prefix_field)]
    fn open(
        &mut self,
        nonce: RSlice<'_, u8>,
        aad: RSlice<'_, u8>,
        ciphertext: RSlice<'_, u8>,
    ) -> PluginResult<SecretBytes>;

    /// Encrypts and authenticates as [`Aead::seal`] does, appending `ciphertext || tag`
    /// to `out` (a caller's buffer, which may already hold a header): no buffer of its
    /// own, no copy. On an error `out` is left as it was.
    ///
    /// Added in ABI 1.3: for a provider built before, this default body seals and
    /// copies.
    fn seal_into(
        &mut self,
        nonce: RSlice<'_, u8>,
        aad: RSlice<'_, u8>,
        plaintext: RSlice<'_, u8>,
        out: &mut RVec<u8>,
    ) -> PluginResult<()> {
        match self.seal(nonce, aad, plaintext) {
            RResult::ROk(sealed) => {
                out.extend_from_copy_slice(&sealed);
                RResult::ROk(())
            }
            RResult::RErr(e) => RResult::RErr(e),
        }
    }

    /// Verifies and decrypts as [`Aead::open`] does, appending the plaintext to `out`.
    /// On an error `out` is left as it was: no byte of an unauthenticated plaintext
    /// stays in it.
    ///
    /// Added in ABI 1.3: for a provider built before, this default body opens and
    /// copies.
    fn open_into(
        &mut self,
        nonce: RSlice<'_, u8>,
        aad: RSlice<'_, u8>,
        ciphertext: RSlice<'_, u8>,
        out: &mut RVec<u8>,
    ) -> PluginResult<()> {
        match self.open(nonce, aad, ciphertext) {
            RResult::ROk(plaintext) => {
                out.extend_from_copy_slice(plaintext.expose());
                RResult::ROk(())
            }
            RResult::RErr(e) => RResult::RErr(e),
        }
    }
}

/// A block cipher under one key, with raw ECB and CBC (no padding: the input length
/// must be a multiple of [`BlockCipher::block_len`]).
#[sabi_trait]
pub trait BlockCipher: Send {
    /// The algorithm's canonical name.
    fn algorithm(&self) -> RString;

    /// Block length in bytes.
    fn block_len(&self) -> usize;

    /// Encrypts whole blocks independently (for known-answer tests and constructions).
    fn encrypt_ecb(&mut self, blocks: RSlice<'_, u8>) -> PluginResult<RVec<u8>>;

    /// Decrypts whole blocks independently.
    fn decrypt_ecb(&mut self, blocks: RSlice<'_, u8>) -> PluginResult<SecretBytes>;

    /// CBC encryption of whole blocks with the given IV.
    fn encrypt_cbc(&mut self, iv: RSlice<'_, u8>, data: RSlice<'_, u8>) -> PluginResult<RVec<u8>>;

    /// CBC decryption of whole blocks with the given IV.
    #[sabi(last_prefix_field)]
    fn decrypt_cbc(
        &mut self,
        iv: RSlice<'_, u8>,
        data: RSlice<'_, u8>,
    ) -> PluginResult<SecretBytes>;
}

/// A MAC under one key. The input is given as a list of parts, MACed as their
/// concatenation, so callers need not copy headers and bodies together.
#[sabi_trait]
pub trait Mac: Send {
    /// The algorithm's canonical name.
    fn algorithm(&self) -> RString;

    /// Tag length in bytes.
    fn output_len(&self) -> usize;

    /// The tag of the concatenation of `parts`.
    fn compute(&mut self, parts: RSlice<'_, RSlice<'_, u8>>) -> PluginResult<RVec<u8>>;

    /// Checks `tag` against the concatenation of `parts` in constant time; fails with
    /// [`crate::ErrorCode::AUTHENTICATION_FAILED`].
    #[sabi(last_prefix_field)]
    fn verify(
        &mut self,
        parts: RSlice<'_, RSlice<'_, u8>>,
        tag: RSlice<'_, u8>,
    ) -> PluginResult<()>;
}

/// A signing key.
#[sabi_trait]
pub trait Signer: Send + Sync {
    /// The signature algorithm's canonical name.
    fn algorithm(&self) -> RString;

    /// The encoded public key.
    fn public_key(&self) -> RVec<u8>;

    /// Signs `message`.
    #[sabi(last_prefix_field)]
    fn sign(&self, message: RSlice<'_, u8>) -> PluginResult<RVec<u8>>;
}

/// A crypto provider: the factory of every primitive, and the counter of their use.
#[sabi_trait]
pub trait CryptoProvider: Send + Sync {
    /// The provider's name (`rustcrypto`, `openssl`, ...).
    fn name(&self) -> RString;

    /// Every algorithm this provider offers.
    fn algorithms(&self) -> RVec<Algorithm>;

    /// A DH group by name.
    fn dh_group(&self, name: RStr<'_>) -> PluginResult<DhGroupBox>;

    /// An AEAD by name, keyed.
    fn aead(&self, name: RStr<'_>, key: RSlice<'_, u8>) -> PluginResult<AeadBox>;

    /// A block cipher by name, keyed.
    fn block_cipher(&self, name: RStr<'_>, key: RSlice<'_, u8>) -> PluginResult<BlockCipherBox>;

    /// The digest of the concatenation of `parts`.
    fn hash(&self, name: RStr<'_>, parts: RSlice<'_, RSlice<'_, u8>>) -> PluginResult<RVec<u8>>;

    /// A MAC by name, keyed.
    fn mac(&self, name: RStr<'_>, key: RSlice<'_, u8>) -> PluginResult<MacBox>;

    /// HKDF (RFC 5869) extract-and-expand to `len` bytes. An empty salt means none.
    fn hkdf(
        &self,
        name: RStr<'_>,
        salt: RSlice<'_, u8>,
        ikm: RSlice<'_, u8>,
        info: RSlice<'_, u8>,
        len: usize,
    ) -> PluginResult<SecretBytes>;

    /// Generates a new secret signing key, encoded as the algorithm's private-key format
    /// (the 32-byte seed for Ed25519, PKCS#8 DER for RSA).
    fn generate_signing_key(&self, name: RStr<'_>) -> PluginResult<SecretBytes>;

    /// A signer for an encoded secret key.
    fn signer(&self, name: RStr<'_>, secret_key: RSlice<'_, u8>) -> PluginResult<SignerBox>;

    /// Verifies `signature` on `message` under `public_key`; fails with
    /// [`crate::ErrorCode::BAD_SIGNATURE`].
    fn verify(
        &self,
        name: RStr<'_>,
        public_key: RSlice<'_, u8>,
        message: RSlice<'_, u8>,
        signature: RSlice<'_, u8>,
    ) -> PluginResult<()>;

    /// `len` bytes from the provider's cryptographically secure RNG.
    fn random_bytes(&self, len: usize) -> PluginResult<SecretBytes>;

    /// The counters of this provider instance.
    fn counters(&self) -> OpCounters;

    /// Sets every counter of this instance back to zero.
    #[sabi(last_prefix_field)]
    fn reset_counters(&self);
}
