//! Typed handles over plugin objects, for the code that *uses* them.
//!
//! These wrap the ABI trait objects with Rust signatures (`&[u8]`, `Result`). The host
//! uses them for everything it gets from plugins, and plugins use [`Provider`] to reach
//! the primitives of the provider they were given.

use std::fmt;

use abi_stable::std_types::{RSlice, RStr, RVec};
use conclave_plugin_api::{
    Algorithm, PluginError, SecretBytes, abi_stable,
    cipher::{GroupCipherBox, OpenedHeader, OpenedMessage},
    key_agreement::{Action, KeyAgreementBox, KeyAgreementStats, MembershipView},
    provider::{
        AeadBox, BlockCipherBox, CryptoProviderArc, DhGroupBox, MacBox, OpCounters, SignerBox,
        share_provider,
    },
};

type Result<T> = std::result::Result<T, PluginError>;

fn rs(b: &[u8]) -> RSlice<'_, u8> {
    RSlice::from_slice(b)
}

fn rstr(s: &str) -> RStr<'_> {
    RStr::from_str(s)
}

/// A handle to a provider instance; clones share the instance and its counters.
pub struct Provider {
    inner: CryptoProviderArc,
}

impl Clone for Provider {
    fn clone(&self) -> Self {
        Self {
            inner: share_provider(&self.inner),
        }
    }
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name())
            .finish()
    }
}

impl Provider {
    /// Wraps an ABI provider object.
    pub fn from_abi(inner: CryptoProviderArc) -> Self {
        Self { inner }
    }

    /// Another ABI handle to the same instance, to pass to a plugin constructor.
    pub fn to_abi(&self) -> CryptoProviderArc {
        share_provider(&self.inner)
    }

    /// The provider's name.
    pub fn name(&self) -> String {
        self.inner.name().into()
    }

    /// Every algorithm offered.
    pub fn algorithms(&self) -> Vec<Algorithm> {
        self.inner.algorithms().into()
    }

    /// A DH group.
    pub fn dh_group(&self, name: &str) -> Result<DhGroup> {
        self.inner
            .dh_group(rstr(name))
            .into_result()
            .map(|inner| DhGroup { inner })
    }

    /// A keyed AEAD.
    pub fn aead(&self, name: &str, key: &[u8]) -> Result<Aead> {
        self.inner
            .aead(rstr(name), rs(key))
            .into_result()
            .map(|inner| Aead { inner })
    }

    /// A keyed block cipher.
    pub fn block_cipher(&self, name: &str, key: &[u8]) -> Result<BlockCipher> {
        self.inner
            .block_cipher(rstr(name), rs(key))
            .into_result()
            .map(|inner| BlockCipher { inner })
    }

    /// The digest of the concatenation of `parts`.
    pub fn hash(&self, name: &str, parts: &[&[u8]]) -> Result<Vec<u8>> {
        let parts: Vec<RSlice<'_, u8>> = parts.iter().map(|p| rs(p)).collect();
        self.inner
            .hash(rstr(name), RSlice::from_slice(&parts))
            .into_result()
            .map(Into::into)
    }

    /// A keyed MAC.
    pub fn mac(&self, name: &str, key: &[u8]) -> Result<Mac> {
        self.inner
            .mac(rstr(name), rs(key))
            .into_result()
            .map(|inner| Mac { inner })
    }

    /// HKDF extract-and-expand.
    pub fn hkdf(
        &self,
        name: &str,
        salt: &[u8],
        ikm: &[u8],
        info: &[u8],
        len: usize,
    ) -> Result<SecretBytes> {
        self.inner
            .hkdf(rstr(name), rs(salt), rs(ikm), rs(info), len)
            .into_result()
    }

    /// A new secret signing key.
    pub fn generate_signing_key(&self, name: &str) -> Result<SecretBytes> {
        self.inner.generate_signing_key(rstr(name)).into_result()
    }

    /// A signer for an encoded secret key.
    pub fn signer(&self, name: &str, secret_key: &[u8]) -> Result<Signer> {
        self.inner
            .signer(rstr(name), rs(secret_key))
            .into_result()
            .map(|inner| Signer { inner })
    }

