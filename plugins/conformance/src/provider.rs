//! Provider checks: known answers for every primitive offered, and DH algebra and
//! element validation for every group offered.

use conclave_plugin_sdk::{
    AlgorithmClass, ErrorCode, PluginError,
    api::{PluginModuleRef, ProviderConfig},
    groups::safe_prime_hex,
    host::{DhGroup, Provider},
};

use crate::{
    Report, ensure,
    vectors::{standards, unhex},
};

/// Every provider check.
pub fn all(p: &Provider) -> Report {
    let mut r = known_answers(p);
    r.merge(dh_algebra(p));
    r.merge(signatures(p));
    r.merge(misuse(p));
    r
}

/// For every signature algorithm offered, with a freshly generated key: sign and verify,
/// and refuse a flipped signature bit, another message, another key and a garbage key.
pub fn signatures(p: &Provider) -> Report {
    let mut r = Report::default();
    for a in p.algorithms() {
        if a.class != AlgorithmClass::Signature {
            continue;
        }
        let name = a.name.to_string();
        r.check(
            format!("signature {name}: generate, sign, verify, refuse forgeries"),
            (|| {
                let sk = p.generate_signing_key(&name).map_err(err)?;
                let s = p.signer(&name, sk.expose()).map_err(err)?;
                let pk = s.public_key();
                let msg = b"conclave signature round trip".to_vec();
                let sig = s.sign(&msg).map_err(err)?;
                p.verify(&name, &pk, &msg, &sig).map_err(err)?;
                let mut bad = sig.clone();
                let mid = bad.len() / 2;
                bad[mid] ^= 0x10;
                expect_code(p.verify(&name, &pk, &msg, &bad), ErrorCode::BAD_SIGNATURE)?;
                expect_code(
                    p.verify(&name, &pk, b"another message", &sig),
                    ErrorCode::BAD_SIGNATURE,
                )?;
                let other = p.generate_signing_key(&name).map_err(err)?;
                let other_pk = p.signer(&name, other.expose()).map_err(err)?.public_key();
                ensure(other_pk != pk, || "two generated keys are equal".into())?;
                expect_code(
                    p.verify(&name, &other_pk, &msg, &sig),
                    ErrorCode::BAD_SIGNATURE,
                )?;
                expect_code(
                    p.verify(&name, &[7u8; 5], &msg, &sig),
                    ErrorCode::INVALID_KEY,
                )?;
                expect_code(p.signer(&name, &[7u8; 5]), ErrorCode::INVALID_KEY)
            })(),
        );
        if name == "ed25519" {
            r.check(
                "signature ed25519: strict (RFC 8032 5.1.7): small-order and non-canonical keys, R and S refused".to_string(),
                ed25519_strict(p),
            );
        }
    }
    r
}

