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
///
/// Decoding an element costs a field exponentiation (an inverse square root), as does
/// encoding one, against about a tenth of that for the group operation itself: a chain
/// of products such as Burmester-Desmedt's key is [`DhGroupImpl::chain_product`], which
/// decodes each factor once and encodes once.
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
        let mut r = point(a)? + point(b)?;
        Ok(encode_secret(&mut r))
    }

    fn invert_element(&self, a: &[u8]) -> Result<SecretBytes> {
        let mut r = -point(a)?;
        Ok(encode_secret(&mut r))
    }

    fn chain_product(&self, start: &[u8], factors: &[&[u8]]) -> Result<SecretBytes> {
        let mut a = point(start)?;
        let mut product = a;
        let mut out = Ok(());
        for f in factors {
            match point(f) {
                Ok(f) => {
                    a += f;
                    product += a;
                }
                Err(e) => {
                    out = Err(e);
                    break;
                }
            }
        }
        a.zeroize();
        let result = out.map(|()| encode_secret(&mut product));
        product.zeroize();
        result
    }
}

/// `p`'s encoding as a secret; `p` is wiped.
fn encode_secret(p: &mut RistrettoPoint) -> SecretBytes {
    let mut encoding = p.compress().to_bytes();
    p.zeroize();
    let out = SecretBytes::copy_from(&encoding);
    encoding.zeroize();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> Ristretto255 {
        Ristretto255::new(Arc::new(Counters::default()))
    }

    /// A chain product equals its `2m` multiplications one by one, at every length.
    #[test]
    fn a_chain_product_equals_its_multiplications() {
        let g = group();
        let xs: Vec<Vec<u8>> = (0..40)
            .map(|_| {
                let s = g.random_scalar().unwrap();
                g.exp_generator(s.expose()).unwrap()
            })
            .collect();
        let (mut a, mut key) = (xs[0].clone(), xs[0].clone());
        for m in 1..xs.len() {
            a = g.mul_elements(&a, &xs[m]).unwrap().expose().to_vec();
            key = g.mul_elements(&key, &a).unwrap().expose().to_vec();
            let factors: Vec<&[u8]> = xs[1..=m].iter().map(Vec::as_slice).collect();
            assert_eq!(
                g.chain_product(&xs[0], &factors).unwrap().expose(),
                &key[..]
            );
        }
        assert_eq!(g.chain_product(&xs[0], &[]).unwrap().expose(), &xs[0][..]);
        // start^3 * x^2 * y: the closed form for m = 2.
        let (x, y) = (&xs[1], &xs[2]);
        let three = Scalar::from(3u64).to_bytes();
        let two = Scalar::from(2u64).to_bytes();
        let closed = g
            .mul_elements(
                g.mul_elements(
                    g.exp(&xs[0], &three).unwrap().expose(),
                    g.exp(x, &two).unwrap().expose(),
                )
                .unwrap()
                .expose(),
                y,
            )
            .unwrap();
        assert_eq!(g.chain_product(&xs[0], &[x, y]).unwrap(), closed);
        // A malformed element anywhere is refused.
        assert!(g.mul_elements(&[0xff; 32], &xs[1]).is_err());
        assert!(g.chain_product(&[0xff; 32], &[x]).is_err());
        assert!(g.chain_product(&xs[0], &[x, &[0xff; 32], y]).is_err());
    }
}
