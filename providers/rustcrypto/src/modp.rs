//! Finite-field Diffie-Hellman groups of safe-prime modulus: RFC 3526 MODP and RFC 7919
//! ffdhe, on `num-bigint`.
//!
//! Every group here has a safe prime `p = 2q + 1` and generator `g = 2`, which generates
//! the subgroup of order `q`: the quadratic residues. Scalars are integers in `[1, q-1]`.
//!
//! Caveats of this back end (the OpenSSL provider has neither): `num-bigint`'s modular
//! exponentiation is not constant-time, and its limbs cannot be wiped, so intermediate
//! big integers are freed without zeroization. Values returned to callers are wiped
//! ([`SecretBytes`]). Where timing or memory disclosure is in the threat model, prefer the
//! OpenSSL provider or `ristretto255`.

use std::sync::Arc;

use conclave_plugin_sdk::{
    ErrorCode, PluginError, SecretBytes,
    counters::{Counters, Op},
    implement::DhGroupImpl,
};
use num_bigint::BigUint;
use num_integer::Integer;
use num_traits::{One, Zero};

use crate::rng;

type Result<T> = std::result::Result<T, PluginError>;

/// Description of one safe-prime group (shared with every provider).
pub use conclave_plugin_sdk::groups::SafePrimeGroup as GroupSpec;

/// Every finite-field group this provider offers: the same as the OpenSSL provider's.
pub use conclave_plugin_sdk::groups::SAFE_PRIME_GROUPS as GROUPS;

/// A safe-prime group with `g = 2`.
pub struct ModpGroup {
    spec: GroupSpec,
    p: BigUint,
    q: BigUint,
    p_minus_1: BigUint,
    len: usize,
    counters: Arc<Counters>,
}

impl ModpGroup {
    /// The group described by `spec`, counting on `counters`.
    pub fn new(spec: GroupSpec, counters: Arc<Counters>) -> Self {
        let p = BigUint::parse_bytes(spec.p_hex.as_bytes(), 16)
            .unwrap_or_else(|| unreachable!("the group constants are valid hexadecimal"));
        let p_minus_1 = &p - 1u32;
        let q = &p_minus_1 >> 1;
        let len = p.bits().div_ceil(8) as usize;
        Self {
            spec,
            p,
            q,
            p_minus_1,
            len,
            counters,
        }
    }

    /// The modulus.
    pub fn p(&self) -> &BigUint {
        &self.p
    }

    /// The order `q` of the generator's subgroup.
    pub fn q(&self) -> &BigUint {
        &self.q
    }

    fn encode(&self, v: &BigUint) -> Vec<u8> {
        let bytes = v.to_bytes_be();
        let mut out = vec![0u8; self.len - bytes.len()];
        out.extend_from_slice(&bytes);
        out
    }

    fn secret(&self, v: &BigUint) -> SecretBytes {
        SecretBytes::new(self.encode(v))
    }

    fn decode_element(&self, bytes: &[u8]) -> Result<BigUint> {
        if bytes.len() != self.len {
            return Err(PluginError::new(
                ErrorCode::INVALID_ELEMENT,
                format!(
                    "{}: element must be {} bytes, got {}",
                    self.spec.name,
                    self.len,
                    bytes.len()
                ),
            ));
        }
        let v = BigUint::from_bytes_be(bytes);
        if v.is_zero() || v >= self.p {
            return Err(PluginError::new(
                ErrorCode::INVALID_ELEMENT,
                format!("{}: element out of range [1, p-1]", self.spec.name),
            ));
        }
        Ok(v)
    }

    fn decode_scalar(&self, bytes: &[u8]) -> Result<BigUint> {
        if bytes.len() != self.len {
            return Err(PluginError::new(
                ErrorCode::INVALID_SCALAR,
                format!(
                    "{}: scalar must be {} bytes, got {}",
                    self.spec.name,
                    self.len,
                    bytes.len()
                ),
            ));
        }
        let v = BigUint::from_bytes_be(bytes);
        if v.is_zero() || v >= self.q {
            return Err(PluginError::new(
                ErrorCode::INVALID_SCALAR,
                format!("{}: scalar out of range [1, q-1]", self.spec.name),
            ));
        }
        Ok(v)
    }
}