/// The group order L of Ed25519, little-endian (RFC 8032).
const ED25519_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// One notion of a valid Ed25519 signature for every provider: a public key that is a
/// point of small order (the eight torsion points) or a non-canonical encoding
/// (y = p, y = p + 1, and the torsion points with y + p where it fits) is refused as
/// an invalid key, even with the signature (R = identity, S = 0) that verifies under
/// it in a lax verifier; a signature whose R is of small order, or whose S is not
/// reduced (S + L), is refused as a bad signature.
fn ed25519_strict(p: &Provider) -> Result<(), String> {
    use curve25519_dalek::constants::EIGHT_TORSION;
    let name = "ed25519";
    let msg = b"conclave strict ed25519".to_vec();
    let identity_sig = {
        let mut s = [0u8; 64];
        s[0] = 1; // R = the identity point; S = 0
        s
    };
    let mut weak: Vec<[u8; 32]> = EIGHT_TORSION
        .iter()
        .map(|t| t.compress().to_bytes())
        .collect();
    let mut y_is_p = [0xffu8; 32];
    y_is_p[0] = 0xed;
    y_is_p[31] = 0x7f;
    let mut y_is_p1 = y_is_p;
    y_is_p1[0] = 0xee;
    weak.extend([y_is_p, y_is_p1]);
    for key in &weak {
        expect_code(
            p.verify(name, key, &msg, &identity_sig),
            ErrorCode::INVALID_KEY,
        )
        .map_err(|e| format!("public key {}: {e}", hex::encode(key)))?;
    }
    // A real key and signature, then R swapped for a small-order point, and S + L.
    let sk = p.generate_signing_key(name).map_err(err)?;
    let s = p.signer(name, sk.expose()).map_err(err)?;
    let pk = s.public_key();
    let sig = s.sign(&msg).map_err(err)?;
    p.verify(name, &pk, &msg, &sig).map_err(err)?;
    for t in EIGHT_TORSION.iter() {
        let mut bad = sig.clone();
        bad[..32].copy_from_slice(&t.compress().to_bytes());
        expect_code(p.verify(name, &pk, &msg, &bad), ErrorCode::BAD_SIGNATURE)
            .map_err(|e| format!("R of small order: {e}"))?;
    }
    let mut unreduced = sig.clone();
    let mut carry = 0u16;
    for (i, l) in ED25519_L.iter().enumerate() {
        let v = u16::from(unreduced[32 + i]) + u16::from(*l) + carry;
        unreduced[32 + i] = v as u8;
        carry = v >> 8;
    }
    ensure(carry == 0, || "S + L overflowed".into())?;
    expect_code(
        p.verify(name, &pk, &msg, &unreduced),
        ErrorCode::BAD_SIGNATURE,
    )
    .map_err(|e| format!("S + L (not reduced): {e}"))
}

fn offers(p: &Provider, class: AlgorithmClass, name: &str) -> bool {
    p.algorithms()
        .iter()
        .any(|a| a.class == class && a.name.as_str() == name)
}

fn err(e: PluginError) -> String {
    e.to_string()
}

fn expect_code<T>(r: Result<T, PluginError>, code: ErrorCode) -> Result<(), String> {
    match r {
        Ok(_) => Err(format!("accepted; expected error {code}")),
        Err(e) if e.code == code => Ok(()),
        Err(e) => Err(format!("expected {code}, got {e}")),
    }
}

