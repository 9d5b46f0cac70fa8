//! Cipher checks: round trips, tamper and truncation detection, replay and epoch rules,
//! nonce uniqueness across senders and epochs, and error codes.
//!
//! The suite needs a constructor that makes the cipher of a named member of one group
//! (all members sharing whatever provider the plugin under test should use).

use conclave_plugin_sdk::{
    ErrorCode, Options, PluginError, RVec,
    api::{PluginModuleRef, cipher::CipherConfig},
    host::{Cipher, Provider},
};

use crate::{Report, ensure};

/// Makes the cipher object of a member.
pub type MakeCipher<'a> = &'a dyn Fn(&str) -> Result<Cipher, PluginError>;

fn err(e: PluginError) -> String {
    e.to_string()
}

fn expect_code<T>(r: Result<T, PluginError>, codes: &[ErrorCode]) -> Result<(), String> {
    match r {
        Ok(_) => Err(format!("accepted; expected one of {codes:?}")),
        Err(e) if codes.contains(&e.code) => Ok(()),
        Err(e) => Err(format!("expected one of {codes:?}, got {e}")),
    }
}

fn group_key(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
        .collect()
}

fn pair(make: MakeCipher<'_>, epochs: &[u64]) -> Result<(Cipher, Cipher), String> {
    let mut alice = make("alice").map_err(err)?;
    let mut bob = make("bob").map_err(err)?;
    for &e in epochs {
        let key = group_key(alice.key_len(), e as u8);
        alice.install_key(e, &key).map_err(err)?;
        bob.install_key(e, &key).map_err(err)?;
    }
    Ok((alice, bob))
}

