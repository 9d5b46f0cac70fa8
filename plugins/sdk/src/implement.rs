//! Plain Rust traits that plugins implement, and their adapters to the ABI.
//!
//! Implement [`Plugin`] for a marker type, implement the object traits of your plugin's
//! kind, and call [`export_plugin!`](crate::export_plugin). Every call that comes through
//! the ABI is wrapped in `catch_unwind`; a panic becomes an error and poisons the object.

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, RSlice, RStr, RString, RVec},
};
use conclave_plugin_api::{
    Algorithm, ErrorCode, Options, PluginError, PluginKind, PluginResult, ProviderConfig,
    SecretBytes, abi_stable,
    cipher::{
        CipherConfig, GroupCipher, GroupCipher_TO, GroupCipherBox, OpenedHeader, OpenedMessage,
    },
    key_agreement::{
        Action, KeyAgreement, KeyAgreement_TO, KeyAgreementBox, KeyAgreementConfig,
        KeyAgreementStats, MembershipView,
    },
    provider::{
        Aead, Aead_TO, AeadBox, BlockCipher, BlockCipher_TO, BlockCipherBox, CryptoProvider,
        CryptoProvider_TO, CryptoProviderArc, DhGroup, DhGroup_TO, DhGroupBox, Mac, Mac_TO, MacBox,
        OpCounters, Signer, Signer_TO, SignerBox,
    },
};

use crate::guard::Poisonable;

type Result<T> = std::result::Result<T, PluginError>;

/// A plugin: its identity and the constructor of its kind.
///
/// Only the constructor matching [`Plugin::KIND`] is exported; the defaults of the others
/// are never called.
pub trait Plugin: 'static {
    /// Unique name (`aes-gcm`, `rustcrypto`, ...).
    const NAME: &'static str;
    /// The plugin's version (semver); usually `env!("CARGO_PKG_VERSION")`.
    const VERSION: &'static str;
    /// Its kind.
    const KIND: PluginKind;
    /// One line for listings.
    const DESCRIPTION: &'static str;

    /// The algorithms the plugin offers.
    fn algorithms() -> Vec<Algorithm>;

    /// Checks the options the policy gives this plugin (`options.NAME = { ... }`): the
    /// host calls it during `conclave policy check` and before every constructor. The
    /// default accepts none: a plugin that takes options overrides it, and refuses the
    /// ones it does not know with `ErrorCode::BAD_CONFIG`, naming them.
    fn check_options(options: &Options) -> Result<()> {
        match options.entries.first() {
            None => Ok(()),
            Some(e) => Err(PluginError::new(
                ErrorCode::BAD_CONFIG,
                format!(
                    "{} takes no options (the policy sets \"{}\")",
                    Self::NAME,
                    e.key
                ),
            )),
        }
    }

    /// Creates a provider instance (provider plugins).
    fn new_provider(_config: &ProviderConfig) -> Result<Box<dyn ProviderImpl>> {
        Err(PluginError::unsupported("this plugin is not a provider"))
    }

    /// Creates a cipher instance (cipher plugins).
    fn new_cipher(_config: &CipherConfig) -> Result<Box<dyn GroupCipherImpl>> {
        Err(PluginError::unsupported("this plugin is not a cipher"))
    }

    /// Creates a key-agreement instance (key-agreement plugins).
    fn new_key_agreement(_config: &KeyAgreementConfig) -> Result<Box<dyn KeyAgreementImpl>> {
        Err(PluginError::unsupported(
            "this plugin is not a key agreement",
        ))
    }
}

