//! Work done once per process for the in-process network of `bench keys`: signature
//! verifications and DH exponentiations.
//!
//! On the in-process network every member runs in this one process, and much of what the
//! members compute is the same computation: every receiver of a multicast verifies the
//! same signature over the same bytes (at n = 1,000 a Burmester-Desmedt agreement is
//! 2n^2 = two million identical verifications), and in a key tree every member below a
//! node computes that node's key from the same two inputs (STR's leave at n = 1,000 is
//! n^2/2 = half a million exponentiations, of which a thousand are distinct). That is
//! minutes of CPU that tell nothing new. A provider made by [`provider`] does each
//! distinct verification (algorithm, key, message, signature) and each distinct
//! exponentiation (group, base, exponent) once; a repeat is answered from a cache (the
//! inputs compared in full), counted as the operation, and its calibrated cost
//! ([`set_costs`]) is charged to the member's step through
//! [`conclave_conformance::key_agreement::charge`]. Each member's clock, and so the
//! critical path, still pays for every operation it would make on a machine of its own;
//! only the process's own CPU is spared. The caches hold what was done since the last
//! [`clear`] (the bench clears them at every measurement); exponents and secret results
//! are wiped when dropped.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use conclave_plugin_sdk::{
    Algorithm, PluginError, SecretBytes,
    api::provider::OpCounters,
    host::Provider,
    implement::{
        AeadImpl, BlockCipherImpl, DhGroupImpl, MacImpl, ProviderImpl, SignerImpl, provider_to_abi,
    },
};

type Result<T> = std::result::Result<T, PluginError>;

/// One verification: its inputs and its outcome.
struct Verified {
    algorithm: String,
    public_key: Vec<u8>,
    message: Vec<u8>,
    outcome: Result<()>,
}

/// Verifications by signature (a signature names its message in practice; the inputs
/// are compared in full on a hit, so a reused signature on other bytes is verified).
static CACHE: Mutex<Option<HashMap<Vec<u8>, Vec<Verified>>>> = Mutex::new(None);
/// The calibrated cost of one verification, nanoseconds.
static VERIFY_NS: AtomicU64 = AtomicU64::new(0);
/// The calibrated cost of one exponentiation of a received element, nanoseconds.
static EXP_NS: AtomicU64 = AtomicU64::new(0);
/// The calibrated cost of one exponentiation of the generator, nanoseconds.
static EXP_GENERATOR_NS: AtomicU64 = AtomicU64::new(0);

/// One exponentiation's inputs: the group, the base (`None`: the generator) and the
/// exponent (a secret: wiped when dropped, as [`SecretBytes`] is).
#[derive(PartialEq, Eq)]
struct ExpInputs {
    group: String,
    base: Option<Vec<u8>>,
    scalar: SecretBytes,
}

impl Hash for ExpInputs {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.group.hash(state);
        self.base.hash(state);
        self.scalar.expose().hash(state);
    }
}

/// Exponentiations kept at most: beyond, new ones are computed and not kept (a GDH
/// agreement that forms a group of 1,000 makes about n^2/2 distinct exponentiations,
/// which no other member repeats; the repeated ones are a key tree's, about n).
const MAX_EXPS: usize = 1 << 16;

/// Exponentiations done since the last [`clear`], by their inputs.
static EXPS: Mutex<Option<HashMap<ExpInputs, SecretBytes>>> = Mutex::new(None);

/// The calibrated costs charged for each operation answered from a cache.
#[derive(Debug, Clone, Copy, Default)]
pub struct Costs {
    /// One signature verification.
    pub verification: Duration,
    /// One exponentiation of a given element.
    pub exponentiation: Duration,
    /// One exponentiation of the group's generator.
    pub generator_exponentiation: Duration,
}

/// Sets the cost charged for each operation answered from a cache.
pub fn set_costs(costs: Costs) {
    let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    VERIFY_NS.store(ns(costs.verification), Ordering::Relaxed);
    EXP_NS.store(ns(costs.exponentiation), Ordering::Relaxed);
    EXP_GENERATOR_NS.store(ns(costs.generator_exponentiation), Ordering::Relaxed);
}

fn charge(cost: &AtomicU64) {
    conclave_conformance::key_agreement::charge(Duration::from_nanos(cost.load(Ordering::Relaxed)));
}

