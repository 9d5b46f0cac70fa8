//! `conclave policy check FILE`, `conclave policy explain FILE GROUP` and
//! `conclave policy publish FILE --group G --identity KEY`.

use std::{path::PathBuf, process::ExitCode};

use clap::Subcommand;
use conclave::PolicyFile;
use conclave_policy::Source;

/// `conclave policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check a policy file: syntax, keys, values, the plugins and algorithms it names,
    /// pins and trusted keys. Prints every error as FILE:LINE: what is wrong.
    Check {
        /// The policy file.
        file: PathBuf,
    },
    /// Show which modules a group gets, and from which rule each setting comes.
    Explain {
        /// The policy file.
        file: PathBuf,
        /// The group's name.
        group: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Publish a policy into a live group as an administrator: the members that name
    /// this identity in `[trust] admins` verify it, check it against their plugins,
    /// and switch the whole secure view to it at once (docs/operations.md). The file
    /// holds `[policy] version` (above the members' current one), `[defaults]` and
    /// `[[group]]` rules; plugin files and trust stay in each member's own policy.
    Publish(PublishArgs),
}

/// Arguments of `conclave policy publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The policy to publish.
    file: PathBuf,
    /// The group to publish it into.
    #[arg(long)]
    group: String,
    /// The administrator's secret-key file (from `conclave keygen`).
    #[arg(long, value_name = "FILE")]
    identity: PathBuf,
    /// The daemon: `unix:PATH` or `tcp:IP:PORT` (default: the address a plain
    /// `conclave daemon` of this user listens on).
    #[arg(long, value_name = "ADDRESS")]
    connect: Option<conclave_gcs::Address>,
    /// The daemon's public-key file: needed for a `tcp:` address.
    #[arg(long, value_name = "FILE")]
    daemon_key: Option<PathBuf>,
    /// Give up if the policy is not delivered within this time.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
}

fn source(s: &Source) -> String {
    match s {
        Source::Rule { index, pattern, at } => {
            format!("rule #{index} (match = {pattern:?}) at {at}")
        }
        Source::Defaults { at } => format!("[defaults] at {at}"),
        Source::BuiltIn => "built-in default".into(),
    }
}

/// Signs the policy of `args.file` and publishes it (see [`PolicyCommand::Publish`]).
fn publish(args: PublishArgs) -> Result<String, String> {
    let (_, _, bytes) = conclave_policy::files::read_checked(
        &args.file,
        conclave::secure::publish::MAX_TEXT as u64,
        |_| {},
    )
    .map_err(|e| e.to_string())?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("{}: the policy is not UTF-8 text", args.file.display()))?;
    let origin = args.file.display().to_string();
    let parsed = conclave_policy::Policy::from_str(&text, &origin).map_err(|e| e.to_string())?;
    // What a member will check first: nothing local to a member, and a version.
    let published = parsed
        .published(&text, &origin)
        .map_err(|e| e.to_string())?;
    if published.version() == 0 {
        return Err(format!(
            "{origin}: a published policy needs [policy] version = N, above the members' current version"
        ));
    }
    let registry = conclave::plugins::Registry::with_builtins().map_err(|e| e.to_string())?;
    published
        .validate(&registry)
        .map_err(|e| format!("{e}\n(checked against this machine's plugins)"))?;
    let provider = registry
        .new_provider("rustcrypto", conclave::sdk::Options::default())
        .map_err(|e| e.to_string())?;
    let identity =
        conclave::Identity::read_file(&provider, &args.identity).map_err(|e| e.to_string())?;
    let signer = provider
        .signer(identity.signature(), identity.secret().expose())
        .map_err(|e| e.to_string())?;
    let sealed = conclave::SignedPolicy {
        group: args.group.clone(),
        version: published.version(),
        admin: identity.name().into(),
        algorithm: identity.signature().into(),
        text,
    }
    .seal(&signer)
    .map_err(|e| e.to_string())?;
    let (address, daemon_key) =
        crate::daemon::target(args.connect.as_ref(), args.daemon_key.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let mut client =
            conclave::secure::publish::connect_admin(&address, &identity, daemon_key.as_ref())
                .await
                .map_err(|e| format!("cannot reach the daemon at {address}: {e}"))?;
        tokio::time::timeout(
            args.timeout,
            conclave::secure::publish::publish(&mut client, &args.group, &sealed),
        )
        .await
        .map_err(|_| format!("the policy was not delivered within {:?}", args.timeout))?
        .map_err(|e| e.to_string())
    })?;
    Ok(format!(
        "published policy version {} of {origin} into {} as {}",
        published.version(),
        args.group,
        identity.name()
    ))
}

