//! The operations each member performs per event equal the formulas of
//! docs/protocols.md, for n = 2..32 (n is the size of the group after the event).

use conclave_conformance::key_agreement::{self as ka, Counted, Flush, Setup};
use conclave_plugin_sdk::{Options, api::key_agreement::ViewCause, host::Provider};

fn rustcrypto() -> Provider {
    conclave_conformance::provider::from_module(conclave_provider_rustcrypto::plugin_module())
        .unwrap()
}

fn setup() -> Setup {
    Setup {
        module: conclave_plugin_ckd::plugin_module(),
        algorithm: "ckd".into(),
        provider: rustcrypto,
        dh_group: "ristretto255".into(),
        options: Options::default(),
    }
}

/// (exponentiations, inversions, signatures, verifications, unicasts, multicasts)
const fn c(e: u64, i: u64, s: u64, v: u64, u: u64, m: u64) -> Counted {
    Counted::new(e, i, s, v, u, m)
}

#[test]
fn join_leave_controller_leave_and_refresh_follow_the_formulas() {
    for n in 2..=32u64 {
        // Join: a pairwise key for the joiner, then the wrapped secret.
        let mut net = ka::grow(setup(), n as usize - 1).unwrap();
        let ctl = net.components[0].members[0].clone();
        let before = net.stats();
        net.join(0, "new", Flush::All).unwrap();
        ka::settle(&mut net).unwrap();
        let counted = net.counted_since(&before);
        ka::assert_counts(
            &net,
            &counted,
            |m| {
                if m == ctl {
                    // Plus one for its own DH value when it had none (it was alone).
                    c(1 + u64::from(n == 2), 0, 2, 1, 0, 3)
                } else if m == "new" {
                    c(2, 0, 1, 2, 1, 1)
                } else {
                    c(0, 0, 0, 2, 0, 1)
                }
            },
            &format!("join, n={n}"),
        );

        // A member leaves: no exponentiation at all.
        let members = net.components[0].members.clone();
        if members.len() > 2 {
            let before = net.stats();
            net.remove(&[&members[1]], ViewCause::Leave, Flush::All);
            ka::settle(&mut net).unwrap();
            let n = net.components[0].members.len() as u64;
            let counted = net.counted_since(&before);
            ka::assert_counts(
                &net,
                &counted,
                |m| {
                    if m == ctl {
                        c(0, 0, 1, 0, 0, 2)
                    } else {
                        c(0, 0, 0, 1, 0, 1)
                    }
                },
                &format!("leave, n={n}"),
            );

            // Refresh by the controller: the same.
            let before = net.stats();
            net.refresh(&ctl).unwrap();
            ka::settle(&mut net).unwrap();
            let counted = net.counted_since(&before);
            ka::assert_counts(
                &net,
                &counted,
                |m| {
                    if m == ctl {
                        c(0, 0, 1, 0, 0, 2)
                    } else {
                        c(0, 0, 0, 1, 0, 1)
                    }
                },
                &format!("refresh, n={n}"),
            );
        }

        // The controller leaves: the new oldest member makes pairwise keys with everyone.
        let before = net.stats();
        net.remove(&[&ctl], ViewCause::Disconnect, Flush::All);
        ka::settle(&mut net).unwrap();
        let n = net.components[0].members.len() as u64;
        let new_ctl = net.components[0].members[0].clone();
        let counted = net.counted_since(&before);
        ka::assert_counts(
            &net,
            &counted,
            |m| {
                if n == 1 {
                    c(0, 0, 1, 0, 0, 2)
                } else if m == new_ctl {
                    c(n, 0, 2, n - 1, 0, 3)
                } else {
                    c(2, 0, 1, 2, 1, 1)
                }
            },
            &format!("controller leave, n={n}"),
        );
    }
}

#[test]
fn merges_follow_the_formulas() {
    for n in 3..=32u64 {
        for m in 2..=4u64.min(n - 1) {
            let mut net = ka::grow(setup(), (n - m) as usize).unwrap();
            let ctl = net.components[0].members[0].clone();
            let joiners: Vec<String> = (0..m).map(|i| format!("j{i}")).collect();
            let refs: Vec<&str> = joiners.iter().map(String::as_str).collect();
            let before = net.stats();
            net.join_many(0, &refs, Flush::All).unwrap();
            ka::settle(&mut net).unwrap();
            let counted = net.counted_since(&before);
            ka::assert_counts(
                &net,
                &counted,
                |who| {
                    if who == ctl {
                        c(m + u64::from(n - m == 1), 0, 2, m, 0, 3)
                    } else if joiners.iter().any(|j| j == who) {
                        c(2, 0, 1, 2, 1, 1)
                    } else {
                        c(0, 0, 0, 2, 0, 1)
                    }
                },
                &format!("merge of {m}, n={n}"),
            );
        }
    }
}
