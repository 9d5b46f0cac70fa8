//! The Ristretto255 prime-order group (curve25519-dalek).

use std::sync::{Arc, Mutex};

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
///
/// Decoding an element costs a field exponentiation (an inverse square root), as does
/// encoding one, against about a tenth of that for the group operation itself. A chain
/// of products, such as Burmester-Desmedt's key, feeds each product back in, so the
/// group keeps its last two products decoded: a link of the chain then decodes one
/// element instead of three (and the chain costs half as much). The products may be
/// secret: they are wiped when replaced and when the group is dropped.
pub struct Ristretto255 {
    counters: Arc<Counters>,
    decoded: Mutex<Decoded>,
}

#[derive(Default)]
struct Decoded {
    products: [Option<([u8; 32], RistrettoPoint)>; 2],
}

impl Decoded {
    fn get(&self, bytes: &[u8]) -> Option<RistrettoPoint> {
        self.products
            .iter()
            .flatten()
            .find(|(e, _)| e[..] == *bytes)
            .map(|(_, p)| *p)
    }

    fn keep_product(&mut self, encoding: [u8; 32], point: RistrettoPoint) {
        // The older one is wiped where it lies, then overwritten.
        if let Some((e, p)) = self.products[1].as_mut() {
            e.zeroize();
            p.zeroize();
        }
        self.products.swap(0, 1);
        self.products[0] = Some((encoding, point));
    }
}

impl Drop for Decoded {
    fn drop(&mut self) {
        for (e, p) in self.products.iter_mut().flatten() {
            e.zeroize();
            p.zeroize();
        }
    }
}

impl Ristretto255 {
    /// The group, counting on `counters`.
    pub fn new(counters: Arc<Counters>) -> Self {
        Self {
            counters,
            decoded: Mutex::new(Decoded::default()),
        }
    }

    fn decoded(&self) -> std::sync::MutexGuard<'_, Decoded> {
        self.decoded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `bytes` decoded, from what the group kept if it can.
    fn point(&self, bytes: &[u8]) -> Result<RistrettoPoint> {
        match self.decoded().get(bytes) {
            Some(p) => Ok(p),
            None => point(bytes),
        }
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
        let p = self.point(element)?;
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
        let r = self.point(a)? + self.point(b)?;
        let encoding = r.compress().to_bytes();
        let out = SecretBytes::copy_from(&encoding);
        self.decoded().keep_product(encoding, r);
        Ok(out)
    }

    fn invert_element(&self, a: &[u8]) -> Result<SecretBytes> {
        let r = -self.point(a)?;
        Ok(SecretBytes::copy_from(r.compress().as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> Ristretto255 {
        Ristretto255::new(Arc::new(Counters::default()))
    }

    /// A chain of products (Burmester-Desmedt's key) through one group object, which
    /// answers from the products it kept decoded, equals the same chain through fresh
    /// objects.
    #[test]
    fn products_from_kept_decodings_equal_fresh_ones() {
        let g = group();
        let xs: Vec<Vec<u8>> = (0..40)
            .map(|_| {
                let s = g.random_scalar().unwrap();
                g.exp_generator(s.expose()).unwrap()
            })
            .collect();
        let (mut a, mut key) = (xs[0].clone(), xs[0].clone());
        let (mut fa, mut fkey) = (xs[0].clone(), xs[0].clone());
        for x in &xs[1..] {
            a = g.mul_elements(&a, x).unwrap().expose().to_vec();
            key = g.mul_elements(&key, &a).unwrap().expose().to_vec();
            fa = group().mul_elements(&fa, x).unwrap().expose().to_vec();
            fkey = group().mul_elements(&fkey, &fa).unwrap().expose().to_vec();
            assert_eq!((&a, &key), (&fa, &fkey));
        }
        // The inverse and exponentiation of a kept element agree too.
        let s = g.random_scalar().unwrap();
        assert_eq!(
            g.exp(&key, s.expose()).unwrap(),
            group().exp(&key, s.expose()).unwrap()
        );
        assert_eq!(
            g.invert_element(&a).unwrap(),
            group().invert_element(&a).unwrap()
        );
        // A malformed element is refused whatever was kept.
        assert!(g.mul_elements(&[0xff; 32], &xs[1]).is_err());
    }
}