/// A DH group; see [`conclave_plugin_api::provider::DhGroup`] for the contract.
pub trait DhGroupImpl: Send + Sync {
    /// Canonical name.
    fn name(&self) -> String;
    /// Encoded element length.
    fn element_len(&self) -> usize;
    /// Encoded scalar length.
    fn scalar_len(&self) -> usize;
    /// Encoded generator.
    fn generator(&self) -> Vec<u8>;
    /// Random non-zero scalar.
    fn random_scalar(&self) -> Result<SecretBytes>;
    /// `g^scalar`.
    fn exp_generator(&self, scalar: &[u8]) -> Result<Vec<u8>>;
    /// `element^scalar`.
    fn exp(&self, element: &[u8], scalar: &[u8]) -> Result<SecretBytes>;
    /// `scalar^-1 mod q`.
    fn invert_scalar(&self, scalar: &[u8]) -> Result<SecretBytes>;
    /// `a * b mod q`.
    fn mul_scalars(&self, a: &[u8], b: &[u8]) -> Result<SecretBytes>;
    /// Subgroup membership and non-identity check.
    fn validate_element(&self, element: &[u8]) -> Result<()>;
    /// `a * b` (the group operation). Defaults to `UNSUPPORTED`, so that a provider
    /// written before ABI 1.2 still builds; protocols that need it (`bd`) then refuse to
    /// start with that error.
    fn mul_elements(&self, a: &[u8], b: &[u8]) -> Result<SecretBytes> {
        let _ = (a, b);
        Err(PluginError::unsupported(format!(
            "{}: element multiplication",
            self.name()
        )))
    }
    /// `a^-1`. Defaults to `UNSUPPORTED` (see [`DhGroupImpl::mul_elements`]).
    fn invert_element(&self, a: &[u8]) -> Result<SecretBytes> {
        let _ = a;
        Err(PluginError::unsupported(format!(
            "{}: element inversion",
            self.name()
        )))
    }
    /// The product of the running products of `start` and `factors` (a
    /// Burmester-Desmedt key; see the ABI's `DhGroup::chain_product`). Defaults to `2m`
    /// calls of [`DhGroupImpl::mul_elements`]; a group whose elements cost something to
    /// decode and encode does better by keeping the running products decoded.
    fn chain_product(&self, start: &[u8], factors: &[&[u8]]) -> Result<SecretBytes> {
        crate::api::provider::chain_product_by(start, factors.iter().copied(), |a, b| {
            self.mul_elements(a, b)
        })
    }
}