    /// Verifies a signature.
    pub fn verify(
        &self,
        name: &str,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        self.inner
            .verify(rstr(name), rs(public_key), rs(message), rs(signature))
            .into_result()
    }

    /// Random bytes.
    pub fn random_bytes(&self, len: usize) -> Result<SecretBytes> {
        self.inner.random_bytes(len).into_result()
    }

    /// The instance's counters.
    pub fn counters(&self) -> OpCounters {
        self.inner.counters()
    }

    /// Resets the instance's counters.
    pub fn reset_counters(&self) {
        self.inner.reset_counters()
    }
}

/// A DH group from a provider.
pub struct DhGroup {
    inner: DhGroupBox,
}

impl fmt::Debug for DhGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DhGroup")
            .field("name", &self.name())
            .finish()
    }
}

impl DhGroup {
    /// Canonical name.
    pub fn name(&self) -> String {
        self.inner.name().into()
    }
    /// Encoded element length.
    pub fn element_len(&self) -> usize {
        self.inner.element_len()
    }
    /// Encoded scalar length.
    pub fn scalar_len(&self) -> usize {
        self.inner.scalar_len()
    }
    /// Encoded generator.
    pub fn generator(&self) -> Vec<u8> {
        self.inner.generator().into()
    }
    /// Random non-zero scalar.
    pub fn random_scalar(&self) -> Result<SecretBytes> {
        self.inner.random_scalar().into_result()
    }
    /// `g^scalar`.
    pub fn exp_generator(&self, scalar: &[u8]) -> Result<Vec<u8>> {
        self.inner
            .exp_generator(rs(scalar))
            .into_result()
            .map(Into::into)
    }
    /// `element^scalar`.
    pub fn exp(&self, element: &[u8], scalar: &[u8]) -> Result<SecretBytes> {
        self.inner.exp(rs(element), rs(scalar)).into_result()
    }
    /// `scalar^-1 mod q`.
    pub fn invert_scalar(&self, scalar: &[u8]) -> Result<SecretBytes> {
        self.inner.invert_scalar(rs(scalar)).into_result()
    }
    /// `a * b mod q`.
    pub fn mul_scalars(&self, a: &[u8], b: &[u8]) -> Result<SecretBytes> {
        self.inner.mul_scalars(rs(a), rs(b)).into_result()
    }
    /// Validates a received element.
    pub fn validate_element(&self, element: &[u8]) -> Result<()> {
        self.inner.validate_element(rs(element)).into_result()
    }
    /// `a * b` (`UNSUPPORTED` from a provider built before ABI 1.2).
    pub fn mul_elements(&self, a: &[u8], b: &[u8]) -> Result<SecretBytes> {
        self.inner.mul_elements(rs(a), rs(b)).into_result()
    }
    /// `a^-1` (`UNSUPPORTED` from a provider built before ABI 1.2).
    pub fn invert_element(&self, a: &[u8]) -> Result<SecretBytes> {
        self.inner.invert_element(rs(a)).into_result()
    }
    /// The product of the running products of `start` and `factors`: with `a_0 =
    /// start` and `a_j = a_(j-1) * factors[j-1]`, `a_0 * ... * a_m` (a Burmester-Desmedt
    /// key). From a provider built before ABI 1.4, `2m` multiplications through
    /// [`DhGroup::mul_elements`].
    pub fn chain_product(&self, start: &[u8], factors: &[&[u8]]) -> Result<SecretBytes> {
        let factors: Vec<RSlice<'_, u8>> = factors.iter().map(|f| rs(f)).collect();
        self.inner
            .chain_product(rs(start), RSlice::from_slice(&factors))
            .into_result()
    }
}

/// A keyed AEAD from a provider.
pub struct Aead {
    inner: AeadBox,
}

