//! Diffie-Hellman groups on OpenSSL: the safe-prime MODP/ffdhe groups on `BIGNUM` with
//! constant-time modular exponentiation, and NIST P-256 on `EC_POINT`.
//!
//! Encodings are those of the rustcrypto provider, so that elements and scalars move
//! freely between providers: finite-field elements and scalars are big-endian and as long
//! as the modulus; P-256 elements are uncompressed SEC1 points (65 bytes) and scalars
//! 32-byte big-endian integers in `[1, n-1]`.
//!
//! Secret scalars and results live in `BN_secure_new` numbers and `BN_CTX_secure_new`
//! contexts, which OpenSSL wipes when it frees them; the exponent of every exponentiation
//! carries `BN_FLG_CONSTTIME`, so OpenSSL takes its constant-time Montgomery ladder.

use std::cmp::Ordering;
use std::sync::Arc;

use conclave_plugin_sdk::{
    ErrorCode, PluginError, SecretBytes,
    counters::{Counters, Op},
    implement::DhGroupImpl,
};
use openssl::{
    bn::{BigNum, BigNumContext, BigNumRef},
    ec::{EcGroup, EcPoint, PointConversionForm},
    nid::Nid,
};

use crate::{Result, ossl, rng};

/// Description of one safe-prime group (shared with every provider).
pub use conclave_plugin_sdk::groups::SafePrimeGroup as GroupSpec;

/// Every finite-field group this provider offers: the same as the rustcrypto provider's.
pub use conclave_plugin_sdk::groups::SAFE_PRIME_GROUPS as GROUPS;

fn invalid_element(group: &str, why: impl std::fmt::Display) -> PluginError {
    PluginError::new(ErrorCode::INVALID_ELEMENT, format!("{group}: {why}"))
}

fn invalid_scalar(group: &str, why: impl std::fmt::Display) -> PluginError {
    PluginError::new(ErrorCode::INVALID_SCALAR, format!("{group}: {why}"))
}

/// A number that OpenSSL wipes when it frees it.
fn secure_from(bytes: &[u8]) -> Result<BigNum> {
    let mut n = BigNum::new_secure().map_err(ossl("BN_secure_new"))?;
    n.copy_from_slice(bytes).map_err(ossl("BN_bin2bn"))?;
    Ok(n)
}

fn secure_zero() -> Result<BigNum> {
    BigNum::new_secure().map_err(ossl("BN_secure_new"))
}

fn ctx() -> Result<BigNumContext> {
    BigNumContext::new_secure().map_err(ossl("BN_CTX_secure_new"))
}

fn is_one(n: &BigNumRef) -> bool {
    n.num_bits() == 1
}

/// Big-endian bytes of `n`, left-padded to `len`, as a wiped-on-drop buffer.
fn padded(n: &BigNumRef, len: usize) -> Result<SecretBytes> {
    let len =
        i32::try_from(len).map_err(|_| PluginError::new(ErrorCode::INTERNAL, "length overflow"))?;
    n.to_vec_padded(len)
        .map(SecretBytes::new)
        .map_err(ossl("BN_bn2binpad"))
}

/// The Jacobi symbol `(a / n)` for odd positive `n`. Variable-time: for public values.
pub fn jacobi(a: &BigNumRef, n: &BigNumRef) -> Result<i8> {
    let mut ctx = BigNumContext::new().map_err(ossl("BN_CTX_new"))?;
    let mut a_cur = BigNum::new().map_err(ossl("BN_new"))?;
    a_cur.nnmod(a, n, &mut ctx).map_err(ossl("BN_nnmod"))?;
    let mut n_cur = n.to_owned().map_err(ossl("BN_dup"))?;
    let mut tmp = BigNum::new().map_err(ossl("BN_new"))?;
    let mut result = 1i8;
    let low =
        |x: &BigNumRef, bits: i32| (0..bits).fold(0u8, |v, i| v | (u8::from(x.is_bit_set(i)) << i));
    while a_cur.num_bits() != 0 {
        let mut twos = 0;
        while !a_cur.is_bit_set(twos) {
            twos += 1;
        }
        // (2 / n) = -1 iff n = 3 or 5 (mod 8).
        if twos % 2 == 1 && matches!(low(&n_cur, 3), 3 | 5) {
            result = -result;
        }
        tmp.rshift(&a_cur, twos).map_err(ossl("BN_rshift"))?;
        // Quadratic reciprocity: flip if both are 3 (mod 4).
        if low(&tmp, 2) == 3 && low(&n_cur, 2) == 3 {
            result = -result;
        }
        // (a, n) <- (n mod a, a)
        a_cur
            .nnmod(&n_cur, &tmp, &mut ctx)
            .map_err(ossl("BN_nnmod"))?;
        std::mem::swap(&mut n_cur, &mut tmp);
    }
    Ok(if is_one(&n_cur) { result } else { 0 })
}