/// Known-answer tests from the standards, for every algorithm the provider offers.
pub fn known_answers(p: &Provider) -> Report {
    let mut r = Report::default();
    let v = standards();
    for t in &v.aead {
        let name = format!("KAT {} {}", t.algorithm, t.source);
        if !offers(p, AlgorithmClass::Aead, &t.algorithm) {
            r.skip(name);
            continue;
        }
        r.check(
            name,
            (|| {
                let mut a = p.aead(&t.algorithm, &unhex(&t.key)).map_err(err)?;
                let mut expected = unhex(&t.ciphertext);
                expected.extend(unhex(&t.tag));
                let sealed = a
                    .seal(&unhex(&t.nonce), &unhex(&t.aad), &unhex(&t.plaintext))
                    .map_err(err)?;
                ensure(sealed == expected, || {
                    format!("sealed {}", hex::encode(&sealed))
                })?;
                let opened = a
                    .open(&unhex(&t.nonce), &unhex(&t.aad), &expected)
                    .map_err(err)?;
                ensure(opened.expose() == unhex(&t.plaintext), || {
                    "open mismatch".into()
                })?;
                let mut forged = expected.clone();
                let last = forged.len() - 1;
                forged[last] ^= 1;
                expect_code(
                    a.open(&unhex(&t.nonce), &unhex(&t.aad), &forged),
                    ErrorCode::AUTHENTICATION_FAILED,
                )
            })(),
        );
    }
    for t in &v.block {
        let name = format!("KAT {} {} {}", t.algorithm, t.mode, t.source);
        if !offers(p, AlgorithmClass::BlockCipher, &t.algorithm) {
            r.skip(name);
            continue;
        }
        r.check(
            name,
            (|| {
                let mut b = p.block_cipher(&t.algorithm, &unhex(&t.key)).map_err(err)?;
                let (pt, ct, iv) = (unhex(&t.plaintext), unhex(&t.ciphertext), unhex(&t.iv));
                let (enc, dec) = if t.mode == "ecb" {
                    (
                        b.encrypt_ecb(&pt).map_err(err)?,
                        b.decrypt_ecb(&ct).map_err(err)?,
                    )
                } else {
                    (
                        b.encrypt_cbc(&iv, &pt).map_err(err)?,
                        b.decrypt_cbc(&iv, &ct).map_err(err)?,
                    )
                };
                ensure(enc == ct, || format!("encrypted {}", hex::encode(&enc)))?;
                ensure(dec.expose() == pt, || "decrypt mismatch".into())
            })(),
        );
    }
    for t in &v.hash {
        let name = format!("KAT {} {}", t.algorithm, t.source);
        if !offers(p, AlgorithmClass::Hash, &t.algorithm) {
            r.skip(name);
            continue;
        }
        r.check(
            name,
            (|| {
                let m = unhex(&t.message);
                let whole = p.hash(&t.algorithm, &[&m]).map_err(err)?;
                ensure(whole == unhex(&t.digest), || {
                    format!("digest {}", hex::encode(&whole))
                })?;
                let (a, b) = m.split_at(m.len() / 2);
                let parts = p.hash(&t.algorithm, &[a, b]).map_err(err)?;
                ensure(parts == whole, || "digest of parts differs".into())
            })(),
        );
    }
    for t in &v.mac {
        let name = format!("KAT {} {}", t.algorithm, t.source);
        if !offers(p, AlgorithmClass::Mac, &t.algorithm) {
            r.skip(name);
            continue;
        }
        r.check(
            name,
            (|| {
                let mut m = p.mac(&t.algorithm, &unhex(&t.key)).map_err(err)?;
                let msg = unhex(&t.message);
                let tag = m.compute(&[&msg]).map_err(err)?;
                ensure(tag == unhex(&t.tag), || {
                    format!("tag {}", hex::encode(&tag))
                })?;
                m.verify(&[&msg[..3], &msg[3..]], &tag).map_err(err)?;
                let mut bad = tag.clone();
                bad[0] ^= 0x80;
                expect_code(m.verify(&[&msg], &bad), ErrorCode::AUTHENTICATION_FAILED)
            })(),
        );
    }
    for t in &v.kdf {
        let name = format!("KAT {} {}", t.algorithm, t.source);
        if !offers(p, AlgorithmClass::Kdf, &t.algorithm) {
            r.skip(name);
            continue;
        }
        r.check(
            name,
            (|| {
                let okm = p
                    .hkdf(
                        &t.algorithm,
                        &unhex(&t.salt),
                        &unhex(&t.ikm),
                        &unhex(&t.info),
                        t.length,
                    )
                    .map_err(err)?;
                ensure(okm.expose() == unhex(&t.okm), || {
                    format!("okm {}", hex::encode(okm.expose()))
                })
            })(),
        );
    }
    for t in &v.signature {
        let name = format!("KAT {} {}", t.algorithm, t.source);
        if !offers(p, AlgorithmClass::Signature, &t.algorithm) {
            r.skip(name);
            continue;
        }
        r.check(
            name,
            (|| {
                let s = p.signer(&t.algorithm, &unhex(&t.secret_key)).map_err(err)?;
                ensure(s.public_key() == unhex(&t.public_key), || {
                    "public key mismatch".into()
                })?;
                let msg = unhex(&t.message);
                let sig = s.sign(&msg).map_err(err)?;
                ensure(sig == unhex(&t.signature), || {
                    format!("signature {}", hex::encode(&sig))
                })?;
                p.verify(&t.algorithm, &unhex(&t.public_key), &msg, &sig)
                    .map_err(err)?;
                let mut bad = sig.clone();
                bad[5] ^= 1;
                expect_code(
                    p.verify(&t.algorithm, &unhex(&t.public_key), &msg, &bad),
                    ErrorCode::BAD_SIGNATURE,
                )?;
                let mut other = msg.clone();
                other.push(0);
                expect_code(
                    p.verify(&t.algorithm, &unhex(&t.public_key), &other, &sig),
                    ErrorCode::BAD_SIGNATURE,
                )
            })(),
        );
    }
    r
}