impl Aead {
    /// Canonical name.
    pub fn algorithm(&self) -> String {
        self.inner.algorithm().into()
    }
    /// Nonce length.
    pub fn nonce_len(&self) -> usize {
        self.inner.nonce_len()
    }
    /// Tag length.
    pub fn tag_len(&self) -> usize {
        self.inner.tag_len()
    }
    /// `ciphertext || tag`.
    pub fn seal(&mut self, nonce: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        self.inner
            .seal(rs(nonce), rs(aad), rs(plaintext))
            .into_result()
            .map(Into::into)
    }
    /// Verifies and decrypts.
    pub fn open(&mut self, nonce: &[u8], aad: &[u8], ciphertext: &[u8]) -> Result<SecretBytes> {
        self.inner
            .open(rs(nonce), rs(aad), rs(ciphertext))
            .into_result()
    }
    /// Appends `ciphertext || tag` to `out`; on an error `out` is as it was.
    pub fn seal_into(
        &mut self,
        nonce: &[u8],
        aad: &[u8],
        plaintext: &[u8],
        out: &mut RVec<u8>,
    ) -> Result<()> {
        self.inner
            .seal_into(rs(nonce), rs(aad), rs(plaintext), out)
            .into_result()
    }
    /// Verifies and decrypts, appending the plaintext to `out`; on an error `out` is
    /// as it was.
    pub fn open_into(
        &mut self,
        nonce: &[u8],
        aad: &[u8],
        ciphertext: &[u8],
        out: &mut RVec<u8>,
    ) -> Result<()> {
        self.inner
            .open_into(rs(nonce), rs(aad), rs(ciphertext), out)
            .into_result()
    }
}

/// A keyed block cipher from a provider.
pub struct BlockCipher {
    inner: BlockCipherBox,
}

impl BlockCipher {
    /// Canonical name.
    pub fn algorithm(&self) -> String {
        self.inner.algorithm().into()
    }
    /// Block length.
    pub fn block_len(&self) -> usize {
        self.inner.block_len()
    }
    /// ECB encryption of whole blocks.
    pub fn encrypt_ecb(&mut self, blocks: &[u8]) -> Result<Vec<u8>> {
        self.inner
            .encrypt_ecb(rs(blocks))
            .into_result()
            .map(Into::into)
    }
    /// ECB decryption of whole blocks.
    pub fn decrypt_ecb(&mut self, blocks: &[u8]) -> Result<SecretBytes> {
        self.inner.decrypt_ecb(rs(blocks)).into_result()
    }
    /// CBC encryption of whole blocks.
    pub fn encrypt_cbc(&mut self, iv: &[u8], data: &[u8]) -> Result<Vec<u8>> {
        self.inner
            .encrypt_cbc(rs(iv), rs(data))
            .into_result()
            .map(Into::into)
    }
    /// CBC decryption of whole blocks.
    pub fn decrypt_cbc(&mut self, iv: &[u8], data: &[u8]) -> Result<SecretBytes> {
        self.inner.decrypt_cbc(rs(iv), rs(data)).into_result()
    }
}

/// A keyed MAC from a provider.
pub struct Mac {
    inner: MacBox,
}

impl Mac {
    /// Canonical name.
    pub fn algorithm(&self) -> String {
        self.inner.algorithm().into()
    }
    /// Tag length.
    pub fn output_len(&self) -> usize {
        self.inner.output_len()
    }
    /// Tag of the concatenation of `parts`.
    pub fn compute(&mut self, parts: &[&[u8]]) -> Result<Vec<u8>> {
        let parts: Vec<RSlice<'_, u8>> = parts.iter().map(|p| rs(p)).collect();
        self.inner
            .compute(RSlice::from_slice(&parts))
            .into_result()
            .map(Into::into)
    }
    /// Constant-time tag check.
    pub fn verify(&mut self, parts: &[&[u8]], tag: &[u8]) -> Result<()> {
        let parts: Vec<RSlice<'_, u8>> = parts.iter().map(|p| rs(p)).collect();
        self.inner
            .verify(RSlice::from_slice(&parts), rs(tag))
            .into_result()
    }
}

/// A signing key from a provider.
pub struct Signer {
    inner: SignerBox,
}