/// A keyed AEAD.
pub trait AeadImpl: Send {
    /// Canonical name.
    fn algorithm(&self) -> String;
    /// Nonce length.
    fn nonce_len(&self) -> usize;
    /// Tag length.
    fn tag_len(&self) -> usize;
    /// Returns `ciphertext || tag`.
    fn seal(&mut self, nonce: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>>;
    /// Verifies and decrypts.
    fn open(&mut self, nonce: &[u8], aad: &[u8], ciphertext: &[u8]) -> Result<SecretBytes>;
    /// Appends `ciphertext || tag` to `out` (a caller's buffer). The default seals
    /// with [`AeadImpl::seal`] and copies; a provider that can encrypt into the buffer
    /// overrides it. On an error the adapter cuts `out` back to its length.
    fn seal_into(
        &mut self,
        nonce: &[u8],
        aad: &[u8],
        plaintext: &[u8],
        out: &mut RVec<u8>,
    ) -> Result<()> {
        out.extend_from_copy_slice(&self.seal(nonce, aad, plaintext)?);
        Ok(())
    }
    /// Appends the plaintext to `out`. The default opens with [`AeadImpl::open`] and
    /// copies. On an error the adapter wipes what was appended and cuts `out` back.
    fn open_into(
        &mut self,
        nonce: &[u8],
        aad: &[u8],
        ciphertext: &[u8],
        out: &mut RVec<u8>,
    ) -> Result<()> {
        out.extend_from_copy_slice(self.open(nonce, aad, ciphertext)?.expose());
        Ok(())
    }
}

/// A keyed block cipher (raw ECB and CBC on whole blocks).
pub trait BlockCipherImpl: Send {
    /// Canonical name.
    fn algorithm(&self) -> String;
    /// Block length.
    fn block_len(&self) -> usize;
    /// ECB encryption of whole blocks.
    fn encrypt_ecb(&mut self, blocks: &[u8]) -> Result<Vec<u8>>;
    /// ECB decryption of whole blocks.
    fn decrypt_ecb(&mut self, blocks: &[u8]) -> Result<SecretBytes>;
    /// CBC encryption of whole blocks.
    fn encrypt_cbc(&mut self, iv: &[u8], data: &[u8]) -> Result<Vec<u8>>;
    /// CBC decryption of whole blocks.
    fn decrypt_cbc(&mut self, iv: &[u8], data: &[u8]) -> Result<SecretBytes>;
}

/// A keyed MAC.
pub trait MacImpl: Send {
    /// Canonical name.
    fn algorithm(&self) -> String;
    /// Tag length.
    fn output_len(&self) -> usize;
    /// Tag of the concatenation of `parts`.
    fn compute(&mut self, parts: &[&[u8]]) -> Result<Vec<u8>>;
    /// Constant-time check of `tag`.
    fn verify(&mut self, parts: &[&[u8]], tag: &[u8]) -> Result<()>;
}

/// A signing key.
pub trait SignerImpl: Send + Sync {
    /// Canonical name.
    fn algorithm(&self) -> String;
    /// Encoded public key.
    fn public_key(&self) -> Vec<u8>;
    /// Signs a message.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>>;
}

/// A crypto provider. Every factory defaults to "unsupported".
pub trait ProviderImpl: Send + Sync + 'static {
    /// The provider's name.
    fn name(&self) -> String;
    /// The algorithms offered.
    fn algorithms(&self) -> Vec<Algorithm>;
    /// A DH group.
    fn dh_group(&self, name: &str) -> Result<Box<dyn DhGroupImpl>> {
        Err(PluginError::unsupported(format!("DH group {name:?}")))
    }
    /// A keyed AEAD.
    fn aead(&self, name: &str, _key: &[u8]) -> Result<Box<dyn AeadImpl>> {
        Err(PluginError::unsupported(format!("AEAD {name:?}")))
    }
    /// A keyed block cipher.
    fn block_cipher(&self, name: &str, _key: &[u8]) -> Result<Box<dyn BlockCipherImpl>> {
        Err(PluginError::unsupported(format!("block cipher {name:?}")))
    }
    /// A digest.
    fn hash(&self, name: &str, _parts: &[&[u8]]) -> Result<Vec<u8>> {
        Err(PluginError::unsupported(format!("hash {name:?}")))
    }
    /// A keyed MAC.
    fn mac(&self, name: &str, _key: &[u8]) -> Result<Box<dyn MacImpl>> {
        Err(PluginError::unsupported(format!("MAC {name:?}")))
    }
    /// HKDF.
    fn hkdf(
        &self,
        name: &str,
        _salt: &[u8],
        _ikm: &[u8],
        _info: &[u8],
        _len: usize,
    ) -> Result<SecretBytes> {
        Err(PluginError::unsupported(format!("KDF {name:?}")))
    }
    /// A new signing key.
    fn generate_signing_key(&self, name: &str) -> Result<SecretBytes> {
        Err(PluginError::unsupported(format!("signature {name:?}")))
    }
    /// A signer from an encoded secret key.
    fn signer(&self, name: &str, _secret_key: &[u8]) -> Result<Box<dyn SignerImpl>> {
        Err(PluginError::unsupported(format!("signature {name:?}")))
    }
    /// Signature verification.
    fn verify(
        &self,
        name: &str,
        _public_key: &[u8],
        _message: &[u8],
        _signature: &[u8],
    ) -> Result<()> {
        Err(PluginError::unsupported(format!("signature {name:?}")))
    }
    /// Random bytes.
    fn random_bytes(&self, len: usize) -> Result<SecretBytes>;
    /// Counters.
    fn counters(&self) -> OpCounters;
    /// Resets the counters.
    fn reset_counters(&self);
}

