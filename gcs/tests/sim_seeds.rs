//! View-synchrony property tests: random schedules of the simulator, checked.
//!
//! `CONCLAVE_SOAK=N` runs N more seeds (from `CONCLAVE_SOAK_START`, default 1 000 000).
//! A failure prints its seed; replay it with `Simulator::run(seed)`.

use conclave_gcs::sim::{RunStats, Simulator};

fn run_seeds(seeds: impl Iterator<Item = u64>) -> RunStats {
    let mut total = RunStats::default();
    let mut failures = Vec::new();
    for seed in seeds {
        match Simulator::run(seed) {
            Ok(s) => {
                total.ticks += s.ticks;
                total.views += s.views;
                total.deliveries += s.deliveries;
                total.merge_views += s.merge_views;
                total.partition_views += s.partition_views;
                total.cascade_views += s.cascade_views;
                total.flush_timeouts += s.flush_timeouts;
                total.crashes += s.crashes;
            }
            Err(v) => {
                eprintln!("{v}");
                failures.push(v);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing seeds, first: {}",
        failures.len(),
        failures[0]
    );
    total
}

#[test]
fn random_schedules_keep_view_synchrony() {
    let total = run_seeds(0..10_000);
    eprintln!("{total:?}");
    // The schedules must exercise what they claim to.
    assert!(
        total.merge_views > 0,
        "no merge with several joiners: {total:?}"
    );
    assert!(total.partition_views > 0, "no partition: {total:?}");
    assert!(total.cascade_views > 0, "no cascade: {total:?}");
    assert!(total.flush_timeouts > 0, "no flush timeout: {total:?}");
    assert!(total.crashes > 0, "no crash: {total:?}");
    assert!(total.deliveries > 10_000, "too little traffic: {total:?}");
}

#[test]
fn a_seed_replays_identically() {
    assert_eq!(Simulator::run(42), Simulator::run(42));
}

#[test]
fn soak() {
    let Some(n) = std::env::var("CONCLAVE_SOAK")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    let start = std::env::var("CONCLAVE_SOAK_START")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let total = run_seeds(start..start + n);
    eprintln!("soak of {n} seeds: {total:?}");
}