/// Forgets every verification and exponentiation (the exponents and results are wiped).
pub fn clear() {
    *CACHE.lock().unwrap_or_else(|e| e.into_inner()) = None;
    *EXPS.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// A provider that shares verifications and exponentiations across the process (see
/// the module).
struct Shared {
    inner: Box<dyn ProviderImpl>,
    /// Verifications answered from the cache (counted as verifications).
    hits: AtomicU64,
    /// Exponentiations answered from the cache by this provider's groups (counted as
    /// exponentiations).
    exp_hits: Arc<AtomicU64>,
}

/// `inner`, verifying each distinct signature and computing each distinct
/// exponentiation once per process.
pub fn provider(inner: Box<dyn ProviderImpl>) -> Provider {
    Provider::from_abi(provider_to_abi(Box::new(Shared {
        inner,
        hits: AtomicU64::new(0),
        exp_hits: Arc::default(),
    })))
}

/// A group whose exponentiations are shared across the process.
struct SharedGroup {
    inner: Box<dyn DhGroupImpl>,
    name: String,
    hits: Arc<AtomicU64>,
}

impl SharedGroup {
    /// The cached result of `inputs`, or `compute`'s (kept when it succeeds).
    fn shared(
        &self,
        base: Option<&[u8]>,
        scalar: &[u8],
        cost: &AtomicU64,
        compute: impl FnOnce() -> Result<SecretBytes>,
    ) -> Result<SecretBytes> {
        let inputs = ExpInputs {
            group: self.name.clone(),
            base: base.map(<[u8]>::to_vec),
            scalar: SecretBytes::copy_from(scalar),
        };
        let known = EXPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|c| c.get(&inputs).cloned());
        if let Some(result) = known {
            self.hits.fetch_add(1, Ordering::Relaxed);
            charge(cost);
            return Ok(result);
        }
        let result = compute()?;
        let mut exps = EXPS.lock().unwrap_or_else(|e| e.into_inner());
        let exps = exps.get_or_insert_with(HashMap::new);
        if exps.len() < MAX_EXPS {
            exps.insert(inputs, result.clone());
        }
        Ok(result)
    }
}

impl DhGroupImpl for SharedGroup {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn element_len(&self) -> usize {
        self.inner.element_len()
    }
    fn scalar_len(&self) -> usize {
        self.inner.scalar_len()
    }
    fn generator(&self) -> Vec<u8> {
        self.inner.generator()
    }
    fn random_scalar(&self) -> Result<SecretBytes> {
        self.inner.random_scalar()
    }
    fn exp_generator(&self, scalar: &[u8]) -> Result<Vec<u8>> {
        self.shared(None, scalar, &EXP_GENERATOR_NS, || {
            self.inner.exp_generator(scalar).map(SecretBytes::from)
        })
        .map(|r| r.expose().to_vec())
    }
    fn exp(&self, element: &[u8], scalar: &[u8]) -> Result<SecretBytes> {
        self.shared(Some(element), scalar, &EXP_NS, || {
            self.inner.exp(element, scalar)
        })
    }
    fn invert_scalar(&self, scalar: &[u8]) -> Result<SecretBytes> {
        self.inner.invert_scalar(scalar)
    }
    fn mul_scalars(&self, a: &[u8], b: &[u8]) -> Result<SecretBytes> {
        self.inner.mul_scalars(a, b)
    }
    fn validate_element(&self, element: &[u8]) -> Result<()> {
        self.inner.validate_element(element)
    }
    fn mul_elements(&self, a: &[u8], b: &[u8]) -> Result<SecretBytes> {
        self.inner.mul_elements(a, b)
    }
    fn invert_element(&self, a: &[u8]) -> Result<SecretBytes> {
        self.inner.invert_element(a)
    }
    fn chain_product(&self, start: &[u8], factors: &[&[u8]]) -> Result<SecretBytes> {
        self.inner.chain_product(start, factors)
    }
}