/// Byte strings that are not valid elements of the group named `name`, each with a label.
pub fn invalid_elements(group: &DhGroup, name: &str) -> Vec<(&'static str, Vec<u8>)> {
    let len = group.element_len();
    let mut v = vec![
        ("too short", vec![1u8; len.saturating_sub(1)]),
        ("too long", vec![1u8; len + 1]),
        ("empty", Vec::new()),
    ];
    if let Some(p_hex) = safe_prime_hex(name) {
        let p = hex::decode(p_hex).unwrap_or_default();
        let minus = |k: u8| {
            let mut x = p.clone();
            // p ends in 0xff..., so subtracting a small k never borrows.
            let last = x.len() - 1;
            x[last] -= k;
            x
        };
        let mut one = vec![0u8; len];
        one[len - 1] = 1;
        v.extend([
            ("zero", vec![0u8; len]),
            ("identity 1", one),
            ("p-1 (order 2)", minus(1)),
            ("p-2 (outside the order-q subgroup)", minus(2)),
            ("p", p.clone()),
            ("all ones (above p)", vec![0xff; len]),
        ]);
    } else if name == "p256" && len == 65 {
        // The generator of P-256 (SEC 2, 2.4.2), uncompressed.
        let gx = "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296";
        let gy = "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5";
        let point = |prefix: &str, x: &str, y: &str| {
            hex::decode(format!("{prefix}{x}{y}")).unwrap_or_default()
        };
        let mut off_curve = point("04", gx, gy);
        off_curve[64] ^= 1;
        let p_hex = "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff";
        v.extend([
            (
                "zero point (0, 0)",
                vec![0x04; 1].into_iter().chain([0u8; 64]).collect(),
            ),
            ("off the curve (G, low bit of y flipped)", off_curve),
            ("wrong prefix", point("05", gx, gy)),
            ("hybrid form", point("07", gx, gy)),
            ("x = p", point("04", p_hex, gy)),
        ]);
    } else if name == "ristretto255" {
        v.extend([
            ("identity", vec![0u8; 32]),
            ("non-canonical", vec![0xff; 32]),
            ("negative field element", {
                let mut x = vec![0u8; 32];
                x[0] = 1;
                x
            }),
        ]);
    }
    v
}