/// Every cipher check.
pub fn all(make: MakeCipher<'_>) -> Report {
    let mut r = Report::default();
    r.check(
        "round trip at 0 B, 1 B, 1 KiB, 70 KiB",
        (|| {
            let (mut a, mut b) = pair(make, &[1])?;
            for (i, len) in [0usize, 1, 1024, 70_000].into_iter().enumerate() {
                let pt: Vec<u8> = (0..len).map(|j| (j * 7 + i) as u8).collect();
                let sealed = a.seal(1, b"hdr", &pt).map_err(err)?;
                ensure(sealed.len() <= pt.len() + a.overhead(), || {
                    format!(
                        "{} bytes exceed the stated overhead {}",
                        sealed.len() - pt.len(),
                        a.overhead()
                    )
                })?;
                let opened = b.open("alice", b"hdr", &sealed).map_err(err)?;
                ensure(opened.plaintext.as_slice() == pt, || {
                    "plaintext mismatch".into()
                })?;
                ensure(opened.epoch == 1, || format!("epoch {}", opened.epoch))?;
                ensure(opened.sequence == i as u64, || {
                    format!("sequence {}", opened.sequence)
                })?;
            }
            Ok(())
        })(),
    );
    r.check(
        "seal_into and open_into append to the caller's buffer, as seal and open give",
        (|| {
            let (mut a, mut b) = pair(make, &[1])?;
            for (i, len) in [0usize, 1, 1024, 70_000].into_iter().enumerate() {
                let pt: Vec<u8> = (0..len).map(|j| (j * 5 + i) as u8).collect();
                let mut frame = RVec::new();
                frame.extend_from_copy_slice(b"frame header");
                a.seal_into(1, b"hdr", &pt, &mut frame).map_err(err)?;
                ensure(frame.starts_with(b"frame header"), || {
                    "seal_into overwrote the bytes before it".into()
                })?;
                let sealed = &frame[12..];
                ensure(sealed.len() <= pt.len() + a.overhead(), || {
                    "seal_into exceeds the stated overhead".into()
                })?;
                // Each form opens what the other sealed.
                let mut out = RVec::new();
                out.extend_from_copy_slice(b"kept");
                let header = b
                    .open_into("alice", b"hdr", sealed, &mut out)
                    .map_err(err)?;
                ensure(out.starts_with(b"kept") && out[4..] == pt[..], || {
                    format!("open_into at {len} B: plaintext mismatch")
                })?;
                ensure(header.epoch == 1 && header.sequence == 2 * i as u64, || {
                    format!("open_into header {header:?}")
                })?;
                let sealed = a.seal(1, b"hdr", &pt).map_err(err)?;
                let mut out = RVec::new();
                let header = b
                    .open_into("alice", b"hdr", &sealed, &mut out)
                    .map_err(err)?;
                ensure(
                    out[..] == pt[..] && header.sequence == 2 * i as u64 + 1,
                    || format!("open_into of a seal at {len} B"),
                )?;
            }
            Ok(())
        })(),
    );
    r.check(
        "a refused open_into or seal_into leaves the buffer as it was",
        (|| {
            let (mut a, mut b) = pair(make, &[1])?;
            let sealed = a.seal(1, b"aad", &[0x42; 300]).map_err(err)?;
            let mut out = RVec::new();
            out.extend_from_copy_slice(b"before");
            for i in (0..sealed.len()).step_by(7).chain([sealed.len() - 1]) {
                let mut t = sealed.clone();
                t[i] ^= 0x01;
                expect_code(
                    b.open_into("alice", b"aad", &t, &mut out),
                    &[
                        ErrorCode::AUTHENTICATION_FAILED,
                        ErrorCode::MALFORMED,
                        ErrorCode::UNKNOWN_EPOCH,
                        ErrorCode::TOO_OLD,
                    ],
                )
                .map_err(|e| format!("byte {i}: {e}"))?;
                ensure(out[..] == b"before"[..], || {
                    format!("byte {i}: the refused open left {} bytes", out.len())
                })?;
            }
            expect_code(
                a.seal_into(9, b"aad", b"no key", &mut out),
                &[ErrorCode::NO_KEY, ErrorCode::UNKNOWN_EPOCH],
            )?;
            ensure(out[..] == b"before"[..], || {
                "a refused seal_into changed the buffer".into()
            })?;
            // Nothing was recorded: the genuine message still opens, once.
            b.open_into("alice", b"aad", &sealed, &mut out)
                .map_err(err)?;
            ensure(out[6..] == [0x42; 300][..], || "mismatch".into())?;
            expect_code(
                b.open_into("alice", b"aad", &sealed, &mut out),
                &[ErrorCode::REPLAYED],
            )
        })(),
    );
    r.check(
        "a sender opens its own messages",
        (|| {
            let (mut a, _) = pair(make, &[1])?;
            let sealed = a.seal(1, b"", b"self").map_err(err)?;
            let opened = a.open("alice", b"", &sealed).map_err(err)?;
            ensure(opened.plaintext.as_slice() == b"self", || "mismatch".into())
        })(),
    );
    r.check(
        "every tampered byte is detected",
        (|| {
            let (mut a, mut b) = pair(make, &[1])?;
            let sealed = a.seal(1, b"aad", b"attack at dawn").map_err(err)?;
            for i in 0..sealed.len() {
                let mut t = sealed.clone();
                t[i] ^= 0x01;
                expect_code(
                    b.open("alice", b"aad", &t),
                    &[
                        ErrorCode::AUTHENTICATION_FAILED,
                        ErrorCode::MALFORMED,
                        ErrorCode::UNKNOWN_EPOCH,
                        ErrorCode::TOO_OLD,
                    ],
                )
                .map_err(|e| format!("byte {i}: {e}"))?;
            }
            // Refused messages changed nothing: the genuine one still opens.
            b.open("alice", b"aad", &sealed).map_err(err)?;
            Ok(())
        })(),
    );
    r.check(
        "a changed header (aad) is detected",
        (|| {
            let (mut a, mut b) = pair(make, &[1])?;
            let sealed = a.seal(1, b"group=x", b"m").map_err(err)?;
            expect_code(
                b.open("alice", b"group=y", &sealed),
                &[ErrorCode::AUTHENTICATION_FAILED],
            )
        })(),
    );
    r.check(
        "a message attributed to another sender is refused",
        (|| {
            let (mut a, mut b) = pair(make, &[1])?;
            let sealed = a.seal(1, b"", b"m").map_err(err)?;
            expect_code(
                b.open("carol", b"", &sealed),
                &[ErrorCode::AUTHENTICATION_FAILED],
            )
        })(),
    );
    r.check(
        "every truncation is detected",
        (|| {
            let (mut a, mut b) = pair(make, &[1])?;
            let sealed = a.seal(1, b"", b"truncate me").map_err(err)?;
            for n in 0..sealed.len() {
                expect_code(
                    b.open("alice", b"", &sealed[..n]),
                    &[ErrorCode::MALFORMED, ErrorCode::AUTHENTICATION_FAILED],
                )
                .map_err(|e| format!("length {n}: {e}"))?;
            }
            Ok(())
        })(),
    );
    r.check(
        "a replay is refused",
        (|| {
            let (mut a, mut b) = pair(make, &[1])?;
            let sealed = a.seal(1, b"", b"once").map_err(err)?;
            b.open("alice", b"", &sealed).map_err(err)?;
            expect_code(b.open("alice", b"", &sealed), &[ErrorCode::REPLAYED])
        })(),
    );
    r.check(
        "out-of-order delivery within the window is accepted",
        (|| {
            let (mut a, mut b) = pair(make, &[1])?;
            let m: Vec<Vec<u8>> = (0..5)
                .map(|i| a.seal(1, b"", &[i]))
                .collect::<Result<_, _>>()
                .map_err(err)?;
            for i in [4usize, 0, 2, 1, 3] {
                b.open("alice", b"", &m[i]).map_err(err)?;
            }
            Ok(())
        })(),
    );
    r.check(
        "a message older than the replay window is refused",
        (|| {
            let (mut a, mut b) = pair(make, &[1])?;
            let m: Vec<Vec<u8>> = (0..300)
                .map(|_| a.seal(1, b"", b"x"))
                .collect::<Result<_, _>>()
                .map_err(err)?;
            b.open("alice", b"", &m[299]).map_err(err)?;
            expect_code(b.open("alice", b"", &m[0]), &[ErrorCode::TOO_OLD])
        })(),
    );
    r.check(
        "a message of an epoch without a key is refused",
        (|| {
            let (mut a, mut b) = pair(make, &[1])?;
            a.install_key(2, &group_key(a.key_len(), 2)).map_err(err)?;
            let sealed = a.seal(2, b"", b"m").map_err(err)?;
            expect_code(b.open("alice", b"", &sealed), &[ErrorCode::UNKNOWN_EPOCH])
        })(),
    );
    r.check(
        "a retired epoch is refused",
        (|| {
            let (mut a, mut b) = pair(make, &[1, 2])?;
            let sealed = a.seal(1, b"", b"m").map_err(err)?;
            ensure(b.retire_key(1), || "retire_key(1) returned false".into())?;
            ensure(!b.retire_key(1), || {
                "second retire_key(1) returned true".into()
            })?;
            expect_code(b.open("alice", b"", &sealed), &[ErrorCode::UNKNOWN_EPOCH])?;
            let sealed2 = a.seal(2, b"", b"m").map_err(err)?;
            b.open("alice", b"", &sealed2).map_err(err)?;
            Ok(())
        })(),
    );
    r.check(
        "sealing without a key fails with no-key",
        (|| {
            let (mut a, _) = pair(make, &[1])?;
            expect_code(a.seal(9, b"", b"m"), &[ErrorCode::NO_KEY])
        })(),
    );
    r.check(
        "a wrong key length is refused",
        (|| {
            let mut a = make("alice").map_err(err)?;
            expect_code(a.install_key(1, &[0u8; 5]), &[ErrorCode::INVALID_ARGUMENT])
        })(),
    );
    r.check(
        "installing an epoch twice is refused",
        (|| {
            let (mut a, _) = pair(make, &[1])?;
            expect_code(
                a.install_key(1, &group_key(a.key_len(), 1)),
                &[ErrorCode::INVALID_ARGUMENT],
            )
        })(),
    );
    r.check(
        "different keys do not open each other's messages",
        (|| {
            let mut a = make("alice").map_err(err)?;
            let mut b = make("bob").map_err(err)?;
            a.install_key(1, &group_key(a.key_len(), 1)).map_err(err)?;
            b.install_key(1, &group_key(b.key_len(), 77)).map_err(err)?;
            let sealed = a.seal(1, b"", b"m").map_err(err)?;
            expect_code(
                b.open("alice", b"", &sealed),
                &[ErrorCode::AUTHENTICATION_FAILED],
            )
        })(),
    );
    r.check(
        "no ciphertext repeats across senders, epochs and sequence numbers",
        (|| {
            let (mut a, mut b) = pair(make, &[1, 2])?;
            let mut seen = std::collections::HashSet::new();
            let plaintext = [0u8; 32];
            for epoch in [1, 2] {
                for cipher in [&mut a, &mut b] {
                    for _ in 0..4 {
                        let sealed = cipher.seal(epoch, b"", &plaintext).map_err(err)?;
                        // Compare bodies only: headers differ by construction.
                        let body = sealed[sealed.len() - plaintext.len() - 8..].to_vec();
                        ensure(seen.insert(body), || {
                            format!("a ciphertext body repeated (epoch {epoch})")
                        })?;
                    }
                }
            }
            Ok(())
        })(),
    );
    r
}