/// A safe-prime group with `g = 2`.
pub struct FfdhGroup {
    spec: GroupSpec,
    p: BigNum,
    q: BigNum,
    p_minus_1: BigNum,
    g: BigNum,
    len: usize,
    counters: Arc<Counters>,
}

impl FfdhGroup {
    /// The group described by `spec`.
    pub fn new(spec: GroupSpec, counters: Arc<Counters>) -> Result<Self> {
        let p = BigNum::from_hex_str(spec.p_hex).map_err(ossl("BN_hex2bn"))?;
        let mut p_minus_1 = p.to_owned().map_err(ossl("BN_dup"))?;
        p_minus_1.sub_word(1).map_err(ossl("BN_sub_word"))?;
        let mut q = BigNum::new().map_err(ossl("BN_new"))?;
        q.rshift(&p_minus_1, 1).map_err(ossl("BN_rshift"))?;
        let len = usize::try_from(p.num_bytes())
            .map_err(|_| PluginError::new(ErrorCode::INTERNAL, "modulus length"))?;
        Ok(Self {
            spec,
            g: BigNum::from_u32(2).map_err(ossl("BN_set_word"))?,
            p,
            q,
            p_minus_1,
            len,
            counters,
        })
    }

    fn decode_element(&self, bytes: &[u8]) -> Result<BigNum> {
        let name = self.spec.name;
        if bytes.len() != self.len {
            return Err(invalid_element(
                name,
                format_args!("element must be {} bytes, got {}", self.len, bytes.len()),
            ));
        }
        let v = BigNum::from_slice(bytes).map_err(ossl("BN_bin2bn"))?;
        if v.num_bits() == 0 || v.ucmp(&self.p) != Ordering::Less {
            return Err(invalid_element(name, "element out of range [1, p-1]"));
        }
        Ok(v)
    }

    fn decode_scalar(&self, bytes: &[u8]) -> Result<BigNum> {
        let name = self.spec.name;
        if bytes.len() != self.len {
            return Err(invalid_scalar(
                name,
                format_args!("scalar must be {} bytes, got {}", self.len, bytes.len()),
            ));
        }
        let mut x = secure_from(bytes)?;
        if x.num_bits() == 0 || x.ucmp(&self.q) != Ordering::Less {
            return Err(invalid_scalar(name, "scalar out of range [1, q-1]"));
        }
        x.set_const_time();
        Ok(x)
    }

    fn pow(&self, base: &BigNumRef, x: &BigNumRef) -> Result<SecretBytes> {
        let mut ctx = ctx()?;
        let mut out = secure_zero()?;
        out.mod_exp(base, x, &self.p, &mut ctx)
            .map_err(ossl("BN_mod_exp"))?;
        self.counters.bump(Op::Exponentiation);
        padded(&out, self.len)
    }
}

impl DhGroupImpl for FfdhGroup {
    fn name(&self) -> String {
        self.spec.name.into()
    }

    fn element_len(&self) -> usize {
        self.len
    }

    fn scalar_len(&self) -> usize {
        self.len
    }

    fn generator(&self) -> Vec<u8> {
        let mut g = vec![0u8; self.len];
        g[self.len - 1] = 2;
        g
    }