/// DH algebra and validation for every DH group the provider offers.
pub fn dh_algebra(p: &Provider) -> Report {
    let mut r = Report::default();
    let groups: Vec<String> = p
        .algorithms()
        .into_iter()
        .filter(|a| a.class == AlgorithmClass::DhGroup)
        .map(|a| a.name.to_string())
        .collect();
    if groups.is_empty() {
        r.skip("DH algebra: no DH group offered");
    }
    for name in groups {
        let g = match p.dh_group(&name) {
            Ok(g) => g,
            Err(e) => {
                r.check(format!("DH {name}: construct"), Err(err(e)));
                continue;
            }
        };
        r.check(
            format!("DH {name}: name"),
            ensure(g.name() == name, || g.name()),
        );
        r.check(
            format!("DH {name}: g^(ab) = (g^a)^b = (g^b)^a"),
            (|| {
                let (a, b) = (
                    g.random_scalar().map_err(err)?,
                    g.random_scalar().map_err(err)?,
                );
                let ga = g.exp_generator(a.expose()).map_err(err)?;
                let gb = g.exp_generator(b.expose()).map_err(err)?;
                g.validate_element(&ga).map_err(err)?;
                g.validate_element(&gb).map_err(err)?;
                let gab = g.exp(&ga, b.expose()).map_err(err)?;
                let gba = g.exp(&gb, a.expose()).map_err(err)?;
                ensure(gab == gba, || "g^ab != g^ba".into())?;
                let ab = g.mul_scalars(a.expose(), b.expose()).map_err(err)?;
                let direct = g.exp_generator(ab.expose()).map_err(err)?;
                ensure(direct == gab.expose(), || "g^(a*b) != (g^a)^b".into())?;
                let via_exp = g.exp(&g.generator(), a.expose()).map_err(err)?;
                ensure(via_exp.expose() == ga, || {
                    "exp(g, a) != exp_generator(a)".into()
                })
            })(),
        );
        r.check(
            format!("DH {name}: (x^a)^(a^-1) = x"),
            (|| {
                let (a, c) = (
                    g.random_scalar().map_err(err)?,
                    g.random_scalar().map_err(err)?,
                );
                let x = g.exp_generator(c.expose()).map_err(err)?;
                let xa = g.exp(&x, a.expose()).map_err(err)?;
                let inv = g.invert_scalar(a.expose()).map_err(err)?;
                let back = g.exp(xa.expose(), inv.expose()).map_err(err)?;
                ensure(back.expose() == x, || {
                    "inverse exponent does not undo".into()
                })?;
                let one = g.mul_scalars(a.expose(), inv.expose()).map_err(err)?;
                let g1 = g.exp_generator(one.expose()).map_err(err)?;
                ensure(g1 == g.generator(), || "a * a^-1 != 1".into())
            })(),
        );
        r.check(
            format!("DH {name}: counts exponentiations"),
            (|| {
                let before = p.counters().exponentiations;
                let a = g.random_scalar().map_err(err)?;
                let ga = g.exp_generator(a.expose()).map_err(err)?;
                g.exp(&ga, a.expose()).map_err(err)?;
                let after = p.counters().exponentiations;
                ensure(after >= before + 2, || format!("{before} -> {after}"))
            })(),
        );
        r.check(
            format!("DH {name}: element multiplication and inversion"),
            element_algebra(&g, &name),
        );
        for (label, bad) in invalid_elements(&g, &name) {
            r.check(
                format!("DH {name}: refuses element {label}"),
                expect_code(g.validate_element(&bad), ErrorCode::INVALID_ELEMENT),
            );
        }
        r.check(format!("DH {name}: refuses the zero scalar"), {
            let zero = vec![0u8; g.scalar_len()];
            expect_code(g.exp_generator(&zero), ErrorCode::INVALID_SCALAR)
        });
        r.check(
            format!("DH {name}: random scalars differ"),
            (|| {
                let (a, b) = (
                    g.random_scalar().map_err(err)?,
                    g.random_scalar().map_err(err)?,
                );
                ensure(a != b, || "two random scalars are equal".into())
            })(),
        );
    }
    r
}

/// Published multiples of the generator: `(k, encoding of g^k)` for k = 2, 3, 5.
fn generator_multiples(name: &str) -> Vec<(u8, Vec<u8>)> {
    match name {
        // RFC 9496, appendix A.1 (multiples of the generator).
        "ristretto255" => vec![
            (
                2,
                unhex("6a493210f7499cd17fecb510ae0cea23a110e8d5b901f8acadd3095c73a3b919"),
            ),
            (
                5,
                unhex("e882b131016b52c1d3337080187cf768423efccbb517bb495ab812c4160ff44e"),
            ),
        ],
        // The NIST P-256 point-multiplication vectors (point-at-infinity.org/ecc/nisttv).
        "p256" => vec![
            (
                2,
                unhex(
                    "047CF27B188D034F7E8A52380304B51AC3C08969E277F21B35A60B48FC47669978\
                     07775510DB8ED040293D9AC69F7430DBBA7DADE63CE982299E04B79D227873D1",
                ),
            ),
            (
                3,
                unhex(
                    "045ECBE4D1A6330A44C8F7EF951D4BF165E6C6B721EFADA985FB41661BC6E7FD6C\
                     8734640C4998FF7E374B06CE1A64A2ECD82AB036384FB83D9A79B127A27D5032",
                ),
            ),
        ],
        // Safe-prime groups with g = 2: g^k is the integer 2^k, padded.
        _ => Vec::new(),
    }
}