/// A group cipher; see [`conclave_plugin_api::cipher::GroupCipher`] for the contract.
pub trait GroupCipherImpl: Send {
    /// Canonical name.
    fn algorithm(&self) -> String;
    /// Group key length.
    fn key_len(&self) -> usize;
    /// Maximum bytes added by sealing.
    fn overhead(&self) -> usize;
    /// Installs an epoch's key.
    fn install_key(&mut self, epoch: u64, key: &[u8]) -> Result<()>;
    /// Wipes an epoch's key.
    fn retire_key(&mut self, epoch: u64) -> bool;
    /// Seals from the local member.
    fn seal(&mut self, epoch: u64, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>>;
    /// Opens a message from `sender`.
    fn open(&mut self, sender: &str, aad: &[u8], sealed: &[u8]) -> Result<OpenedMessage>;
    /// Appends the sealed message to `out`. The default seals with
    /// [`GroupCipherImpl::seal`] and copies. On an error the adapter cuts `out` back.
    fn seal_into(
        &mut self,
        epoch: u64,
        aad: &[u8],
        plaintext: &[u8],
        out: &mut RVec<u8>,
    ) -> Result<()> {
        out.extend_from_copy_slice(&self.seal(epoch, aad, plaintext)?);
        Ok(())
    }
    /// Appends the plaintext of a message from `sender` to `out`. The default opens
    /// with [`GroupCipherImpl::open`] and copies. On an error the adapter wipes what was
    /// appended and cuts `out` back.
    fn open_into(
        &mut self,
        sender: &str,
        aad: &[u8],
        sealed: &[u8],
        out: &mut RVec<u8>,
    ) -> Result<OpenedHeader> {
        let opened = self.open(sender, aad, sealed)?;
        out.extend_from_copy_slice(&opened.plaintext);
        Ok(OpenedHeader {
            epoch: opened.epoch,
            sequence: opened.sequence,
        })
    }
}

/// A key-agreement state machine; see
/// [`conclave_plugin_api::key_agreement::KeyAgreement`] for the contract.
pub trait KeyAgreementImpl: Send {
    /// Canonical name.
    fn algorithm(&self) -> String;
    /// A new view.
    fn on_view(&mut self, view: &MembershipView) -> Result<Vec<Action>>;
    /// A protocol message.
    fn on_message(&mut self, sender: &str, payload: &[u8]) -> Result<Vec<Action>>;
    /// A key refresh request.
    fn refresh(&mut self) -> Result<Vec<Action>>;
    /// Counters.
    fn stats(&self) -> KeyAgreementStats;
}

// ---------------------------------------------------------------------------------------
// Adapters: native object -> ABI object, every call guarded.

struct G<T: ?Sized>(Poisonable<Box<T>>);

impl<T: ?Sized> G<T> {
    fn new(inner: Box<T>) -> Self {
        Self(Poisonable::new(inner))
    }
}

fn parts<'a>(parts: &'a RSlice<'_, RSlice<'_, u8>>) -> Vec<&'a [u8]> {
    parts.iter().map(|p| p.as_slice()).collect()
}

/// Wraps a native DH group into an ABI object.
pub fn dh_group_to_abi(g: Box<dyn DhGroupImpl>) -> DhGroupBox {
    DhGroup_TO::from_value(G::new(g), TD_Opaque)
}