/// A cipher constructor from a plugin's root module (a built-in's `plugin_module()` or a
/// module loaded from a `.so`) on `provider`: members of the group `conformance`.
pub fn from_module(
    module: PluginModuleRef,
    provider: Provider,
    algorithm: &str,
) -> impl Fn(&str) -> Result<Cipher, PluginError> {
    let algorithm = algorithm.to_string();
    move |member: &str| {
        let new = module
            .new_cipher()
            .ok_or_else(|| PluginError::unsupported("the module exports no cipher constructor"))?;
        new(&CipherConfig {
            algorithm: algorithm.as_str().into(),
            group: "conformance".into(),
            local_member: member.into(),
            provider: provider.to_abi(),
            options: Options::default(),
        })
        .into_result()
        .map(Cipher::from_abi)
    }
}

/// Interoperability of two constructions of the same cipher (other providers, or built-in
/// against `.so`): what one member seals, a member built the other way opens, both ways,
/// and a tampered message is refused by either.
pub fn cross(one: MakeCipher<'_>, other: MakeCipher<'_>) -> Report {
    let mut r = Report::default();
    for (label, seal_with, open_with) in
        [("one -> other", one, other), ("other -> one", other, one)]
    {
        r.check(
            format!("interoperates {label}"),
            (|| {
                let mut alice = seal_with("alice").map_err(err)?;
                let mut bob = open_with("bob").map_err(err)?;
                let key = group_key(alice.key_len(), 42);
                ensure(bob.key_len() == key.len(), || "key lengths differ".into())?;
                alice.install_key(3, &key).map_err(err)?;
                bob.install_key(3, &key).map_err(err)?;
                for len in [0usize, 1, 64, 1024, 16 * 1024] {
                    let pt: Vec<u8> = (0..len).map(|j| (j * 13) as u8).collect();
                    let sealed = alice.seal(3, b"aad", &pt).map_err(err)?;
                    let mut bad = sealed.clone();
                    let last = bad.len() - 1;
                    bad[last] ^= 0x80;
                    expect_code(
                        bob.open("alice", b"aad", &bad),
                        &[ErrorCode::AUTHENTICATION_FAILED, ErrorCode::MALFORMED],
                    )?;
                    let opened = bob.open("alice", b"aad", &sealed).map_err(err)?;
                    ensure(opened.plaintext.as_slice() == pt, || {
                        format!("plaintext mismatch at {len} B")
                    })?;
                }
                Ok(())
            })(),
        );
    }
    r
}

