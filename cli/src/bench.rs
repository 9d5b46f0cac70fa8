//! `conclave bench keys`: the cost of every membership event for each combination of
//! key agreement, provider and DH group, as a table, JSON, CSV and plots.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, Write as _},
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
};

use clap::{Args, Subcommand};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use conclave_benches::keys::{self, Combo, Config, Event, Row, Sample};
use indicatif::{ProgressBar, ProgressStyle};

/// `conclave bench ...`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time every membership event per key agreement, provider, DH group and group size.
    Keys(KeysArgs),
    /// Throughput and latency of sealed multicast per cipher and message size.
    Data(crate::bench_data::DataArgs),
    /// Draw the charts of `bench keys` again from its JSON files, several runs in one
    /// chart (for example protocols measured by separate commands).
    Plot(PlotArgs),
    /// One member of `bench data --processes` (started by it, not by hand).
    #[command(hide = true)]
    DataMember(crate::bench_processes::MemberArgs),
    /// One member of the raw-CPG baseline of `bench data --engine corosync`.
    #[command(hide = true)]
    CpgMember(crate::bench_cpg::CpgMemberArgs),
    /// The relay of the raw-relay baseline of `bench data --processes`.
    #[command(hide = true)]
    Relay(crate::bench_relay::RelayArgs),
    /// One member of the raw-relay baseline of `bench data --processes`.
    #[command(hide = true)]
    RelayMember(crate::bench_relay::RelayMemberArgs),
}

/// What `conclave bench keys` measures where its options leave it open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Grid {
    /// The five protocols side by side to large groups (TISSEC 2004's comparison):
    /// gdh, ckd, tgdh, str and bd on rustcrypto's ristretto255, n = 10 to 1,000, join
    /// and leave, one run (the default on the in-process network).
    Large,
    /// Small groups, every provider and DH group (the ICDCS 2000 paper's tables): gdh
    /// and ckd on openssl and rustcrypto, ffdhe2048 and ristretto255, n = 2 to 50 by
    /// 4, every event, five runs (the default through the daemon).
    Paper,
}

/// A [`Grid`]'s choices.
struct GridChoice {
    key_agreement: &'static [&'static str],
    provider: &'static [&'static str],
    dh_group: &'static [&'static str],
    sizes: &'static str,
    events: &'static [Event],
    runs: usize,
}

impl Grid {
    fn choice(self) -> GridChoice {
        match self {
            Grid::Large => GridChoice {
                key_agreement: &["gdh", "ckd", "tgdh", "str", "bd"],
                provider: &["rustcrypto"],
                dh_group: &["ristretto255"],
                sizes: "10,20,50,100,200,500,1000",
                events: &[Event::Join, Event::Leave],
                runs: 1,
            },
            Grid::Paper => GridChoice {
                key_agreement: &["gdh", "ckd"],
                provider: &["openssl", "rustcrypto"],
                dh_group: &["ffdhe2048", "ristretto255"],
                sizes: "2..50/4",
                events: &Event::ALL,
                runs: 5,
            },
        }
    }
}