    fn random_scalar(&self) -> Result<SecretBytes> {
        loop {
            let short = rng::random(self.spec.exponent_bits / 8, &self.counters)?;
            if short.expose().iter().any(|&b| b != 0) {
                let mut full = vec![0u8; self.len - short.len()];
                full.extend_from_slice(short.expose());
                return Ok(SecretBytes::new(full));
            }
        }
    }

    fn exp_generator(&self, scalar: &[u8]) -> Result<Vec<u8>> {
        let x = self.decode_scalar(scalar)?;
        Ok(self.pow(&self.g, &x)?.into_exposed().into_vec())
    }

    fn exp(&self, element: &[u8], scalar: &[u8]) -> Result<SecretBytes> {
        let base = self.decode_element(element)?;
        let x = self.decode_scalar(scalar)?;
        self.pow(&base, &x)
    }

    fn invert_scalar(&self, scalar: &[u8]) -> Result<SecretBytes> {
        let x = self.decode_scalar(scalar)?;
        let mut ctx = ctx()?;
        let mut inv = secure_zero()?;
        inv.mod_inverse(&x, &self.q, &mut ctx)
            .map_err(|_| invalid_scalar(self.spec.name, "scalar has no inverse modulo q"))?;
        self.counters.bump(Op::Inversion);
        padded(&inv, self.len)
    }

    fn mul_scalars(&self, a: &[u8], b: &[u8]) -> Result<SecretBytes> {
        let (a, b) = (self.decode_scalar(a)?, self.decode_scalar(b)?);
        let mut ctx = ctx()?;
        let mut out = secure_zero()?;
        out.mod_mul(&a, &b, &self.q, &mut ctx)
            .map_err(ossl("BN_mod_mul"))?;
        padded(&out, self.len)
    }

    fn validate_element(&self, element: &[u8]) -> Result<()> {
        self.counters.bump(Op::Validation);
        let y = self.decode_element(element)?;
        if is_one(&y) || y.ucmp(&self.p_minus_1) == Ordering::Equal {
            return Err(invalid_element(self.spec.name, "element of order 1 or 2"));
        }
        if jacobi(&y, &self.p)? != 1 {
            return Err(invalid_element(
                self.spec.name,
                "element outside the prime-order subgroup",
            ));
        }
        Ok(())
    }

    fn mul_elements(&self, a: &[u8], b: &[u8]) -> Result<SecretBytes> {
        let (a, b) = (self.decode_element(a)?, self.decode_element(b)?);
        let mut ctx = ctx()?;
        let mut out = secure_zero()?;
        out.mod_mul(&a, &b, &self.p, &mut ctx)
            .map_err(ossl("BN_mod_mul"))?;
        padded(&out, self.len)
    }

    fn invert_element(&self, a: &[u8]) -> Result<SecretBytes> {
        let a = self.decode_element(a)?;
        let mut ctx = ctx()?;
        let mut out = secure_zero()?;
        out.mod_inverse(&a, &self.p, &mut ctx)
            .map_err(ossl("BN_mod_inverse"))?;
        padded(&out, self.len)
    }
}

/// NIST P-256 (secp256r1). Its cofactor is 1: every point on the curve but the identity
/// generates the whole group, so validation is "on the curve, not the identity".
pub struct P256 {
    group: EcGroup,
    order: BigNum,
    generator: Vec<u8>,
    counters: Arc<Counters>,
}

const P256_NAME: &str = "p256";
const P256_ELEMENT: usize = 65;
const P256_SCALAR: usize = 32;

impl P256 {
    /// The group, counting on `counters`.
    pub fn new(counters: Arc<Counters>) -> Result<Self> {
        let group =
            EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(ossl("EC_GROUP_new"))?;
        let mut ctx = BigNumContext::new().map_err(ossl("BN_CTX_new"))?;
        let mut order = BigNum::new().map_err(ossl("BN_new"))?;
        group
            .order(&mut order, &mut ctx)
            .map_err(ossl("EC_GROUP_get_order"))?;
        let generator = group
            .generator_opt()
            .ok_or_else(|| PluginError::new(ErrorCode::BACKEND, "openssl: P-256 has no generator"))?
            .to_bytes(&group, PointConversionForm::UNCOMPRESSED, &mut ctx)
            .map_err(ossl("EC_POINT_point2oct"))?;
        Ok(Self {
            group,
            order,
            generator,
            counters,
        })
    }

