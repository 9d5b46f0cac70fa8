//! The sealed data path allocates nothing per message: `seal_into` writes into the
//! caller's frame buffer and `open_into` into the caller's plaintext buffer, through the
//! cipher plugin's ABI, the kit and the provider's ABI, on every provider. Counted by
//! `allocation-counter` (the global allocator of this crate's test binaries): after the
//! first message of a sender (which derives its key and builds its state), a thousand
//! messages each way allocate nothing. OpenSSL's own `malloc` calls are not Rust allocations and are not
//! counted; its contexts are made once per key.

use conclave_conformance::{cipher::from_module, provider};
use conclave_plugin_sdk::{RVec, api::PluginModuleRef, host::Cipher};

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    allocation_counter::measure(f).count_total
}

fn check(provider_name: &str, module: PluginModuleRef, algorithm: &str) {
    let provider = provider::from_module(module).expect("provider");
    let make = from_module(
        conclave_plugin_aes_gcm::plugin_module(),
        provider,
        algorithm,
    );
    let mut alice = make("alice").expect("cipher");
    let mut bob = make("bob").expect("cipher");
    let key = vec![7u8; alice.key_len()];
    alice.install_key(1, &key).expect("key");
    bob.install_key(1, &key).expect("key");

    let plaintext = vec![0x5a; 1024];
    let mut frame = RVec::with_capacity(1 + plaintext.len() + alice.overhead());
    let mut opened = RVec::with_capacity(plaintext.len());
    let mut round = |alice: &mut Cipher, bob: &mut Cipher| {
        frame.clear();
        frame.push(0x02);
        alice
            .seal_into(1, b"conclave/app/v1\0group", &plaintext, &mut frame)
            .expect("seal");
        opened.clear();
        bob.open_into("alice", b"conclave/app/v1\0group", &frame[1..], &mut opened)
            .expect("open");
        assert_eq!(opened[..], plaintext[..]);
    };
    // The first message of a sender derives its key and builds its state.
    round(&mut alice, &mut bob);
    let n = allocations(|| {
        for _ in 0..1000 {
            round(&mut alice, &mut bob);
        }
    });
    assert_eq!(
        n, 0,
        "{algorithm} on {provider_name}: {n} allocations for 1000 sealed and opened messages"
    );

    // The copying forms allocate (the count above can see allocations).
    let n = allocations(|| {
        let sealed = alice.seal(1, b"aad", &plaintext).expect("seal");
        bob.open("alice", b"aad", &sealed).expect("open");
    });
    assert!(n >= 2, "seal and open allocated {n} times");
}

#[test]
fn sealing_and_opening_into_buffers_allocate_nothing_per_message() {
    for (name, module) in [
        ("rustcrypto", conclave_provider_rustcrypto::plugin_module()),
        ("openssl", conclave_provider_openssl::plugin_module()),
        ("aws-lc", conclave_provider_aws_lc::plugin_module()),
    ] {
        for algorithm in ["aes-128-gcm", "aes-256-gcm"] {
            check(name, module, algorithm);
        }
    }
}