/// Arguments of `conclave bench keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// What to measure where the options below leave it open: `large` (the default on
    /// the in-process network) or `paper` (the default through the daemon); see
    /// `docs/benchmarks.md`.
    #[arg(long, value_enum)]
    grid: Option<Grid>,
    /// Key agreements, comma-separated (built in: gdh, ckd, tgdh, str, bd; grid large:
    /// all five; grid paper: gdh, ckd).
    #[arg(long, value_delimiter = ',')]
    key_agreement: Vec<String>,
    /// Providers, comma-separated (grid large: rustcrypto; grid paper: openssl,
    /// rustcrypto).
    #[arg(long, value_delimiter = ',')]
    provider: Vec<String>,
    /// DH groups, comma-separated; a combination whose provider lacks the group is
    /// skipped (grid large: ristretto255; grid paper: ffdhe2048, ristretto255).
    #[arg(long, value_delimiter = ',')]
    dh_group: Vec<String>,
    /// Group sizes: `A..B` (every size), `A..B/S` (every S-th), or a comma-separated list
    /// (grid large: 10,20,50,100,200,500,1000; grid paper: 2..50/4).
    #[arg(long)]
    sizes: Option<String>,
    /// Events, comma-separated: join, leave, merge, partition, refresh, controller-leave
    /// (grid large: join, leave; grid paper: all six).
    #[arg(long, value_delimiter = ',')]
    events: Vec<String>,
    /// The engine: `sim`, the in-process view-synchronous network (every member on its
    /// own state machine and provider; times composed along the messages, as if each
    /// member had its own processor); `daemon`, an embedded daemon with every member a
    /// full session on this machine's cores (wall time, engine share; no partition or
    /// merge, which need several daemons).
    #[arg(long, default_value = "sim", value_parser = ["sim", "daemon"])]
    engine: String,
    /// Repetitions of each measurement (the table shows the fastest on the in-process
    /// network, where time is CPU time, the median through the daemon, and the spread;
    /// grid large: 1; grid paper: 5). On the in-process network each run is a process
    /// of its own: a process runs fast or slow as a whole, so the fastest of several
    /// processes repeats between invocations where the fastest of several runs in one
    /// process does not.
    #[arg(long)]
    runs: Option<usize>,
    /// Write every row as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write every row as CSV.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Draw time against group size, one chart per event, as SVG and PNG.
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
    /// Draw the charts on logarithmic axes (size and time), for grids to thousands.
    #[arg(long, requires = "plot")]
    log_scale: bool,
    /// On the in-process network, have every member do all its work itself. By default
    /// each distinct signature verification and each distinct exponentiation is done
    /// once per process (all members run in it; in a key tree every member below a node
    /// computes that node's key from the same inputs) and every repeat is charged to its
    /// member at the calibrated cost of one: the same times, without the repeats.
    #[arg(long, alias = "verify-all")]
    compute_all: bool,
    /// Internal: measure one run and report on standard output, one JSON
    /// [`WorkerLine`] per line (how the in-process network's runs are spread over
    /// processes).
    #[arg(long, hide = true)]
    worker: bool,
}

/// What a `bench keys --worker` process reports, one JSON object per line.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
enum WorkerLine {
    /// A measurement is done (its label, for the progress bar).
    Progress(String),
    /// The run's samples, last.
    Samples(Vec<Sample>),
}

/// Arguments of `conclave bench plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// JSON files written by `conclave bench keys --json`.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Where to write the charts (`EVENT.svg` and `EVENT.png`).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Logarithmic size and time axes.
    #[arg(long)]
    log_scale: bool,
    /// Only these events, comma-separated (default: every event in the files).
    #[arg(long, value_delimiter = ',')]
    events: Vec<String>,
}

/// The fields of a `bench keys` JSON row that a chart needs.
#[derive(Debug, serde::Deserialize)]
struct PlottedRow {
    key_agreement: String,
    provider: String,
    dh_group: String,
    event: String,
    size: usize,
    time_ms: f64,
}

#[derive(Debug, serde::Deserialize)]
struct PlottedFile {
    rows: Vec<PlottedRow>,
}

fn bench_plot(args: PlotArgs) -> Result<(), String> {
    for e in &args.events {
        Event::parse(e).ok_or_else(|| format!("unknown event {e:?}"))?;
    }
    let mut by_event: BTreeMap<String, crate::plot::Lines> = BTreeMap::new();
    for file in &args.files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let parsed: PlottedFile = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}: not the JSON of `conclave bench keys --json`: {e}",
                file.display()
            )
        })?;
        for r in parsed.rows {
            if !args.events.is_empty() && !args.events.contains(&r.event) {
                continue;
            }
            if !(r.time_ms.is_finite() && r.time_ms >= 0.0) {
                return Err(format!(
                    "{}: a row with time {} ms",
                    file.display(),
                    r.time_ms
                ));
            }
            let label = format!("{}/{}/{}", r.key_agreement, r.provider, r.dh_group);
            by_event
                .entry(r.event)
                .or_default()
                .entry(label)
                .or_default()
                .push((r.size, r.time_ms));
        }
    }
    if by_event.is_empty() {
        return Err("no rows to draw".into());
    }
    let scale = if args.log_scale {
        crate::plot::Scale::Log
    } else {
        crate::plot::Scale::Linear
    };
    for f in crate::plot::charts(&args.out, by_event, scale)? {
        eprintln!("wrote {}", f.display());
    }
    Ok(())
}

