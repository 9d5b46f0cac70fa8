//! `conclave policy check FILE` and `conclave policy explain FILE GROUP`.

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

/// Runs `conclave policy ...`.
pub fn run(cmd: PolicyCommand) -> ExitCode {
    match cmd {
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