impl DhGroup for G<dyn DhGroupImpl> {
    fn name(&self) -> RString {
        self.0.get(String::new(), |g| g.name()).into()
    }
    fn element_len(&self) -> usize {
        self.0.get(0, |g| g.element_len())
    }
    fn scalar_len(&self) -> usize {
        self.0.get(0, |g| g.scalar_len())
    }
    fn generator(&self) -> RVec<u8> {
        self.0.get(Vec::new(), |g| g.generator()).into()
    }
    fn random_scalar(&self) -> PluginResult<SecretBytes> {
        self.0.call(|g| g.random_scalar())
    }
    fn exp_generator(&self, scalar: RSlice<'_, u8>) -> PluginResult<RVec<u8>> {
        self.0.call(|g| g.exp_generator(&scalar).map(RVec::from))
    }
    fn exp(&self, element: RSlice<'_, u8>, scalar: RSlice<'_, u8>) -> PluginResult<SecretBytes> {
        self.0.call(|g| g.exp(&element, &scalar))
    }
    fn invert_scalar(&self, scalar: RSlice<'_, u8>) -> PluginResult<SecretBytes> {
        self.0.call(|g| g.invert_scalar(&scalar))
    }
    fn mul_scalars(&self, a: RSlice<'_, u8>, b: RSlice<'_, u8>) -> PluginResult<SecretBytes> {
        self.0.call(|g| g.mul_scalars(&a, &b))
    }
    fn validate_element(&self, element: RSlice<'_, u8>) -> PluginResult<()> {
        self.0.call(|g| g.validate_element(&element))
    }
    fn mul_elements(&self, a: RSlice<'_, u8>, b: RSlice<'_, u8>) -> PluginResult<SecretBytes> {
        self.0.call(|g| g.mul_elements(&a, &b))
    }
    fn invert_element(&self, a: RSlice<'_, u8>) -> PluginResult<SecretBytes> {
        self.0.call(|g| g.invert_element(&a))
    }
    fn chain_product(
        &self,
        start: RSlice<'_, u8>,
        factors: RSlice<'_, RSlice<'_, u8>>,
    ) -> PluginResult<SecretBytes> {
        let factors: Vec<&[u8]> = factors.iter().map(|f| f.as_slice()).collect();
        self.0.call(|g| g.chain_product(&start, &factors))
    }
}

/// Wraps a native AEAD into an ABI object.
pub fn aead_to_abi(a: Box<dyn AeadImpl>) -> AeadBox {
    Aead_TO::from_value(G::new(a), TD_Opaque)
}

impl Aead for G<dyn AeadImpl> {
    fn algorithm(&self) -> RString {
        self.0.get(String::new(), |a| a.algorithm()).into()
    }
    fn nonce_len(&self) -> usize {
        self.0.get(0, |a| a.nonce_len())
    }
    fn tag_len(&self) -> usize {
        self.0.get(0, |a| a.tag_len())
    }
    fn seal(
        &mut self,
        nonce: RSlice<'_, u8>,
        aad: RSlice<'_, u8>,
        plaintext: RSlice<'_, u8>,
    ) -> PluginResult<RVec<u8>> {
        self.0
            .call_mut(|a| a.seal(&nonce, &aad, &plaintext).map(RVec::from))
    }
    fn open(
        &mut self,
        nonce: RSlice<'_, u8>,
        aad: RSlice<'_, u8>,
        ciphertext: RSlice<'_, u8>,
    ) -> PluginResult<SecretBytes> {
        self.0.call_mut(|a| a.open(&nonce, &aad, &ciphertext))
    }
    fn seal_into(
        &mut self,
        nonce: RSlice<'_, u8>,
        aad: RSlice<'_, u8>,
        plaintext: RSlice<'_, u8>,
        out: &mut RVec<u8>,
    ) -> PluginResult<()> {
        let len = out.len();
        let r = self
            .0
            .call_mut(|a| a.seal_into(&nonce, &aad, &plaintext, &mut *out));
        restore_on_error(r, out, len)
    }
    fn open_into(
        &mut self,
        nonce: RSlice<'_, u8>,
        aad: RSlice<'_, u8>,
        ciphertext: RSlice<'_, u8>,
        out: &mut RVec<u8>,
    ) -> PluginResult<()> {
        let len = out.len();
        let r = self
            .0
            .call_mut(|a| a.open_into(&nonce, &aad, &ciphertext, &mut *out));
        restore_on_error(r, out, len)
    }
}