impl Signer {
    /// Canonical name.
    pub fn algorithm(&self) -> String {
        self.inner.algorithm().into()
    }
    /// Encoded public key.
    pub fn public_key(&self) -> Vec<u8> {
        self.inner.public_key().into()
    }
    /// Signs a message.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        self.inner.sign(rs(message)).into_result().map(Into::into)
    }
}

/// A group cipher from a cipher plugin.
pub struct Cipher {
    inner: GroupCipherBox,
    /// [`Cipher::overhead`], asked once (it sizes buffers at every send).
    overhead: usize,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cipher")
            .field("algorithm", &self.algorithm())
            .finish()
    }
}

impl Cipher {
    /// Wraps an ABI cipher object.
    pub fn from_abi(inner: GroupCipherBox) -> Self {
        let overhead = inner.overhead();
        Self { inner, overhead }
    }
    /// Canonical name.
    pub fn algorithm(&self) -> String {
        self.inner.algorithm().into()
    }
    /// Group key length.
    pub fn key_len(&self) -> usize {
        self.inner.key_len()
    }
    /// Maximum bytes added by sealing (asked of the plugin once, when it was wrapped: the
    /// bound is the object's for its life, and only sizes buffers).
    pub fn overhead(&self) -> usize {
        self.overhead
    }
    /// Installs an epoch's key.
    pub fn install_key(&mut self, epoch: u64, key: &[u8]) -> Result<()> {
        self.inner.install_key(epoch, rs(key)).into_result()
    }
    /// Wipes an epoch's key.
    pub fn retire_key(&mut self, epoch: u64) -> bool {
        self.inner.retire_key(epoch)
    }
    /// Seals from the local member under `epoch`.
    pub fn seal(&mut self, epoch: u64, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        self.inner
            .seal(epoch, rs(aad), rs(plaintext))
            .into_result()
            .map(Into::into)
    }
    /// Opens a message from `sender`.
    pub fn open(&mut self, sender: &str, aad: &[u8], sealed: &[u8]) -> Result<OpenedMessage> {
        self.inner
            .open(rstr(sender), rs(aad), rs(sealed))
            .into_result()
    }
    /// Seals from the local member under `epoch`, appending the sealed message to
    /// `out` (which may already hold a frame header): the zero-copy form of
    /// [`Cipher::seal`]. On an error `out` is as it was.
    pub fn seal_into(
        &mut self,
        epoch: u64,
        aad: &[u8],
        plaintext: &[u8],
        out: &mut RVec<u8>,
    ) -> Result<()> {
        self.inner
            .seal_into(epoch, rs(aad), rs(plaintext), out)
            .into_result()
    }
    /// Opens a message from `sender`, appending its plaintext to `out`: the zero-copy
    /// form of [`Cipher::open`]. On an error `out` is as it was.
    pub fn open_into(
        &mut self,
        sender: &str,
        aad: &[u8],
        sealed: &[u8],
        out: &mut RVec<u8>,
    ) -> Result<OpenedHeader> {
        self.inner
            .open_into(rstr(sender), rs(aad), rs(sealed), out)
            .into_result()
    }
}

/// A key-agreement state machine from a key-agreement plugin.
pub struct KeyAgreement {
    inner: KeyAgreementBox,
}

impl KeyAgreement {
    /// Wraps an ABI key-agreement object.
    pub fn from_abi(inner: KeyAgreementBox) -> Self {
        Self { inner }
    }
    /// Canonical name.
    pub fn algorithm(&self) -> String {
        self.inner.algorithm().into()
    }
    /// Feeds a view.
    pub fn on_view(&mut self, view: &MembershipView) -> Result<Vec<Action>> {
        self.inner.on_view(view).into_result().map(Into::into)
    }
    /// Feeds a protocol message.
    pub fn on_message(&mut self, sender: &str, payload: &[u8]) -> Result<Vec<Action>> {
        self.inner
            .on_message(rstr(sender), rs(payload))
            .into_result()
            .map(Into::into)
    }
    /// Asks for a key refresh.
    pub fn refresh(&mut self) -> Result<Vec<Action>> {
        self.inner.refresh().into_result().map(Into::into)
    }
    /// Counters.
    pub fn stats(&self) -> KeyAgreementStats {
        self.inner.stats()
    }
}
