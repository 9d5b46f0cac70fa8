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
        module: conclave_plugin_gdh::plugin_module(),
        algorithm: "gdh".into(),
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
fn join_leave_and_refresh_follow_the_formulas() {
    for n in 2..=32u64 {
        // Join: the newest old member refreshes and hands over n-1 partial keys.
        let mut net = ka::grow(setup(), n as usize - 1).unwrap();
        let controller = net.components[0].members.last().cloned().unwrap();
        let before = net.stats();
        net.join(0, "new", Flush::All).unwrap();
        ka::settle(&mut net).unwrap();
        let counted = net.counted_since(&before);
        ka::assert_counts(
            &net,
            &counted,
            |m| {
                if m == controller {
                    c(n, 0, 1, 1, 1, 1)
                } else if m == "new" {
                    c(n, 0, 1, 1, 0, 2)
                } else {
                    c(1, 0, 0, 1, 0, 1)
                }
            },
            &format!("join, n={n}"),
        );

        // Leave of a member that is not the newest, then of the newest (the controller):
        // the newest remaining member refreshes and broadcasts.
        let members = net.components[0].members.clone();
        for gone in [members[0].clone(), "new".to_string()] {
            if net.components[0].members.len() < 2 {
                break;
            }
            let before = net.stats();
            net.remove(&[&gone], ViewCause::Leave, Flush::All);
            ka::settle(&mut net).unwrap();
            let n = net.components[0].members.len() as u64;
            let controller = net.components[0].members.last().cloned().unwrap();
            let counted = net.counted_since(&before);
            ka::assert_counts(
                &net,
                &counted,
                |m| {
                    if n == 1 {
                        c(1, 0, 0, 0, 0, 0)
                    } else if m == controller {
                        // A controller that broadcast the last partial keys refreshes with
                        // short exponents; a new one (the old left) inverts its share.
                        c(n, u64::from(gone == "new"), 1, 0, 0, 2)
                    } else {
                        c(1, 0, 0, 1, 0, 1)
                    }
                },
                &format!("leave of {gone}, n={n}"),
            );
        }

        // Refresh by the controller: the same as a leave.
        let n = net.components[0].members.len() as u64;
        if n > 1 {
            let controller = net.components[0].members.last().cloned().unwrap();
            let before = net.stats();
            net.refresh(&controller).unwrap();
            ka::settle(&mut net).unwrap();
            let counted = net.counted_since(&before);
            ka::assert_counts(
                &net,
                &counted,
                |m| {
                    if m == controller {
                        c(n, 1, 1, 0, 0, 2)
                    } else {
                        c(1, 0, 0, 1, 0, 1)
                    }
                },
                &format!("refresh, n={n}"),
            );
        }
    }
}

#[test]
fn merges_follow_the_formulas() {
    for n in 3..=32u64 {
        for m in 2..=4u64.min(n - 1) {
            let mut net = ka::grow(setup(), (n - m) as usize).unwrap();
            let controller = net.components[0].members.last().cloned().unwrap();
            let joiners: Vec<String> = (0..m).map(|i| format!("j{i}")).collect();
            let refs: Vec<&str> = joiners.iter().map(String::as_str).collect();
            let before = net.stats();
            net.join_many(0, &refs, Flush::All).unwrap();
            ka::settle(&mut net).unwrap();
            let counted = net.counted_since(&before);
            let last = joiners.last().cloned().unwrap();
            ka::assert_counts(
                &net,
                &counted,
                |who| {
                    if who == controller {
                        c(3, 1, 2, 2, 2, 1)
                    } else if who == last {
                        c(n, 0, 2, n, 0, 3)
                    } else if joiners.iter().any(|j| j == who) {
                        c(3, 1, 2, 3, 2, 1)
                    } else {
                        c(2, 1, 1, 2, 1, 1)
                    }
                },
                &format!("merge of {m}, n={n}"),
            );
        }
    }
}

#[test]
fn the_initial_agreement_follows_the_formulas() {
    // A cascade (a view that interrupts an agreement) leaves no completed state: the next
    // view runs the initial agreement, a merge into the oldest member alone.
    for n in 3..=32u64 {
        let mut net = ka::grow(setup(), n as usize - 1).unwrap();
        net.join(0, "cut", Flush::Prefix(0)).unwrap();
        let before = net.stats();
        net.remove(&["cut"], ViewCause::Disconnect, Flush::Prefix(0));
        ka::settle(&mut net).unwrap();
        let counted = net.counted_since(&before);
        let members = net.components[0].members.clone();
        let (oldest, newest) = (members[0].clone(), members.last().cloned().unwrap());
        let n = members.len() as u64;
        ka::assert_counts(
            &net,
            &counted,
            |who| {
                if who == oldest {
                    c(3, 1, 2, 2, 2, 1)
                } else if who == newest {
                    c(n, 0, 2, n, 0, 3)
                } else {
                    c(3, 1, 2, 3, 2, 1)
                }
            },
            &format!("initial agreement, n={n}"),
        );
    }
}