/// Parses `2..50`, `2..50/4` or `2,4,8`.
pub fn parse_sizes(text: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("sizes {text:?}: expected A..B, A..B/STEP or a comma-separated list");
    let mut out = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        if let Some((range, step)) = part.split_once("..") {
            let (hi, step) = match step.split_once('/') {
                Some((hi, s)) => (hi, s.parse::<usize>().map_err(|_| bad())?),
                None => (step, 1),
            };
            let lo = range.parse::<usize>().map_err(|_| bad())?;
            let hi = hi.parse::<usize>().map_err(|_| bad())?;
            if step == 0 || lo > hi {
                return Err(bad());
            }
            let mut n = lo;
            while n <= hi {
                out.push(n);
                n += step;
            }
            if out.last() != Some(&hi) {
                out.push(hi);
            }
        } else {
            out.push(part.parse().map_err(|_| bad())?);
        }
    }
    out.sort_unstable();
    out.dedup();
    if out.iter().any(|&n| n < 2) {
        return Err(format!("sizes {text:?}: a group needs at least 2 members"));
    }
    Ok(out)
}

fn combos(
    key_agreements: &[String],
    providers: &[String],
    dh_groups: &[String],
) -> Result<(Vec<Combo>, Vec<String>), String> {
    conclave_builtins::link();
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for ka in key_agreements {
        for p in providers {
            let provider = conclave_benches::provider(p).map_err(|e| e.to_string())?;
            for g in dh_groups {
                let combo = Combo {
                    key_agreement: ka.clone(),
                    provider: p.clone(),
                    dh_group: g.clone(),
                };
                if provider.dh_group(g).is_err() {
                    skipped.push(combo.label());
                } else {
                    out.push(combo);
                }
            }
        }
    }
    Ok((out, skipped))
}

fn write_csv(path: &Path, rows: &[Row]) -> Result<(), String> {
    let mut w = csv::Writer::from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let err = |e: csv::Error| format!("{}: {e}", path.display());
    w.write_record([
        "key_agreement",
        "provider",
        "dh_group",
        "event",
        "size",
        "runs",
        "time_ms",
        "time_ms_min",
        "time_ms_max",
        "cpu_ms",
        "serial_exponentiations",
        "math_ms",
        "over_math",
        "total_exponentiations",
        "signatures",
        "verifications",
        "messages",
        "bytes",
        "dh_share",
        "signature_share",
        "engine_ms",
        "rss_mib",
    ])
    .map_err(err)?;
    for r in rows {
        w.write_record([
            r.combo.key_agreement.clone(),
            r.combo.provider.clone(),
            r.combo.dh_group.clone(),
            r.event.name().to_string(),
            r.size.to_string(),
            r.runs.to_string(),
            format!("{:.3}", r.time_ms),
            format!("{:.3}", r.time_ms_min),
            format!("{:.3}", r.time_ms_max),
            format!("{:.3}", r.cpu_ms),
            r.serial_exponentiations
                .map(|v| v.to_string())
                .unwrap_or_default(),
            r.math_ms.map(|v| format!("{v:.3}")).unwrap_or_default(),
            r.over_math.map(|v| format!("{v:.3}")).unwrap_or_default(),
            r.total_exponentiations.to_string(),
            r.signatures.to_string(),
            r.verifications.to_string(),
            r.messages.to_string(),
            r.bytes.to_string(),
            format!("{:.4}", r.dh_share),
            format!("{:.4}", r.signature_share),
            r.engine_ms.map(|v| format!("{v:.3}")).unwrap_or_default(),
            r.rss_mib.map(|v| format!("{v:.1}")).unwrap_or_default(),
        ])
        .map_err(err)?;
    }
    w.flush().map_err(|e| format!("{}: {e}", path.display()))
}