    fn decode_element(&self, bytes: &[u8], ctx: &mut BigNumContext) -> Result<EcPoint> {
        if bytes.len() != P256_ELEMENT || bytes[0] != 0x04 {
            return Err(invalid_element(
                P256_NAME,
                format_args!(
                    "element must be a {P256_ELEMENT}-byte uncompressed SEC1 point, got {} bytes",
                    bytes.len()
                ),
            ));
        }
        let point = EcPoint::from_bytes(&self.group, bytes, ctx)
            .map_err(|_| invalid_element(P256_NAME, "not a point on the curve"))?;
        if point.is_infinity(&self.group) {
            return Err(invalid_element(P256_NAME, "the identity"));
        }
        Ok(point)
    }

    fn decode_scalar(&self, bytes: &[u8]) -> Result<BigNum> {
        if bytes.len() != P256_SCALAR {
            return Err(invalid_scalar(
                P256_NAME,
                format_args!("scalar must be {P256_SCALAR} bytes, got {}", bytes.len()),
            ));
        }
        let mut x = secure_from(bytes)?;
        if x.num_bits() == 0 || x.ucmp(&self.order) != Ordering::Less {
            return Err(invalid_scalar(P256_NAME, "scalar out of range [1, n-1]"));
        }
        x.set_const_time();
        Ok(x)
    }

    fn encode(&self, point: &EcPoint, ctx: &mut BigNumContext) -> Result<Vec<u8>> {
        point
            .to_bytes(&self.group, PointConversionForm::UNCOMPRESSED, ctx)
            .map_err(ossl("EC_POINT_point2oct"))
    }
}

impl DhGroupImpl for P256 {
    fn name(&self) -> String {
        P256_NAME.into()
    }

    fn element_len(&self) -> usize {
        P256_ELEMENT
    }

    fn scalar_len(&self) -> usize {
        P256_SCALAR
    }

    fn generator(&self) -> Vec<u8> {
        self.generator.clone()
    }

    fn random_scalar(&self) -> Result<SecretBytes> {
        let mut x = secure_zero()?;
        // Uniform in [1, n-1]: a uniform value below n-1, plus one.
        let mut n_minus_1 = self.order.to_owned().map_err(ossl("BN_dup"))?;
        n_minus_1.sub_word(1).map_err(ossl("BN_sub_word"))?;
        n_minus_1
            .rand_range(&mut x)
            .map_err(|e| PluginError::new(ErrorCode::RNG_FAILURE, format!("BN_rand_range: {e}")))?;
        x.add_word(1).map_err(ossl("BN_add_word"))?;
        self.counters.add_random(P256_SCALAR);
        padded(&x, P256_SCALAR)
    }

    fn exp_generator(&self, scalar: &[u8]) -> Result<Vec<u8>> {
        let x = self.decode_scalar(scalar)?;
        let mut ctx = ctx()?;
        let mut out = EcPoint::new(&self.group).map_err(ossl("EC_POINT_new"))?;
        out.mul_generator2(&self.group, &x, &mut ctx)
            .map_err(ossl("EC_POINT_mul"))?;
        self.counters.bump(Op::Exponentiation);
        self.encode(&out, &mut ctx)
    }

    fn exp(&self, element: &[u8], scalar: &[u8]) -> Result<SecretBytes> {
        let mut ctx = ctx()?;
        let base = self.decode_element(element, &mut ctx)?;
        let x = self.decode_scalar(scalar)?;
        let mut out = EcPoint::new(&self.group).map_err(ossl("EC_POINT_new"))?;
        out.mul2(&self.group, &base, &x, &mut ctx)
            .map_err(ossl("EC_POINT_mul"))?;
        self.counters.bump(Op::Exponentiation);
        self.encode(&out, &mut ctx).map(SecretBytes::new)
    }

