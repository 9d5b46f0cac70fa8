//! Primitive costs per provider: DH exponentiation per group, seal and open per cipher
//! and message size, signatures. Run: `cargo bench -p conclave-benches --bench primitives`.

// `criterion_group!` generates an undocumented function.
#![allow(missing_docs)]

use std::hint::black_box;

use conclave_benches::{CIPHERS, PROVIDERS, cipher, provider};
use conclave_plugin_sdk::{AlgorithmClass, ErrorCode, RVec, host::Cipher};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn dh(c: &mut Criterion) {
    let mut g = c.benchmark_group("dh-exp");
    for &pname in PROVIDERS {
        let p = provider(pname).expect("provider");
        for a in p.algorithms() {
            if a.class != AlgorithmClass::DhGroup {
                continue;
            }
            let group = p.dh_group(a.name.as_str()).expect("group");
            let x = group.random_scalar().expect("scalar");
            let y = group.random_scalar().expect("scalar");
            let gy = group.exp_generator(y.expose()).expect("g^y");
            // A variable-base exponentiation with a fresh-key-sized exponent: the
            // operation GDH and CKD repeat.
            g.bench_with_input(BenchmarkId::new(a.name.as_str(), pname), &(), |b, _| {
                b.iter(|| {
                    group
                        .exp(black_box(&gy), black_box(x.expose()))
                        .expect("exp")
                })
            });
            g.bench_with_input(
                BenchmarkId::new(format!("{}-validate", a.name.as_str()), pname),
                &(),
                |b, _| b.iter(|| group.validate_element(black_box(&gy)).expect("valid")),
            );
        }
    }
    g.finish();
}

fn rekey(c: &mut Cipher, epoch: u64) {
    let key: Vec<u8> = (0..c.key_len()).map(|i| (i as u64 ^ epoch) as u8).collect();
    c.install_key(epoch, &key).expect("install");
}

fn ciphers(c: &mut Criterion) {
    for size in [64usize, 1024, 16 * 1024] {
        let mut g = c.benchmark_group(format!("seal-open-{size}B"));
        g.throughput(Throughput::Bytes(size as u64));
        let msg = vec![0x5au8; size];
        for &pname in PROVIDERS {
            let p = provider(pname).expect("provider");
            for &(plugin, alg) in CIPHERS {
                // A provider that lacks the cipher's primitive (Blowfish on aws-lc).
                let Ok(mut alice) = cipher(plugin, alg, &p, "alice") else {
                    continue;
                };
                let mut bob = cipher(plugin, alg, &p, "bob").expect("cipher");
                let mut epoch = 1u64;
                g.bench_function(BenchmarkId::new(format!("{alg}-seal"), pname), |b| {
                    b.iter(|| match alice.seal(epoch, b"", black_box(&msg)) {
                        Ok(sealed) => sealed,
                        // A worn-out key (blowfish stops at 2^22 messages): rekey, as a
                        // group would, and go on.
                        Err(e) if e.code == ErrorCode::KEY_EXHAUSTED => {
                            epoch += 1;
                            rekey(&mut alice, epoch);
                            alice.seal(epoch, b"", &msg).expect("seal")
                        }
                        Err(e) => panic!("seal: {e}"),
                    })
                });
                // Open distinct messages, as a receiver does (replays are refused).
                let mut alice = cipher(plugin, alg, &p, "alice").expect("cipher");
                let sealed: Vec<Vec<u8>> = (0..1024)
                    .map(|_| alice.seal(1, b"", &msg).expect("seal"))
                    .collect();
                let mut i = 0usize;
                g.bench_function(BenchmarkId::new(format!("{alg}-open"), pname), |b| {
                    b.iter(|| {
                        if i == sealed.len() {
                            // A new receiver: the replay window would refuse repeats.
                            bob = cipher(plugin, alg, &p, "bob").expect("cipher");
                            i = 0;
                        }
                        i += 1;
                        bob.open("alice", b"", black_box(&sealed[i - 1]))
                            .expect("open")
                    })
                });
                // The forms the secure layer uses: into a reused buffer, no allocation.
                let mut alice = cipher(plugin, alg, &p, "alice").expect("cipher");
                let mut epoch = 1u64;
                let mut frame = RVec::with_capacity(1 + size + alice.overhead());
                g.bench_function(BenchmarkId::new(format!("{alg}-seal-into"), pname), |b| {
                    b.iter(|| {
                        frame.clear();
                        match alice.seal_into(epoch, b"", black_box(&msg), &mut frame) {
                            Ok(()) => {}
                            Err(e) if e.code == ErrorCode::KEY_EXHAUSTED => {
                                epoch += 1;
                                rekey(&mut alice, epoch);
                            }
                            Err(e) => panic!("seal: {e}"),
                        }
                    })
                });
                let mut bob = cipher(plugin, alg, &p, "bob").expect("cipher");
                let mut plaintext = RVec::with_capacity(size);
                let mut i = 0usize;
                g.bench_function(BenchmarkId::new(format!("{alg}-open-into"), pname), |b| {
                    b.iter(|| {
                        if i == sealed.len() {
                            bob = cipher(plugin, alg, &p, "bob").expect("cipher");
                            i = 0;
                        }
                        i += 1;
                        plaintext.clear();
                        bob.open_into("alice", b"", black_box(&sealed[i - 1]), &mut plaintext)
                            .expect("open")
                    })
                });
            }
        }
        g.finish();
    }
}

fn signatures(c: &mut Criterion) {
    let mut g = c.benchmark_group("signature");
    let msg = [7u8; 256];
    for &pname in PROVIDERS {
        let p = provider(pname).expect("provider");
        for a in p.algorithms() {
            if a.class != AlgorithmClass::Signature {
                continue;
            }
            let name = a.name.as_str();
            let sk = p.generate_signing_key(name).expect("key");
            let s = p.signer(name, sk.expose()).expect("signer");
            let pk = s.public_key();
            let sig = s.sign(&msg).expect("sign");
            g.bench_function(BenchmarkId::new(format!("{name}-sign"), pname), |b| {
                b.iter(|| s.sign(black_box(&msg)).expect("sign"))
            });
            g.bench_function(BenchmarkId::new(format!("{name}-verify"), pname), |b| {
                b.iter(|| p.verify(name, &pk, black_box(&msg), &sig).expect("verify"))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, dh, ciphers, signatures);
criterion_main!(benches);