/// `g^k` for a small `k` from the published table, or `2^k` in a finite-field group
/// (whose generator is 2), padded to the element length.
fn known_multiple(g: &DhGroup, name: &str, k: u8) -> Option<Vec<u8>> {
    if let Some((_, e)) = generator_multiples(name).into_iter().find(|(m, _)| *m == k) {
        return Some(e);
    }
    let two = {
        let mut v = vec![0u8; g.element_len()];
        *v.last_mut()? = 2;
        v
    };
    (g.generator() == two && k < 8).then(|| {
        let mut v = vec![0u8; g.element_len()];
        if let Some(last) = v.last_mut() {
            *last = 1 << k;
        }
        v
    })
}

/// `mul_elements`, `invert_element` and `chain_product`: the published multiples of the generator by
/// repeated multiplication, division undoing multiplication, exponentiation
/// distributing over the product, and malformed operands refused.
fn element_algebra(g: &DhGroup, name: &str) -> Result<(), String> {
    let generator = g.generator();
    let mut power = generator.clone();
    for k in 2..=5u8 {
        power = g
            .mul_elements(&power, &generator)
            .map_err(err)?
            .expose()
            .to_vec();
        if let Some(known) = known_multiple(g, name, k) {
            ensure(power == known, || {
                format!("g multiplied {k} times is not the published g^{k}")
            })?;
        }
    }
    ensure(known_multiple(g, name, 2).is_some(), || {
        format!("no known multiple of the generator for {name}")
    })?;
    // g^5 * (g^-1)^2 * g^-1 ... back to g^2, through inversion.
    let inv = g.invert_element(&generator).map_err(err)?;
    let mut back = power;
    for _ in 0..3 {
        back = g
            .mul_elements(&back, inv.expose())
            .map_err(err)?
            .expose()
            .to_vec();
    }
    let g2 = g.mul_elements(&generator, &generator).map_err(err)?;
    ensure(back == g2.expose(), || "g^5 * g^-3 != g^2".into())?;
    let twice = g.invert_element(inv.expose()).map_err(err)?;
    ensure(twice.expose() == generator, || "(g^-1)^-1 != g".into())?;
    // (x y)^c = x^c y^c for random x, y, c.
    let (a, b, c) = (
        g.random_scalar().map_err(err)?,
        g.random_scalar().map_err(err)?,
        g.random_scalar().map_err(err)?,
    );
    let (x, y) = (
        g.exp_generator(a.expose()).map_err(err)?,
        g.exp_generator(b.expose()).map_err(err)?,
    );
    let xy = g.mul_elements(&x, &y).map_err(err)?;
    ensure(
        xy.expose() == g.mul_elements(&y, &x).map_err(err)?.expose(),
        || "x y != y x".into(),
    )?;
    let lhs = g.exp(xy.expose(), c.expose()).map_err(err)?;
    let (xc, yc) = (
        g.exp(&x, c.expose()).map_err(err)?,
        g.exp(&y, c.expose()).map_err(err)?,
    );
    let rhs = g.mul_elements(xc.expose(), yc.expose()).map_err(err)?;
    ensure(lhs == rhs, || "(x y)^c != x^c y^c".into())?;
    // chain_product(s, [f1, f2, f3]) = s^4 f1^3 f2^2 f3, against exponentiations, and
    // the empty chain is its start.
    let f3 = g.exp_generator(c.expose()).map_err(err)?;
    let chain = g.chain_product(&x, &[&y, &x, &f3]).map_err(err)?;
    // The closed form by plain multiplications: s s s s f1 f1 f1 f2 f2 f3.
    let mut closed = x.clone();
    for e in [&x, &x, &x, &y, &y, &y, &x, &x] {
        closed = g.mul_elements(&closed, e).map_err(err)?.expose().to_vec();
    }
    let closed = g.mul_elements(&closed, &f3).map_err(err)?;
    ensure(chain == closed, || {
        "chain_product(s, [a, b, c]) != s^4 a^3 b^2 c".into()
    })?;
    ensure(g.chain_product(&x, &[]).map_err(err)?.expose() == x, || {
        "the empty chain is not its start".into()
    })?;
    // Malformed operands: a typed error, not a panic.
    let short = vec![0x01u8; g.element_len() - 1];
    expect_code(g.mul_elements(&short, &x), ErrorCode::INVALID_ELEMENT)?;
    expect_code(g.mul_elements(&x, &short), ErrorCode::INVALID_ELEMENT)?;
    expect_code(g.chain_product(&short, &[&x]), ErrorCode::INVALID_ELEMENT)?;
    expect_code(
        g.chain_product(&x, &[&y, &short]),
        ErrorCode::INVALID_ELEMENT,
    )?;
    expect_code(g.invert_element(&short), ErrorCode::INVALID_ELEMENT)
}