/// The Jacobi symbol `(a / n)` for odd `n`: 1, -1 or 0.
///
/// For a prime `n` it is the Legendre symbol, so for a safe prime `p` it tells in a few
/// hundred word operations whether `a` is a quadratic residue, i.e. lies in the subgroup
/// of order `q`, instead of a full exponentiation `a^q mod p`.
pub fn jacobi(a: &BigUint, n: &BigUint) -> i8 {
    debug_assert!(n.is_odd());
    let mut a = a % n;
    let mut n = n.clone();
    let mut result = 1i8;
    while !a.is_zero() {
        let twos = a.trailing_zeros().unwrap_or(0);
        if twos % 2 == 1 {
            // (2 / n) = -1 iff n = 3 or 5 (mod 8).
            let n_mod_8 = (&n & BigUint::from(7u32)).to_u32_digits().first().copied();
            if matches!(n_mod_8, Some(3) | Some(5)) {
                result = -result;
            }
        }
        a >>= twos;
        // Quadratic reciprocity: flip if both are 3 (mod 4).
        let a3 = a.to_u32_digits().first().copied().unwrap_or(0) & 3 == 3;
        let n3 = n.to_u32_digits().first().copied().unwrap_or(0) & 3 == 3;
        if a3 && n3 {
            result = -result;
        }
        std::mem::swap(&mut a, &mut n);
        a %= &n;
    }
    if n.is_one() { result } else { 0 }
}

impl DhGroupImpl for ModpGroup {
    fn name(&self) -> String {
        self.spec.name.to_string()
    }

    fn element_len(&self) -> usize {
        self.len
    }

    fn scalar_len(&self) -> usize {
        self.len
    }

    fn generator(&self) -> Vec<u8> {
        self.encode(&BigUint::from(2u32))
    }

    fn random_scalar(&self) -> Result<SecretBytes> {
        let nbytes = self.spec.exponent_bits / 8;
        loop {
            let bytes = rng::random(nbytes, &self.counters)?;
            let x = BigUint::from_bytes_be(bytes.expose());
            if !x.is_zero() {
                return Ok(self.secret(&x));
            }
        }
    }

    fn exp_generator(&self, scalar: &[u8]) -> Result<Vec<u8>> {
        let x = self.decode_scalar(scalar)?;
        self.counters.bump(Op::Exponentiation);
        Ok(self.encode(&BigUint::from(2u32).modpow(&x, &self.p)))
    }

    fn exp(&self, element: &[u8], scalar: &[u8]) -> Result<SecretBytes> {
        let base = self.decode_element(element)?;
        let x = self.decode_scalar(scalar)?;
        self.counters.bump(Op::Exponentiation);
        Ok(self.secret(&base.modpow(&x, &self.p)))
    }

    fn invert_scalar(&self, scalar: &[u8]) -> Result<SecretBytes> {
        let x = self.decode_scalar(scalar)?;
        self.counters.bump(Op::Inversion);
        let inv = x.modinv(&self.q).ok_or_else(|| {
            PluginError::new(ErrorCode::INVALID_SCALAR, "scalar has no inverse modulo q")
        })?;
        Ok(self.secret(&inv))
    }

    fn mul_scalars(&self, a: &[u8], b: &[u8]) -> Result<SecretBytes> {
        let (a, b) = (self.decode_scalar(a)?, self.decode_scalar(b)?);
        Ok(self.secret(&((a * b) % &self.q)))
    }

    fn validate_element(&self, element: &[u8]) -> Result<()> {
        self.counters.bump(Op::Validation);
        let y = self.decode_element(element)?;
        if y.is_one() || y == self.p_minus_1 {
            return Err(PluginError::new(
                ErrorCode::INVALID_ELEMENT,
                format!("{}: element of order 1 or 2", self.spec.name),
            ));
        }
        if jacobi(&y, &self.p) != 1 {
            return Err(PluginError::new(
                ErrorCode::INVALID_ELEMENT,
                format!(
                    "{}: element outside the prime-order subgroup",
                    self.spec.name
                ),
            ));
        }
        Ok(())
    }

    fn mul_elements(&self, a: &[u8], b: &[u8]) -> Result<SecretBytes> {
        let (a, b) = (self.decode_element(a)?, self.decode_element(b)?);
        Ok(self.secret(&((a * b) % &self.p)))
    }

