//! Signature verification done once per process for the in-process network of
//! `bench keys`.
//!
//! On the in-process network every member runs in this one process, and every receiver
//! of a multicast verifies the same signature over the same bytes: at n = 1,000 a
//! Burmester-Desmedt agreement is 2n^2 = two million identical verifications, minutes of
//! CPU that tell nothing new. A provider made by [`provider`] verifies each distinct
//! (algorithm, key, message, signature) once; a repeat is answered from a cache, counted
//! as a verification, and its calibrated cost ([`set_cost`]) is charged to the member's
//! step through [`conclave_conformance::key_agreement::charge`]. Each member's clock, and
//! so the critical path, still pays for every verification it would make on a machine
//! of its own; only the process's own CPU is spared. The cache holds what was verified
//! since the last [`clear`] (the bench clears it at every measurement).

use std::{
    collections::HashMap,
    sync::{
        Mutex,
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
static COST_NS: AtomicU64 = AtomicU64::new(0);

/// Sets the cost charged for each verification answered from the cache.
pub fn set_cost(cost: Duration) {
    COST_NS.store(
        u64::try_from(cost.as_nanos()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

/// Forgets every verification.
pub fn clear() {
    *CACHE.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// A provider that shares verifications across the process (see the module).
struct Shared {
    inner: Box<dyn ProviderImpl>,
    /// Verifications answered from the cache (counted as verifications).
    hits: AtomicU64,
}

/// `inner`, verifying each distinct signature once per process.
pub fn provider(inner: Box<dyn ProviderImpl>) -> Provider {
    Provider::from_abi(provider_to_abi(Box::new(Shared {
        inner,
        hits: AtomicU64::new(0),
    })))
}

impl ProviderImpl for Shared {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn algorithms(&self) -> Vec<Algorithm> {
        self.inner.algorithms()
    }
    fn dh_group(&self, name: &str) -> Result<Box<dyn DhGroupImpl>> {
        self.inner.dh_group(name)
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
            conclave_conformance::key_agreement::charge(Duration::from_nanos(
                COST_NS.load(Ordering::Relaxed),
            ));
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
        c
    }
    fn reset_counters(&self) {
        self.inner.reset_counters();
        self.hits.store(0, Ordering::Relaxed);
    }
}