/// The `*_into` contract, kept whatever the implementation did: on an error (or a
/// panic) the bytes appended to `out` are wiped and cut off.
fn restore_on_error<R>(r: PluginResult<R>, out: &mut RVec<u8>, len: usize) -> PluginResult<R> {
    if r.is_err() {
        wipe_from(out, len);
    }
    r
}

/// [`AeadImpl::seal`] for a provider whose [`AeadImpl::seal_into`] encrypts in the
/// caller's buffer: seals into a buffer of its own (`fn seal(..) { seal_by_into(self,
/// ..) }`).
pub fn seal_by_into<A: AeadImpl + ?Sized>(
    aead: &mut A,
    nonce: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let mut out = RVec::with_capacity(plaintext.len() + aead.tag_len());
    aead.seal_into(nonce, aad, plaintext, &mut out)?;
    Ok(out.into_vec())
}

/// [`AeadImpl::open`] for a provider whose [`AeadImpl::open_into`] decrypts in the
/// caller's buffer. The buffer is wiped if the open fails (whatever the provider did),
/// so it only ever hands out a plaintext, as [`SecretBytes`].
pub fn open_by_into<A: AeadImpl + ?Sized>(
    aead: &mut A,
    nonce: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<SecretBytes> {
    let mut out = RVec::with_capacity(ciphertext.len());
    if let Err(e) = aead.open_into(nonce, aad, ciphertext, &mut out) {
        wipe_from(&mut out, 0);
        return Err(e);
    }
    Ok(SecretBytes::new(out.into_vec()))
}

/// Wipes and cuts off what lies in `out` past `len` (an `*_into` call that failed).
pub(crate) fn wipe_from(out: &mut RVec<u8>, len: usize) {
    if out.len() > len {
        zeroize::Zeroize::zeroize(&mut out[len..]);
        out.truncate(len);
    }
}

/// Wraps a native block cipher into an ABI object.
pub fn block_cipher_to_abi(b: Box<dyn BlockCipherImpl>) -> BlockCipherBox {
    BlockCipher_TO::from_value(G::new(b), TD_Opaque)
}

impl BlockCipher for G<dyn BlockCipherImpl> {
    fn algorithm(&self) -> RString {
        self.0.get(String::new(), |b| b.algorithm()).into()
    }
    fn block_len(&self) -> usize {
        self.0.get(0, |b| b.block_len())
    }
    fn encrypt_ecb(&mut self, blocks: RSlice<'_, u8>) -> PluginResult<RVec<u8>> {
        self.0.call_mut(|b| b.encrypt_ecb(&blocks).map(RVec::from))
    }
    fn decrypt_ecb(&mut self, blocks: RSlice<'_, u8>) -> PluginResult<SecretBytes> {
        self.0.call_mut(|b| b.decrypt_ecb(&blocks))
    }
    fn encrypt_cbc(&mut self, iv: RSlice<'_, u8>, data: RSlice<'_, u8>) -> PluginResult<RVec<u8>> {
        self.0
            .call_mut(|b| b.encrypt_cbc(&iv, &data).map(RVec::from))
    }
    fn decrypt_cbc(
        &mut self,
        iv: RSlice<'_, u8>,
        data: RSlice<'_, u8>,
    ) -> PluginResult<SecretBytes> {
        self.0.call_mut(|b| b.decrypt_cbc(&iv, &data))
    }
}

/// Wraps a native MAC into an ABI object.
pub fn mac_to_abi(m: Box<dyn MacImpl>) -> MacBox {
    Mac_TO::from_value(G::new(m), TD_Opaque)
}

impl Mac for G<dyn MacImpl> {
    fn algorithm(&self) -> RString {
        self.0.get(String::new(), |m| m.algorithm()).into()
    }
    fn output_len(&self) -> usize {
        self.0.get(0, |m| m.output_len())
    }
    fn compute(&mut self, p: RSlice<'_, RSlice<'_, u8>>) -> PluginResult<RVec<u8>> {
        let p = parts(&p);
        self.0.call_mut(|m| m.compute(&p).map(RVec::from))
    }
    fn verify(&mut self, p: RSlice<'_, RSlice<'_, u8>>, tag: RSlice<'_, u8>) -> PluginResult<()> {
        let p = parts(&p);
        self.0.call_mut(|m| m.verify(&p, &tag))
    }
}

/// Wraps a native signer into an ABI object.
pub fn signer_to_abi(s: Box<dyn SignerImpl>) -> SignerBox {
    Signer_TO::from_value(G::new(s), TD_Opaque)
}

impl Signer for G<dyn SignerImpl> {
    fn algorithm(&self) -> RString {
        self.0.get(String::new(), |s| s.algorithm()).into()
    }
    fn public_key(&self) -> RVec<u8> {
        self.0.get(Vec::new(), |s| s.public_key()).into()
    }
    fn sign(&self, message: RSlice<'_, u8>) -> PluginResult<RVec<u8>> {
        self.0.call(|s| s.sign(&message).map(RVec::from))
    }
}

/// Wraps a native provider into a shareable ABI object.
pub fn provider_to_abi(p: Box<dyn ProviderImpl>) -> CryptoProviderArc {
    CryptoProvider_TO::from_ptr(RArc::new(G::new(p)), TD_Opaque)
}

impl CryptoProvider for G<dyn ProviderImpl> {
    fn name(&self) -> RString {
        self.0.get(String::new(), |p| p.name()).into()
    }
    fn algorithms(&self) -> RVec<Algorithm> {
        self.0.get(Vec::new(), |p| p.algorithms()).into()
    }
    fn dh_group(&self, name: RStr<'_>) -> PluginResult<DhGroupBox> {
        self.0
            .call(|p| p.dh_group(name.as_str()).map(dh_group_to_abi))
    }
    fn aead(&self, name: RStr<'_>, key: RSlice<'_, u8>) -> PluginResult<AeadBox> {
        self.0
            .call(|p| p.aead(name.as_str(), &key).map(aead_to_abi))
    }
    fn block_cipher(&self, name: RStr<'_>, key: RSlice<'_, u8>) -> PluginResult<BlockCipherBox> {
        self.0
            .call(|p| p.block_cipher(name.as_str(), &key).map(block_cipher_to_abi))
    }
    fn hash(&self, name: RStr<'_>, p: RSlice<'_, RSlice<'_, u8>>) -> PluginResult<RVec<u8>> {
        let v = parts(&p);
        self.0.call(|p| p.hash(name.as_str(), &v).map(RVec::from))
    }
    fn mac(&self, name: RStr<'_>, key: RSlice<'_, u8>) -> PluginResult<MacBox> {
        self.0.call(|p| p.mac(name.as_str(), &key).map(mac_to_abi))
    }
    fn hkdf(
        &self,
        name: RStr<'_>,
        salt: RSlice<'_, u8>,
        ikm: RSlice<'_, u8>,
        info: RSlice<'_, u8>,
        len: usize,
    ) -> PluginResult<SecretBytes> {
        self.0
            .call(|p| p.hkdf(name.as_str(), &salt, &ikm, &info, len))
    }
    fn generate_signing_key(&self, name: RStr<'_>) -> PluginResult<SecretBytes> {
        self.0.call(|p| p.generate_signing_key(name.as_str()))
    }
    fn signer(&self, name: RStr<'_>, secret_key: RSlice<'_, u8>) -> PluginResult<SignerBox> {
        self.0
            .call(|p| p.signer(name.as_str(), &secret_key).map(signer_to_abi))
    }
    fn verify(
        &self,
        name: RStr<'_>,
        public_key: RSlice<'_, u8>,
        message: RSlice<'_, u8>,
        signature: RSlice<'_, u8>,
    ) -> PluginResult<()> {
        self.0
            .call(|p| p.verify(name.as_str(), &public_key, &message, &signature))
    }
    fn random_bytes(&self, len: usize) -> PluginResult<SecretBytes> {
        self.0.call(|p| p.random_bytes(len))
    }
    fn counters(&self) -> OpCounters {
        self.0.get(OpCounters::default(), |p| p.counters())
    }
    fn reset_counters(&self) {
        self.0.get((), |p| p.reset_counters())
    }
}

/// Wraps a native group cipher into an ABI object.
pub fn group_cipher_to_abi(c: Box<dyn GroupCipherImpl>) -> GroupCipherBox {
    GroupCipher_TO::from_value(G::new(c), TD_Opaque)
}

impl GroupCipher for G<dyn GroupCipherImpl> {
    fn algorithm(&self) -> RString {
        self.0.get(String::new(), |c| c.algorithm()).into()
    }
    fn key_len(&self) -> usize {
        self.0.get(0, |c| c.key_len())
    }
    fn overhead(&self) -> usize {
        self.0.get(0, |c| c.overhead())
    }
    fn install_key(&mut self, epoch: u64, key: RSlice<'_, u8>) -> PluginResult<()> {
        self.0.call_mut(|c| c.install_key(epoch, &key))
    }
    fn retire_key(&mut self, epoch: u64) -> bool {
        self.0
            .call_mut(|c| Ok(c.retire_key(epoch)))
            .unwrap_or(false)
    }
    fn seal(
        &mut self,
        epoch: u64,
        aad: RSlice<'_, u8>,
        plaintext: RSlice<'_, u8>,
    ) -> PluginResult<RVec<u8>> {
        self.0
            .call_mut(|c| c.seal(epoch, &aad, &plaintext).map(RVec::from))
    }
    fn open(
        &mut self,
        sender: RStr<'_>,
        aad: RSlice<'_, u8>,
        sealed: RSlice<'_, u8>,
    ) -> PluginResult<OpenedMessage> {
        self.0.call_mut(|c| c.open(sender.as_str(), &aad, &sealed))
    }
    fn seal_into(
        &mut self,
        epoch: u64,
        aad: RSlice<'_, u8>,
        plaintext: RSlice<'_, u8>,
        out: &mut RVec<u8>,
    ) -> PluginResult<()> {
        let len = out.len();
        let r = self
            .0
            .call_mut(|c| c.seal_into(epoch, &aad, &plaintext, &mut *out));
        restore_on_error(r, out, len)
    }
    fn open_into(
        &mut self,
        sender: RStr<'_>,
        aad: RSlice<'_, u8>,
        sealed: RSlice<'_, u8>,
        out: &mut RVec<u8>,
    ) -> PluginResult<OpenedHeader> {
        let len = out.len();
        let r = self
            .0
            .call_mut(|c| c.open_into(sender.as_str(), &aad, &sealed, &mut *out));
        restore_on_error(r, out, len)
    }
}

/// Wraps a native key agreement into an ABI object.
pub fn key_agreement_to_abi(k: Box<dyn KeyAgreementImpl>) -> KeyAgreementBox {
    KeyAgreement_TO::from_value(G::new(k), TD_Opaque)
}

impl KeyAgreement for G<dyn KeyAgreementImpl> {
    fn algorithm(&self) -> RString {
        self.0.get(String::new(), |k| k.algorithm()).into()
    }
    fn on_view(&mut self, view: &MembershipView) -> PluginResult<RVec<Action>> {
        self.0.call_mut(|k| k.on_view(view).map(RVec::from))
    }
    fn on_message(
        &mut self,
        sender: RStr<'_>,
        payload: RSlice<'_, u8>,
    ) -> PluginResult<RVec<Action>> {
        self.0
            .call_mut(|k| k.on_message(sender.as_str(), &payload).map(RVec::from))
    }
    fn refresh(&mut self) -> PluginResult<RVec<Action>> {
        self.0.call_mut(|k| k.refresh().map(RVec::from))
    }
    fn stats(&self) -> KeyAgreementStats {
        self.0.get(KeyAgreementStats::default(), |k| k.stats())
    }
}
