//! A provider built before ABI 1.2 has no group operation (its `DhGroup` vtable lacks
//! `mul_elements` and `invert_element`, whose default bodies answer `UNSUPPORTED`): BD
//! refuses it when a member is created, with a typed error that says why, instead of
//! failing in the middle of an agreement.

use conclave_conformance::key_agreement::{self as ka, Setup};
use conclave_plugin_sdk::{
    Algorithm, Options, PluginError, SecretBytes,
    api::provider::OpCounters,
    host::Provider,
    implement::{
        AeadImpl, BlockCipherImpl, DhGroupImpl, MacImpl, ProviderImpl, SignerImpl, provider_to_abi,
    },
};
use conclave_provider_rustcrypto::RustCryptoProvider;

type Result<T> = std::result::Result<T, PluginError>;

/// A DH group as a provider of ABI 1.1 implements it: everything but the group
/// operation (left to the trait's defaults).
struct OldGroup(Box<dyn DhGroupImpl>);

impl DhGroupImpl for OldGroup {
    fn name(&self) -> String {
        self.0.name()
    }
    fn element_len(&self) -> usize {
        self.0.element_len()
    }
    fn scalar_len(&self) -> usize {
        self.0.scalar_len()
    }
    fn generator(&self) -> Vec<u8> {
        self.0.generator()
    }
    fn random_scalar(&self) -> Result<SecretBytes> {
        self.0.random_scalar()
    }
    fn exp_generator(&self, scalar: &[u8]) -> Result<Vec<u8>> {
        self.0.exp_generator(scalar)
    }
    fn exp(&self, element: &[u8], scalar: &[u8]) -> Result<SecretBytes> {
        self.0.exp(element, scalar)
    }
    fn invert_scalar(&self, scalar: &[u8]) -> Result<SecretBytes> {
        self.0.invert_scalar(scalar)
    }
    fn mul_scalars(&self, a: &[u8], b: &[u8]) -> Result<SecretBytes> {
        self.0.mul_scalars(a, b)
    }
    fn validate_element(&self, element: &[u8]) -> Result<()> {
        self.0.validate_element(element)
    }
}

/// The rustcrypto provider, its DH groups as an older build would offer them.
struct OldProvider(RustCryptoProvider);

impl ProviderImpl for OldProvider {
    fn name(&self) -> String {
        "old-rustcrypto".into()
    }
    fn algorithms(&self) -> Vec<Algorithm> {
        self.0.algorithms()
    }
    fn dh_group(&self, name: &str) -> Result<Box<dyn DhGroupImpl>> {
        Ok(Box::new(OldGroup(self.0.dh_group(name)?)))
    }
    fn aead(&self, name: &str, key: &[u8]) -> Result<Box<dyn AeadImpl>> {
        self.0.aead(name, key)
    }
    fn block_cipher(&self, name: &str, key: &[u8]) -> Result<Box<dyn BlockCipherImpl>> {
        self.0.block_cipher(name, key)
    }
    fn hash(&self, name: &str, parts: &[&[u8]]) -> Result<Vec<u8>> {
        self.0.hash(name, parts)
    }
    fn mac(&self, name: &str, key: &[u8]) -> Result<Box<dyn MacImpl>> {
        self.0.mac(name, key)
    }
    fn hkdf(
        &self,
        name: &str,
        salt: &[u8],
        ikm: &[u8],
        info: &[u8],
        len: usize,
    ) -> Result<SecretBytes> {
        self.0.hkdf(name, salt, ikm, info, len)
    }
    fn generate_signing_key(&self, name: &str) -> Result<SecretBytes> {
        self.0.generate_signing_key(name)
    }
    fn signer(&self, name: &str, secret_key: &[u8]) -> Result<Box<dyn SignerImpl>> {
        self.0.signer(name, secret_key)
    }
    fn verify(
        &self,
        name: &str,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        self.0.verify(name, public_key, message, signature)
    }
    fn random_bytes(&self, len: usize) -> Result<SecretBytes> {
        self.0.random_bytes(len)
    }
    fn counters(&self) -> OpCounters {
        self.0.counters()
    }
    fn reset_counters(&self) {
        self.0.reset_counters()
    }
}

fn old_provider() -> Provider {
    Provider::from_abi(provider_to_abi(Box::new(OldProvider(
        RustCryptoProvider::new(),
    ))))
}

#[test]
fn bd_refuses_a_provider_without_the_group_operation() {
    let g = old_provider().dh_group("ristretto255").unwrap();
    let e = g.mul_elements(&g.generator(), &g.generator()).unwrap_err();
    assert_eq!(e.code, conclave_plugin_sdk::ErrorCode::UNSUPPORTED);
    let setup = Setup {
        module: conclave_plugin_bd::plugin_module(),
        algorithm: "bd".into(),
        provider: old_provider,
        dh_group: "ristretto255".into(),
        options: Options::default(),
    };
    let err = match ka::grow(setup, 2) {
        Ok(_) => panic!("bd ran on a provider without the group operation"),
        Err(e) => e,
    };
    assert!(
        err.contains("unsupported") && err.contains("bd needs the group operation of ristretto255"),
        "{err}"
    );
}
