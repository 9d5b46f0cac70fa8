//! Operation counters for providers: one relaxed atomic add per counted operation.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use conclave_plugin_api::provider::OpCounters;

/// Which counter to bump.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A DH exponentiation.
    Exponentiation,
    /// A scalar inversion.
    Inversion,
    /// A group-element validation.
    Validation,
    /// A signature.
    Signature,
    /// A signature verification.
    Verification,
    /// An encryption.
    Encryption,
    /// A decryption.
    Decryption,
    /// A MAC computation or check.
    Mac,
    /// A hash.
    Hash,
    /// A key derivation.
    Kdf,
}

/// Thread-safe counters, shared by a provider instance and the objects it creates.
#[derive(Debug, Default)]
pub struct Counters {
    values: [AtomicU64; 11],
}

const RANDOM: usize = 10;

impl Counters {
    /// New counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one operation.
    #[inline]
    pub fn bump(&self, op: Op) {
        self.values[op as usize].fetch_add(1, Relaxed);
    }

    /// Counts `n` random bytes drawn.
    #[inline]
    pub fn add_random(&self, n: usize) {
        self.values[RANDOM].fetch_add(n as u64, Relaxed);
    }

    /// A snapshot.
    pub fn snapshot(&self) -> OpCounters {
        let v = |i: usize| self.values[i].load(Relaxed);
        OpCounters {
            exponentiations: v(Op::Exponentiation as usize),
            inversions: v(Op::Inversion as usize),
            validations: v(Op::Validation as usize),
            signatures: v(Op::Signature as usize),
            verifications: v(Op::Verification as usize),
            encryptions: v(Op::Encryption as usize),
            decryptions: v(Op::Decryption as usize),
            macs: v(Op::Mac as usize),
            hashes: v(Op::Hash as usize),
            kdfs: v(Op::Kdf as usize),
            random_bytes: v(RANDOM),
        }
    }

    /// Sets every counter to zero.
    pub fn reset(&self) {
        for v in &self.values {
            v.store(0, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_op_separately() {
        let c = Counters::new();
        c.bump(Op::Exponentiation);
        c.bump(Op::Exponentiation);
        c.bump(Op::Signature);
        c.add_random(32);
        let s = c.snapshot();
        assert_eq!(s.exponentiations, 2);
        assert_eq!(s.signatures, 1);
        assert_eq!(s.random_bytes, 32);
        assert_eq!(s.verifications, 0);
        c.reset();
        assert_eq!(c.snapshot(), OpCounters::default());
    }
}