fn table(rows: &[Row], sizes: &[usize], engine: bool) -> Table {
    // The smallest and largest sizes, and every tenth, keep the table readable; the
    // JSON and CSV files hold every row.
    let (lo, hi) = (
        sizes.first().copied().unwrap_or(0),
        sizes.last().copied().unwrap_or(0),
    );
    let shown = |n: usize| n == lo || n == hi || n.is_multiple_of(10);
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    let mut header = vec![
        "modules",
        "event",
        "n",
        "time ms (min-max)",
        "cpu ms",
        "serial exp",
        "x math",
        "paper serial",
        "total exp",
        "sign",
        "verify",
        "msgs",
        "KiB",
        "DH / sig / rest",
    ];
    if engine {
        header.push("engine ms");
    }
    t.set_header(header);
    for r in rows.iter().filter(|r| shown(r.size)) {
        let mut row = vec![
            r.combo.label(),
            r.event.name().to_string(),
            r.size.to_string(),
            format!(
                "{:.2} ({:.2}-{:.2})",
                r.time_ms, r.time_ms_min, r.time_ms_max
            ),
            format!("{:.2}", r.cpu_ms),
            r.serial_exponentiations
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            r.over_math
                .map(|v| format!("{v:.2}"))
                .unwrap_or_else(|| "-".into()),
            keys::paper_serial(&r.combo.key_agreement, r.event, r.size)
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
            r.total_exponentiations.to_string(),
            r.signatures.to_string(),
            r.verifications.to_string(),
            r.messages.to_string(),
            format!("{:.1}", r.bytes as f64 / 1024.0),
            format!(
                "{:.0}% / {:.0}% / {:.0}%",
                r.dh_share * 100.0,
                r.signature_share * 100.0,
                ((1.0 - r.dh_share - r.signature_share).max(0.0)) * 100.0
            ),
        ];
        if engine {
            row.push(
                r.engine_ms
                    .map(|v| format!("{v:.2}"))
                    .unwrap_or_else(|| "-".into()),
            );
        }
        t.add_row(row);
    }
    t
}

/// The allocator's setting under which `bench keys` runs: mimalloc keeps the memory it
/// frees instead of returning it to the system after 10 ms. Otherwise the next step that
/// allocates takes page faults (the kernel zeroing pages) into its thread's CPU time, and
/// a critical path of a few milliseconds at n = 200 came out 2 to 5 times too long in one
/// run of three.
const KEYS_ALLOCATOR: (&str, &str) = ("MIMALLOC_PURGE_DELAY", "-1");