    fn invert_scalar(&self, scalar: &[u8]) -> Result<SecretBytes> {
        let x = self.decode_scalar(scalar)?;
        let mut ctx = ctx()?;
        let mut inv = secure_zero()?;
        inv.mod_inverse(&x, &self.order, &mut ctx)
            .map_err(|_| invalid_scalar(P256_NAME, "scalar has no inverse modulo n"))?;
        self.counters.bump(Op::Inversion);
        padded(&inv, P256_SCALAR)
    }

    fn mul_scalars(&self, a: &[u8], b: &[u8]) -> Result<SecretBytes> {
        let (a, b) = (self.decode_scalar(a)?, self.decode_scalar(b)?);
        let mut ctx = ctx()?;
        let mut out = secure_zero()?;
        out.mod_mul(&a, &b, &self.order, &mut ctx)
            .map_err(ossl("BN_mod_mul"))?;
        padded(&out, P256_SCALAR)
    }

    fn validate_element(&self, element: &[u8]) -> Result<()> {
        self.counters.bump(Op::Validation);
        let mut ctx = BigNumContext::new().map_err(ossl("BN_CTX_new"))?;
        self.decode_element(element, &mut ctx).map(drop)
    }

    fn mul_elements(&self, a: &[u8], b: &[u8]) -> Result<SecretBytes> {
        let mut ctx = ctx()?;
        let (a, b) = (
            self.decode_element(a, &mut ctx)?,
            self.decode_element(b, &mut ctx)?,
        );
        let mut out = EcPoint::new(&self.group).map_err(ossl("EC_POINT_new"))?;
        out.add(&self.group, &a, &b, &mut ctx)
            .map_err(ossl("EC_POINT_add"))?;
        if out.is_infinity(&self.group) {
            return Err(invalid_element(
                P256_NAME,
                "the product is the identity, which has no uncompressed encoding",
            ));
        }
        self.encode(&out, &mut ctx).map(SecretBytes::new)
    }

    fn invert_element(&self, a: &[u8]) -> Result<SecretBytes> {
        let mut ctx = ctx()?;
        let mut a = self.decode_element(a, &mut ctx)?;
        a.invert2(&self.group, &mut ctx)
            .map_err(ossl("EC_POINT_invert"))?;
        self.encode(&a, &mut ctx).map(SecretBytes::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bn(v: u32) -> BigNum {
        BigNum::from_u32(v).unwrap()
    }

    #[test]
    fn jacobi_small_values() {
        // (a/15) for a = 1..14, from the definition.
        let table = [1, 1, 0, 1, 0, 0, -1, 1, 0, 0, -1, 0, -1, -1];
        for (a, want) in (1u32..15).zip(table) {
            assert_eq!(jacobi(&bn(a), &bn(15)).unwrap(), want, "a={a}");
        }
        assert_eq!(jacobi(&bn(0), &bn(7)).unwrap(), 0);
    }

    #[test]
    fn jacobi_agrees_with_euler_criterion() {
        let g = FfdhGroup::new(GROUPS[2], Arc::default()).unwrap();
        let mut ctx = BigNumContext::new().unwrap();
        let mut x = bn(3);
        for i in 0..40u32 {
            let mut sq = BigNum::new().unwrap();
            sq.mod_sqr(&x, &g.p, &mut ctx).unwrap();
            sq.add_word(i * 7919 + 1).unwrap();
            x.nnmod(&sq, &g.p, &mut ctx).unwrap();
            let mut euler = BigNum::new().unwrap();
            euler.mod_exp(&x, &g.q, &g.p, &mut ctx).unwrap();
            let expected = if is_one(&euler) { 1 } else { -1 };
            assert_eq!(jacobi(&x, &g.p).unwrap(), expected);
        }
    }

    #[test]
    fn generator_has_order_q() {
        for spec in GROUPS {
            let g = FfdhGroup::new(*spec, Arc::default()).unwrap();
            let mut ctx = BigNumContext::new().unwrap();
            let mut r = BigNum::new().unwrap();
            r.mod_exp(&g.g, &g.q, &g.p, &mut ctx).unwrap();
            assert!(is_one(&r), "{}", spec.name);
        }
    }
}
