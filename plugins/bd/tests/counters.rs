//! The operations each member performs per event equal the formulas of
//! docs/protocols.md, for n = 1..32 (n is the size of the group after the event).
//!
//! BD runs the whole protocol at every event, so every member counts the same whatever
//! the event and its role:
//!
//! | n | exponentiations | signatures | verifications | multicasts |
//! |---|---|---|---|---|
//! | 1 | 0 | 0 | 0 | 0 |
//! | 2 | 2 | 1 | 1 | 2 |
//! | n >= 3 | 3 | 2 | 2(n - 1) | 3 |
//!
//! (The multicasts count the key confirmation; confirmations carry a MAC, not a
//! signature.)

use conclave_conformance::key_agreement::{self as ka, Counted, Flush, Net, Setup};
use conclave_plugin_sdk::{Options, api::key_agreement::ViewCause, host::Provider};

fn rustcrypto() -> Provider {
    conclave_conformance::provider::from_module(conclave_provider_rustcrypto::plugin_module())
        .unwrap()
}

fn setup() -> Setup {
    Setup {
        module: conclave_plugin_bd::plugin_module(),
        algorithm: "bd".into(),
        provider: rustcrypto,
        dh_group: "ristretto255".into(),
        options: Options::default(),
    }
}

/// What every member counts for one event at size `n`.
fn per_member(n: u64) -> Counted {
    match n {
        0 | 1 => Counted::new(0, 0, 0, 0, 0, 0),
        2 => Counted::new(2, 0, 1, 1, 0, 2),
        n => Counted::new(3, 0, 2, 2 * (n - 1), 0, 3),
    }
}

fn check(net: &mut Net, event: impl FnOnce(&mut Net), what: &str) {
    let before = net.stats();
    event(net);
    ka::settle(net).unwrap();
    let n = net.components[0].members.len() as u64;
    let counted = net.counted_since(&before);
    ka::assert_counts(net, &counted, |_| per_member(n), &format!("{what}, n={n}"));
}

#[test]
fn every_event_costs_every_member_the_same() {
    let mut net = ka::grow(setup(), 1).unwrap();
    for n in 2..=32usize {
        check(
            &mut net,
            |net| net.join(0, &format!("m{n:02}"), Flush::All).unwrap(),
            "join",
        );
    }
    for _ in 0..3 {
        let members = net.components[0].members.clone();
        check(
            &mut net,
            |net| net.remove(&[members[1].as_str()], ViewCause::Leave, Flush::All),
            "leave",
        );
        let oldest = net.components[0].members[0].clone();
        check(&mut net, |net| net.refresh(&oldest).unwrap(), "refresh");
        let oldest = oldest.clone();
        check(
            &mut net,
            |net| net.remove(&[oldest.as_str()], ViewCause::Disconnect, Flush::All),
            "controller crash",
        );
    }
    check(
        &mut net,
        |net| net.join_many(0, &["j0", "j1", "j2"], Flush::All).unwrap(),
        "merge of 3",
    );
    // Down to two and one member.
    while net.components[0].members.len() > 1 {
        let members = net.components[0].members.clone();
        check(
            &mut net,
            |net| net.remove(&[members[0].as_str()], ViewCause::Leave, Flush::All),
            "leave",
        );
    }
}