    fn invert_element(&self, a: &[u8]) -> Result<SecretBytes> {
        let a = self.decode_element(a)?;
        // p is prime and 0 < a < p: the inverse exists.
        let inv = a.modinv(&self.p).ok_or_else(|| {
            PluginError::new(ErrorCode::INTERNAL, "element has no inverse modulo p")
        })?;
        Ok(self.secret(&inv))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `floor(2^bits * pi)` by Machin's formula, with 64 guard bits.
    fn pi_fixed(bits: usize) -> BigUint {
        let one = BigUint::one() << (bits + 64);
        let atan_inv = |x: u32| {
            let (mut sum_pos, mut sum_neg) = (BigUint::zero(), BigUint::zero());
            let mut term = &one / x;
            let x2 = x * x;
            let mut k = 1u32;
            let mut positive = true;
            while !term.is_zero() {
                if positive {
                    sum_pos += &term / k;
                } else {
                    sum_neg += &term / k;
                }
                term /= x2;
                k += 2;
                positive = !positive;
            }
            sum_pos - sum_neg
        };
        (atan_inv(5) * 16u32 - atan_inv(239) * 4u32) >> 64
    }

    /// `floor(2^bits * e)` by the factorial series, with 64 guard bits.
    fn e_fixed(bits: usize) -> BigUint {
        let mut term = BigUint::one() << (bits + 64);
        let mut sum = BigUint::zero();
        let mut k = 1u32;
        while !term.is_zero() {
            sum += &term;
            term /= k;
            k += 1;
        }
        sum >> 64
    }

    fn p_of(name: &str) -> BigUint {
        let spec = GROUPS.iter().find(|g| g.name == name).unwrap();
        BigUint::parse_bytes(spec.p_hex.as_bytes(), 16).unwrap()
    }

    /// RFC 3526: p = 2^b - 2^(b-64) - 1 + 2^64 * ( floor(2^(b-130) pi) + X ).
    #[test]
    fn rfc3526_primes_match_their_formula() {
        for (name, b, x) in [("modp2048", 2048, 124476u32), ("modp3072", 3072, 1690314)] {
            let two = BigUint::from(2u32);
            let expected = two.pow(b) - two.pow(b - 64) - 1u32
                + two.pow(64) * (pi_fixed(b as usize - 130) + x);
            assert_eq!(p_of(name), expected, "{name}");
        }
    }

    /// RFC 7919: p = 2^b - 2^(b-64) + ( floor(2^(b-130) e) + X ) * 2^64 - 1.
    #[test]
    fn rfc7919_primes_match_their_formula() {
        for (name, b, x) in [
            ("ffdhe2048", 2048, 560316u32),
            ("ffdhe3072", 3072, 2625351),
            ("ffdhe4096", 4096, 5736041),
        ] {
            let two = BigUint::from(2u32);
            let expected =
                two.pow(b) - two.pow(b - 64) + (e_fixed(b as usize - 130) + x) * two.pow(64) - 1u32;
            assert_eq!(p_of(name), expected, "{name}");
        }
    }

    #[test]
    fn generator_two_has_order_q() {
        for spec in GROUPS {
            let g = ModpGroup::new(*spec, Arc::default());
            assert_eq!(BigUint::from(2u32).modpow(g.q(), g.p()), BigUint::one());
        }
    }

    #[test]
    fn jacobi_agrees_with_euler_criterion() {
        let g = ModpGroup::new(GROUPS[2], Arc::default());
        let mut x = BigUint::from(3u32);
        for i in 0..40u32 {
            // A spread of values, residues and non-residues.
            x = (&x * &x + BigUint::from(i * 7919 + 1)) % g.p();
            let euler = x.modpow(g.q(), g.p());
            let expected = if euler.is_one() { 1 } else { -1 };
            assert_eq!(jacobi(&x, g.p()), expected);
        }
        assert_eq!(jacobi(&BigUint::zero(), g.p()), 0);
        assert_eq!(jacobi(&(g.p() - 1u32), g.p()), -1, "p = 3 mod 4");
    }

    #[test]
    fn jacobi_small_values() {
        // (a/15) for a = 1..14, from the definition.
        let table = [1, 1, 0, 1, 0, 0, -1, 1, 0, 0, -1, 0, -1, -1];
        for (a, want) in (1u32..15).zip(table) {
            assert_eq!(
                jacobi(&BigUint::from(a), &BigUint::from(15u32)),
                want,
                "a={a}"
            );
        }
    }
}
