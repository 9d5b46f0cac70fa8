//! The operations each member performs per event equal the formulas of
//! docs/protocols.md, for n = 2..32 (n is the size of the group after the event).
//!
//! TGDH's counts depend on where each member sits in the key tree, so the test keeps a
//! model of the tree under the rules of TISSEC 2004 (insertion at the shallowest,
//! rightmost node that does not make the tree taller; a departed leaf's sibling takes
//! its parent's place) and reads the depths off it (`tree_model.rs`, shared with the
//! `str` plugin's test):
//!
//! | role | exponentiations | signatures | verifications | multicasts |
//! |---|---|---|---|---|
//! | sponsor (join, leave, refresh) | 2 d(s) | 1 | 1 for a join, else 0 | 2 |
//! | new member (join) | 1 + d(j) | 1 | 1 | 2 |
//! | any other member m | d(lca(m, s)) + 1 | 0 | messages sent | 1 |
//!
//! `d` is a node's depth (the root's is 0), `s` the sponsor: the rightmost leaf of the
//! insertion node (join), of the subtree that took the departed leaf's parent's place
//! (leave), the member that asked (refresh).

use conclave_conformance::key_agreement::Setup;
use conclave_plugin_sdk::{Options, host::Provider};

mod tree_model;

fn rustcrypto() -> Provider {
    conclave_conformance::provider::from_module(conclave_provider_rustcrypto::plugin_module())
        .unwrap()
}

fn setup() -> Setup {
    Setup {
        module: conclave_plugin_tgdh::plugin_module(),
        algorithm: "tgdh".into(),
        provider: rustcrypto,
        dh_group: "ristretto255".into(),
        options: Options::default(),
    }
}

#[test]
fn join_leave_and_refresh_follow_the_formulas() {
    tree_model::check_formulas(setup, false);
}