/// Runs `conclave policy ...`.
pub fn run(cmd: PolicyCommand) -> ExitCode {
    match cmd {
        PolicyCommand::Publish(args) => match publish(args) {
            Ok(done) => {
                out!("{done}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        PolicyCommand::Check { file } => match PolicyFile::load(&file) {
            Ok((registry, policy, trust)) => {
                let p = policy.policy();
                out!(
                    "{}: ok ({} group rules, {} plugins installed, {} trusted identities)",
                    file.display(),
                    p.groups().len(),
                    registry.plugins().len(),
                    p.trust().len().max(trust.len())
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        PolicyCommand::Explain { file, group, json } => {
            let resolved = PolicyFile::load(&file)
                .map_err(|e| e.to_string())
                .and_then(|(_, p, _)| p.resolve(&group).map_err(|e| e.to_string()));
            let r = match resolved {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let s = &r.sources;
            let security = match r.security {
                conclave_policy::Security::Required => "required",
                conclave_policy::Security::None => "none",
            };
            let rows: Vec<(&str, String, String)> = vec![
                ("security", security.to_string(), source(&s.security)),
                (
                    "key_agreement",
                    r.key_agreement.clone(),
                    source(&s.key_agreement),
                ),
                (
                    "cipher",
                    format!("{} ({})", r.cipher, r.cipher_algorithm),
                    source(&s.cipher),
                ),
                ("dh_group", r.dh_group.clone(), source(&s.dh_group)),
                ("provider", r.provider.clone(), source(&s.provider)),
                (
                    "cipher_provider",
                    r.cipher_provider.clone(),
                    source(&s.cipher_provider),
                ),
                ("signature", r.signature.clone(), source(&s.signature)),
                (
                    "rekey_interval",
                    r.rekey_interval
                        .map(humantime_like)
                        .unwrap_or_else(|| "none (rekey on membership changes only)".into()),
                    source(&s.rekey_interval),
                ),
                (
                    "agreement_timeout",
                    humantime_like(r.agreement_timeout),
                    source(&s.agreement_timeout),
                ),
                (
                    "members",
                    r.members
                        .as_ref()
                        .map(|m| m.join(", "))
                        .unwrap_or_else(|| "any trusted identity".into()),
                    source(&s.members),
                ),
            ];
            if json {
                let obj: serde_json::Map<String, serde_json::Value> = rows
                    .iter()
                    .map(|(k, v, src)| {
                        (
                            k.to_string(),
                            serde_json::json!({ "value": v, "from": src }),
                        )
                    })
                    .collect();
                out!(
                    "{}",
                    serde_json::json!({ "group": group, "rule": r.rule, "settings": obj })
                );
            } else {
                match (&r.rule, &r.rule_pattern) {
                    (Some(i), Some(p)) => out!("group {group:?}: rule #{i} (match = {p:?})"),
                    _ => out!("group {group:?}: no rule matches; [defaults] and built-ins"),
                }
                for (k, v, src) in rows {
                    out!("  {k:<17} {v:<34} from {src}");
                }
            }
            ExitCode::SUCCESS
        }
    }
}

fn humantime_like(d: std::time::Duration) -> String {
    if d.subsec_nanos() != 0 {
        // "1500ms", or Duration's own form below a millisecond's precision.
        return match d.subsec_nanos() % 1_000_000 {
            0 => format!("{}ms", d.as_millis()),
            _ => format!("{d:?}"),
        };
    }
    let s = d.as_secs();
    match s {
        s if s % 3600 == 0 && s > 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
