//! CKD on the conformance network: every membership event at every size, cascades,
//! attacks, and what a leaver can learn.

use conclave_conformance::key_agreement::{self as ka, Setup};
use conclave_plugin_sdk::{Options, host::Provider};

fn rustcrypto() -> Provider {
    conclave_conformance::provider::from_module(conclave_provider_rustcrypto::plugin_module())
        .unwrap()
}

fn openssl() -> Provider {
    conclave_conformance::provider::from_module(conclave_provider_openssl::plugin_module()).unwrap()
}

fn ristretto() -> Setup {
    Setup {
        module: conclave_plugin_ckd::plugin_module(),
        algorithm: "ckd".into(),
        provider: rustcrypto,
        dh_group: "ristretto255".into(),
        options: Options::default(),
    }
}

fn ffdhe3072() -> Setup {
    Setup {
        provider: openssl,
        dh_group: "ffdhe3072".into(),
        ..ristretto()
    }
}

fn chacha_wrap() -> Setup {
    Setup {
        options: Options::default().with("wrap", "chacha20-poly1305"),
        ..ristretto()
    }
}

#[test]
fn every_event_small_sizes() {
    ka::all(&ristretto, &[1, 2, 3, 5]).assert_ok();
}

#[test]
fn every_event_at_every_size_up_to_32() {
    let sizes: Vec<usize> = (1..=32).collect();
    ka::all(&ristretto, &sizes).assert_ok();
}

#[test]
fn every_event_on_ffdhe3072_with_openssl() {
    ka::all(&ffdhe3072, &[2, 4, 7]).assert_ok();
}

#[test]
fn wraps_with_chacha20_poly1305_when_asked() {
    ka::all(&chacha_wrap, &[2, 3, 6]).assert_ok();
}

#[test]
fn random_cascades() {
    let seeds: u64 = std::env::var("CONCLAVE_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let report = ka::cascades(&ristretto, 0..seeds, 12);
    assert!(
        report.failed.is_empty(),
        "replay with the failing seeds: {report}"
    );
}

#[test]
fn random_cascades_on_ffdhe3072() {
    ka::cascades(&ffdhe3072, 1000..1040, 8).assert_ok();
}

#[test]
fn forged_replayed_misrouted_and_stale_messages_are_refused() {
    ka::attacks(&ristretto).assert_ok();
    ka::attacks(&ffdhe3072).assert_ok();
}

#[test]
fn a_leaver_learns_nothing_of_the_next_key() {
    for n in [3, 8] {
        ka::leaver_learns_nothing(ristretto(), n).unwrap();
    }
    ka::leaver_learns_nothing(ffdhe3072(), 4).unwrap();
}