/// Runs `bench keys` again in a child process with [`KEYS_ALLOCATOR`] set (the allocator
/// reads it when the process starts), unless it is set already. `None`: go on here.
fn with_keys_allocator() -> Option<ExitCode> {
    let (name, value) = KEYS_ALLOCATOR;
    if std::env::var_os(name).is_some() {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let status = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(name, value)
        .status()
        .ok()?;
    Some(
        status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .map_or(ExitCode::FAILURE, ExitCode::from),
    )
}

/// Runs `conclave bench ...`.
pub fn run(cmd: BenchCommand) -> ExitCode {
    if matches!(cmd, BenchCommand::Keys(_))
        && let Some(code) = with_keys_allocator()
    {
        return code;
    }
    let (what, result) = match cmd {
        BenchCommand::Keys(args) => ("keys", bench_keys(args)),
        BenchCommand::Plot(args) => ("plot", bench_plot(args)),
        BenchCommand::Data(args) => ("data", crate::bench_data::run(args)),
        BenchCommand::DataMember(args) => ("data-member", crate::bench_processes::member(args)),
        BenchCommand::CpgMember(args) => ("cpg-member", crate::bench_cpg::member(args)),
        BenchCommand::Relay(args) => ("relay", crate::bench_relay::relay(args)),
        BenchCommand::RelayMember(args) => ("relay-member", crate::bench_relay::member(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conclave bench {what}: {e}");
            ExitCode::from(2)
        }
    }
}

/// `given`, or the grid's choice where it is empty.
fn or_grid(given: &[String], grid: &[&str]) -> Vec<String> {
    if given.is_empty() {
        grid.iter().map(|s| s.to_string()).collect()
    } else {
        given.to_vec()
    }
}

fn bench_keys(args: KeysArgs) -> Result<(), String> {
    let grid = args
        .grid
        .unwrap_or(if args.engine == "daemon" {
            Grid::Paper
        } else {
            Grid::Large
        })
        .choice();
    let sizes = parse_sizes(args.sizes.as_deref().unwrap_or(grid.sizes))?;
    let events = if args.events.is_empty() {
        grid.events.to_vec()
    } else {
        args.events
            .iter()
            .map(|e| Event::parse(e).ok_or_else(|| format!("unknown event {e:?}")))
            .collect::<Result<Vec<_>, _>>()?
    };
    let runs = args.runs.unwrap_or(grid.runs);
    if runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let (combos, skipped) = combos(
        &or_grid(&args.key_agreement, grid.key_agreement),
        &or_grid(&args.provider, grid.provider),
        &or_grid(&args.dh_group, grid.dh_group),
    )?;
    let daemon = args.engine == "daemon";
    let config = Config {
        combos,
        sizes: sizes.clone(),
        events,
        runs,
        share_work: !args.compute_all,
    };
    if args.worker {
        if daemon {
            return Err("--worker measures on the in-process network only".into());
        }
        return keys_worker(&Config { runs: 1, ..config });
    }
    for s in &skipped {
        eprintln!("skipping {s}: the provider does not offer that DH group");
    }
    let measured_events = config
        .events
        .iter()
        .filter(|e| !daemon || !matches!(e, Event::Partition | Event::Merge))
        .count();
    if daemon && measured_events < config.events.len() {
        eprintln!(
            "the daemon engine does not partition: partition and merge are measured with --engine sim"
        );
    }
    let per_combo = sizes.len() * measured_events * config.runs;
    let bar = ProgressBar::new((per_combo * config.combos.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    let progress = |label: &str| {
        bar.set_message(label.to_string());
        bar.inc(1);
    };
    let mut samples = if daemon {
        crate::bench_keys_daemon::run(&config, progress)?
    } else if config.runs > 1 {
        runs_in_processes(config.runs, progress)?
    } else {
        keys::run(&config, progress)?
    };
    bar.finish_and_clear();
    keys::price_at_fastest(&mut samples);
    let rows = keys::summarize(&samples);
    crate::out!("{}", table(&rows, &sizes, daemon));
    if daemon {
        crate::out!(
            "time: wall time from the request (a crash for controller-leave) to the last member's confirmed key, every member a session of this process on this machine's cores, through an embedded daemon; engine ms: until the last member had its new view (membership and flush); cpu: the whole process; paper serial: ICDCS 2000 Table 4 (gdh, ckd), TISSEC 2004 (tgdh, str, bd), see docs/protocols.md; DH / sig / rest: shares of cpu from the counts and the calibrated cost of one operation"
        );
    } else {
        crate::out!(
            "time: critical path from the membership change to the last member's confirmed key, each member on its own processor, no network delay; cpu: all members; x math: time over the critical path's exponentiations, element validations, signatures and verifications at their calibrated cost; paper serial: ICDCS 2000 Table 4 for gdh and ckd (A-GDH authentication, exponentiation as CKD's encryption), TISSEC 2004 for tgdh, str and bd, see docs/protocols.md; DH / sig / rest: shares of cpu from the counts and the calibrated cost of one operation (the in-process engine costs nothing: membership and flush are measured with --engine daemon)"
        );
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&serde_json::json!({
            "engine": args.engine,
            "runs": runs,
            "rows": rows,
            "samples": samples,
        }))
        .map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.csv {
        write_csv(path, &rows)?;
    }
    if let Some(dir) = &args.plot {
        let written = crate::plot::time_against_size(
            dir,
            &rows,
            if args.log_scale {
                crate::plot::Scale::Log
            } else {
                crate::plot::Scale::Linear
            },
        )?;
        for f in written {
            eprintln!("wrote {}", f.display());
        }
    }
    Ok(())
}

/// `bench keys --worker`: measures `config` (one run) and reports on standard output.
fn keys_worker(config: &Config) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    let mut send = |line: &WorkerLine| -> Result<(), String> {
        let text = serde_json::to_string(line).map_err(|e| e.to_string())?;
        writeln!(stdout, "{text}")
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("standard output: {e}"))
    };
    let mut failed = Ok(());
    let samples = keys::run(config, |label| {
        if failed.is_ok() {
            failed = send(&WorkerLine::Progress(label.to_string()));
        }
    })?;
    failed?;
    send(&WorkerLine::Samples(samples))
}

/// Measures each of `runs` runs in a process of its own (this command again, with
/// `--worker`), one after the other, and returns all their samples, each numbered by
/// its process.
fn runs_in_processes(runs: usize, mut progress: impl FnMut(&str)) -> Result<Vec<Sample>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
    let mut all = Vec::new();
    for run in 0..runs {
        let mut child = std::process::Command::new(&exe)
            .args(std::env::args_os().skip(1))
            .arg("--worker")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the process of run {}: {e}", run + 1))?;
        let mut samples = None;
        let mut garbled = None;
        if let Some(out) = child.stdout.take() {
            for line in std::io::BufReader::new(out).lines() {
                let line = line.map_err(|e| format!("run {}: {e}", run + 1))?;
                match serde_json::from_str::<WorkerLine>(&line) {
                    Ok(WorkerLine::Progress(label)) => progress(&label),
                    Ok(WorkerLine::Samples(v)) => samples = Some(v),
                    Err(e) => garbled = garbled.or(Some(e)),
                }
            }
        }
        let status = child.wait().map_err(|e| format!("run {}: {e}", run + 1))?;
        if !status.success() {
            return Err(format!("the process of run {} failed ({status})", run + 1));
        }
        if let Some(e) = garbled {
            return Err(format!("run {}: an unreadable report: {e}", run + 1));
        }
        let samples =
            samples.ok_or_else(|| format!("the process of run {} reported no samples", run + 1))?;
        all.extend(samples.into_iter().map(|s| Sample { run, ..s }));
    }
    Ok(all)
}

/// Rows grouped by event, then by module combination (for plotting).
pub fn by_event(rows: &[Row]) -> BTreeMap<Event, BTreeMap<String, Vec<(usize, f64)>>> {
    let mut out: BTreeMap<Event, BTreeMap<String, Vec<(usize, f64)>>> = BTreeMap::new();
    for r in rows {
        out.entry(r.event)
            .or_default()
            .entry(r.combo.label())
            .or_default()
            .push((r.size, r.time_ms));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::parse_sizes;

    #[test]
    fn sizes() {
        assert_eq!(parse_sizes("2..5").unwrap(), [2, 3, 4, 5]);
        assert_eq!(parse_sizes("2..10/4").unwrap(), [2, 6, 10]);
        assert_eq!(parse_sizes("8,2,4,4").unwrap(), [2, 4, 8]);
        assert!(parse_sizes("1..3").is_err());
        assert!(parse_sizes("5..2").is_err());
        assert!(parse_sizes("x").is_err());
    }
}