/// Wrong names, key lengths and nonce lengths get typed errors, not panics.
pub fn misuse(p: &Provider) -> Report {
    let mut r = Report::default();
    r.check(
        "unknown DH group is unsupported",
        expect_code(p.dh_group("no-such-group"), ErrorCode::UNSUPPORTED),
    );
    r.check(
        "unknown AEAD is unsupported",
        expect_code(p.aead("no-such-aead", &[0; 32]), ErrorCode::UNSUPPORTED),
    );
    r.check(
        "unknown hash is unsupported",
        expect_code(p.hash("no-such-hash", &[b"x"]), ErrorCode::UNSUPPORTED),
    );
    for a in p.algorithms() {
        if a.class == AlgorithmClass::Aead {
            let name = a.name.to_string();
            r.check(
                format!("{name}: wrong key length refused"),
                expect_code(p.aead(&name, &[0; 7]), ErrorCode::INVALID_ARGUMENT),
            );
            if let Ok(mut aead) =
                p.aead(&name, &vec![0; if name.contains("128") { 16 } else { 32 }])
            {
                r.check(
                    format!("{name}: wrong nonce length refused"),
                    expect_code(aead.seal(&[0; 3], b"", b"x"), ErrorCode::INVALID_ARGUMENT),
                );
                r.check(
                    format!("{name}: truncated ciphertext refused"),
                    expect_code(
                        aead.open(&vec![0; aead.nonce_len()], b"", &[0; 3]),
                        ErrorCode::AUTHENTICATION_FAILED,
                    ),
                );
            }
        }
    }
    r.check(
        "random bytes have the asked length",
        (|| {
            let b = p.random_bytes(33).map_err(err)?;
            ensure(b.len() == 33, || format!("{} bytes", b.len()))
        })(),
    );
    r
}

/// A provider instance, with default configuration, from a plugin's root module (a
/// built-in's `plugin_module()` or a module loaded from a `.so`).
pub fn from_module(module: PluginModuleRef) -> Result<Provider, PluginError> {
    let new = module
        .new_provider()
        .ok_or_else(|| PluginError::unsupported("the module exports no provider constructor"))?;
    new(&ProviderConfig::default())
        .into_result()
        .map(Provider::from_abi)
}
