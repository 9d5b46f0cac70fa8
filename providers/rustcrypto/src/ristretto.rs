//! The Ristretto255 prime-order group (curve25519-dalek).

use std::sync::Arc;

use conclave_plugin_sdk::{
    ErrorCode, PluginError, SecretBytes,
    counters::{Counters, Op},
    implement::DhGroupImpl,
};
use curve25519_dalek::{
    RistrettoPoint, Scalar, constants::RISTRETTO_BASEPOINT_COMPRESSED,
    ristretto::CompressedRistretto, traits::IsIdentity,
};
use zeroize::Zeroize;

use crate::rng;

type Result<T> = std::result::Result<T, PluginError>;

/// Ristretto255: 32-byte elements and little-endian scalars modulo the group order `l`.
pub struct Ristretto255 {
    counters: Arc<Counters>,
}

impl Ristretto255 {
    /// The group, counting on `counters`.
    pub fn new(counters: Arc<Counters>) -> Self {
        Self { counters }
    }
}

fn scalar(bytes: &[u8]) -> Result<Scalar> {
    let mut arr: [u8; 32] = bytes.try_into().map_err(|_| {
        PluginError::new(
            ErrorCode::INVALID_SCALAR,
            format!("ristretto255: scalar must be 32 bytes, got {}", bytes.len()),
        )
    })?;
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(arr));
    arr.zeroize();
    match s {
        Some(s) if s != Scalar::ZERO => Ok(s),
        _ => Err(PluginError::new(
            ErrorCode::INVALID_SCALAR,
            "ristretto255: scalar is zero or not reduced modulo l",
        )),
    }
}

fn point(bytes: &[u8]) -> Result<RistrettoPoint> {
    let c = CompressedRistretto::from_slice(bytes).map_err(|_| {
        PluginError::new(
            ErrorCode::INVALID_ELEMENT,
            format!(
                "ristretto255: element must be 32 bytes, got {}",
                bytes.len()
            ),
        )
    })?;
    c.decompress().ok_or_else(|| {
        PluginError::new(
            ErrorCode::INVALID_ELEMENT,
            "ristretto255: not a canonical encoding of a group element",
        )
    })
}

fn secret_scalar(mut s: Scalar) -> SecretBytes {
    let out = SecretBytes::copy_from(s.as_bytes());
    s.zeroize();
    out
}

impl DhGroupImpl for Ristretto255 {
    fn name(&self) -> String {
        "ristretto255".into()
    }

    fn element_len(&self) -> usize {
        32
    }

    fn scalar_len(&self) -> usize {
        32
    }

    fn generator(&self) -> Vec<u8> {
        RISTRETTO_BASEPOINT_COMPRESSED.as_bytes().to_vec()
    }

    fn random_scalar(&self) -> Result<SecretBytes> {
        loop {
            let wide = rng::random(64, &self.counters)?;
            let mut arr = [0u8; 64];
            arr.copy_from_slice(wide.expose());
            let s = Scalar::from_bytes_mod_order_wide(&arr);
            arr.zeroize();
            if s != Scalar::ZERO {
                return Ok(secret_scalar(s));
            }
        }
    }

    fn exp_generator(&self, scalar_bytes: &[u8]) -> Result<Vec<u8>> {
        let mut s = scalar(scalar_bytes)?;
        self.counters.bump(Op::Exponentiation);
        let p = RistrettoPoint::mul_base(&s);
        s.zeroize();
        Ok(p.compress().as_bytes().to_vec())
    }

    fn exp(&self, element: &[u8], scalar_bytes: &[u8]) -> Result<SecretBytes> {
        let p = point(element)?;
        let mut s = scalar(scalar_bytes)?;
        self.counters.bump(Op::Exponentiation);
        let r = p * s;
        s.zeroize();
        Ok(SecretBytes::copy_from(r.compress().as_bytes()))
    }

    fn invert_scalar(&self, scalar_bytes: &[u8]) -> Result<SecretBytes> {
        let mut s = scalar(scalar_bytes)?;
        self.counters.bump(Op::Inversion);
        let inv = s.invert();
        s.zeroize();
        Ok(secret_scalar(inv))
    }

    fn mul_scalars(&self, a: &[u8], b: &[u8]) -> Result<SecretBytes> {
        let (mut a, mut b) = (scalar(a)?, scalar(b)?);
        let r = a * b;
        a.zeroize();
        b.zeroize();
        Ok(secret_scalar(r))
    }

    fn validate_element(&self, element: &[u8]) -> Result<()> {
        self.counters.bump(Op::Validation);
        // Ristretto255 has prime order: every decodable element other than the identity
        // generates the whole group.
        if point(element)?.is_identity() {
            return Err(PluginError::new(
                ErrorCode::INVALID_ELEMENT,
                "ristretto255: the identity element",
            ));
        }
        Ok(())
    }

    fn mul_elements(&self, a: &[u8], b: &[u8]) -> Result<SecretBytes> {
        let r = point(a)? + point(b)?;
        Ok(SecretBytes::copy_from(r.compress().as_bytes()))
    }

    fn invert_element(&self, a: &[u8]) -> Result<SecretBytes> {
        let r = -point(a)?;
        Ok(SecretBytes::copy_from(r.compress().as_bytes()))
    }
}