/// The whole cipher suite for a cipher plugin: [`all`] for each of its `algorithms` on
/// each provider of `providers` (root modules, with a name for the report), and
/// [`cross`] between every pair of providers.
pub fn on_providers(
    cipher: PluginModuleRef,
    algorithms: &[&str],
    providers: &[(&str, PluginModuleRef)],
) -> Report {
    let mut r = Report::default();
    let instance = |module: PluginModuleRef| crate::provider::from_module(module);
    for alg in algorithms {
        for (name, module) in providers {
            match instance(*module) {
                Ok(p) => {
                    let suite = all(&from_module(cipher, p, alg));
                    r.merge(suite.prefixed(&format!("{alg} on {name}: ")));
                }
                Err(e) => r.check(format!("{alg} on {name}: provider"), Err(err(e))),
            }
        }
        for (i, (a_name, a)) in providers.iter().enumerate() {
            for (b_name, b) in &providers[i + 1..] {
                let label = format!("{alg} {a_name} <-> {b_name}: ");
                match (instance(*a), instance(*b)) {
                    (Ok(pa), Ok(pb)) => {
                        let one = from_module(cipher, pa, alg);
                        let other = from_module(cipher, pb, alg);
                        r.merge(cross(&one, &other).prefixed(&label));
                    }
                    (Err(e), _) | (_, Err(e)) => r.check(label, Err(err(e))),
                }
            }
        }
    }
    r
}