impl ProviderImpl for Shared {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn algorithms(&self) -> Vec<Algorithm> {
        self.inner.algorithms()
    }
    fn dh_group(&self, name: &str) -> Result<Box<dyn DhGroupImpl>> {
        Ok(Box::new(SharedGroup {
            inner: self.inner.dh_group(name)?,
            name: name.to_string(),
            hits: Arc::clone(&self.exp_hits),
        }))
    }
    fn aead(&self, name: &str, key: &[u8]) -> Result<Box<dyn AeadImpl>> {
        self.inner.aead(name, key)
    }
    fn block_cipher(&self, name: &str, key: &[u8]) -> Result<Box<dyn BlockCipherImpl>> {
        self.inner.block_cipher(name, key)
    }
    fn hash(&self, name: &str, parts: &[&[u8]]) -> Result<Vec<u8>> {
        self.inner.hash(name, parts)
    }
    fn mac(&self, name: &str, key: &[u8]) -> Result<Box<dyn MacImpl>> {
        self.inner.mac(name, key)
    }
    fn hkdf(
        &self,
        name: &str,
        salt: &[u8],
        ikm: &[u8],
        info: &[u8],
        len: usize,
    ) -> Result<SecretBytes> {
        self.inner.hkdf(name, salt, ikm, info, len)
    }
    fn generate_signing_key(&self, name: &str) -> Result<SecretBytes> {
        self.inner.generate_signing_key(name)
    }
    fn signer(&self, name: &str, secret_key: &[u8]) -> Result<Box<dyn SignerImpl>> {
        self.inner.signer(name, secret_key)
    }
    fn verify(
        &self,
        name: &str,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        let known = {
            let cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
            cache.as_ref().and_then(|c| c.get(signature)).and_then(|v| {
                v.iter()
                    .find(|x| {
                        x.algorithm == name && x.public_key == public_key && x.message == message
                    })
                    .map(|x| x.outcome.clone())
            })
        };
        if let Some(outcome) = known {
            self.hits.fetch_add(1, Ordering::Relaxed);
            charge(&VERIFY_NS);
            return outcome;
        }
        let result = self.inner.verify(name, public_key, message, signature);
        CACHE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashMap::new)
            .entry(signature.to_vec())
            .or_default()
            .push(Verified {
                algorithm: name.to_string(),
                public_key: public_key.to_vec(),
                message: message.to_vec(),
                outcome: result.clone(),
            });
        result
    }
    fn random_bytes(&self, len: usize) -> Result<SecretBytes> {
        self.inner.random_bytes(len)
    }
    fn counters(&self) -> OpCounters {
        let mut c = self.inner.counters();
        c.verifications += self.hits.load(Ordering::Relaxed);
        c.exponentiations += self.exp_hits.load(Ordering::Relaxed);
        c
    }
    fn reset_counters(&self) {
        self.inner.reset_counters();
        self.hits.store(0, Ordering::Relaxed);
        self.exp_hits.store(0, Ordering::Relaxed);
    }
}

/// How many exponentiations the cache holds (for tests and diagnostics).
pub fn cached_exponentiations() -> usize {
    EXPS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map_or(0, HashMap::len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_provider_rustcrypto::RustCryptoProvider;

    #[test]
    fn each_member_pays_for_an_exponentiation_the_process_computes_once() {
        clear();
        let direct = crate::provider("rustcrypto").expect("built in");
        let plain = direct.dh_group("ristretto255").expect("a group");
        let (a, b) = (
            provider(Box::new(RustCryptoProvider::new())),
            provider(Box::new(RustCryptoProvider::new())),
        );
        let (ga, gb) = (
            a.dh_group("ristretto255").expect("a group"),
            b.dh_group("ristretto255").expect("a group"),
        );
        let x = plain.random_scalar().expect("a scalar");
        let y = plain.random_scalar().expect("a scalar");
        let base = plain.exp_generator(y.expose()).expect("an element");
        // The same inputs at two members: one computation, both counted, both right.
        let want = plain.exp(&base, x.expose()).expect("exp");
        assert_eq!(ga.exp(&base, x.expose()).expect("exp"), want);
        assert_eq!(gb.exp(&base, x.expose()).expect("exp"), want);
        assert_eq!(cached_exponentiations(), 1);
        let bk = plain.exp_generator(x.expose()).expect("exp");
        assert_eq!(ga.exp_generator(x.expose()).expect("exp"), bk);
        assert_eq!(gb.exp_generator(x.expose()).expect("exp"), bk);
        assert_eq!(cached_exponentiations(), 2);
        assert_eq!(a.counters().exponentiations, 2);
        assert_eq!(b.counters().exponentiations, 2);
        // Other inputs are other computations: another exponent, another base.
        let other = gb.exp(&base, y.expose()).expect("exp");
        assert_eq!(other, plain.exp(&base, y.expose()).expect("exp"));
        assert_ne!(other, want);
        assert_eq!(
            gb.exp(&bk, x.expose()).expect("exp"),
            plain.exp(&bk, x.expose()).expect("exp")
        );
        assert_eq!(cached_exponentiations(), 4);
        // A refused element is refused at every member and kept by no one.
        let bad = vec![0xffu8; base.len()];
        assert!(ga.exp(&bad, x.expose()).is_err());
        assert!(gb.exp(&bad, x.expose()).is_err());
        assert_eq!(cached_exponentiations(), 4);
        clear();
        assert_eq!(cached_exponentiations(), 0);
        assert_eq!(ga.exp(&base, x.expose()).expect("exp"), want);
    }
}
