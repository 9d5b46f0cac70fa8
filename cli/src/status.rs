//! `conclave status`: a daemon's groups and figures, with the members' signed notes
//! (modules in force, epoch, key age) checked against a trust store when one is given.

use std::{path::PathBuf, process::ExitCode};

use clap::Args;
use conclave::secure::status::GroupStatus;
use conclave_gcs::{Address, Client, MemberName};
use serde_json::{Value, json};

/// Arguments of `conclave status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The daemon: `unix:PATH` or `tcp:IP:PORT` (default: the address a plain
    /// `conclave daemon` of this user listens on).
    #[arg(long, value_name = "ADDRESS")]
    connect: Option<Address>,
    /// A policy file whose trust store checks the members' signed notes (without it,
    /// notes are shown as unverified).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// The identity to connect with (needed for a `tcp:` address; over a Unix socket
    /// the status connection takes a name of its own).
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// The daemon's public-key file (for a `tcp:` address).
    #[arg(long, value_name = "FILE")]
    daemon_key: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// The daemon's status document with each member's note read (and checked).
fn annotate(
    mut doc: Value,
    check: Option<(&conclave::sdk::ka_kit::MapTrustStore, &conclave::Provider)>,
) -> Value {
    let Some(groups) = doc.get_mut("groups").and_then(Value::as_array_mut) else {
        return doc;
    };
    for g in groups {
        let name = g["group"].as_str().unwrap_or_default().to_string();
        let notes = g
            .get("notes")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut members = serde_json::Map::new();
        for (member, note) in notes {
            let read = hex::decode(note.as_str().unwrap_or_default())
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    GroupStatus::open_note(&bytes, &name, &member, check)
                        .map_err(|e| e.message.to_string())
                });
            let entry = match read {
                Ok((status, verified)) => json!({ "verified": verified, "status": status }),
                Err(error) => json!({ "verified": false, "error": error }),
            };
            members.insert(member, entry);
        }
        g["notes"] = Value::Object(members);
    }
    doc
}

fn text(doc: &Value) -> String {
    let mut out = String::new();
    let d = &doc["daemon"];
    out.push_str(&format!(
        "daemon: {} connections ({} since start), {} groups, {} congested, disconnects {}\n",
        d["connections"], d["connections_total"], d["groups"], d["congested"], d["disconnects"]
    ));
    for g in doc["groups"].as_array().into_iter().flatten() {
        let members: Vec<&str> = g["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        out.push_str(&format!(
            "group {}: view {} [{}], {} msgs in, {} out, {} views\n",
            g["group"].as_str().unwrap_or_default(),
            g["view"].as_str().unwrap_or("-"),
            members.join(" "),
            g["messages_in"],
            g["messages_out"],
            g["views"],
        ));
        for (member, note) in g["notes"].as_object().into_iter().flatten() {
            let sec = &note["status"]["secure"];
            let line = if let Some(error) = note["error"].as_str() {
                format!("unreadable note: {error}")
            } else if sec.is_null() {
                "plain".into()
            } else {
                format!(
                    "{} + {} on {} ({}), epoch {}, key {} ms old at its note, policy v{}{}",
                    sec["key_agreement"].as_str().unwrap_or_default(),
                    sec["cipher"].as_str().unwrap_or_default(),
                    sec["dh_group"].as_str().unwrap_or_default(),
                    sec["provider"].as_str().unwrap_or_default(),
                    sec["epoch"],
                    sec["since_key_ms"],
                    sec["policy_version"],
                    if note["verified"] == true {
                        ", signature verified"
                    } else {
                        ", unverified"
                    }
                )
            };
            out.push_str(&format!("  {member}: {line}\n"));
        }
    }
    out
}

async fn query(args: &StatusArgs) -> Result<Value, String> {
    if let (Some(address @ Address::Tcp(_)), None) = (&args.connect, &args.identity) {
        return Err(format!(
            "{address} is TCP: give --identity and --daemon-key"
        ));
    }
    let (address, daemon) =
        crate::daemon::target(args.connect.as_ref(), args.daemon_key.as_deref())?;
    let registry = conclave::plugins::Registry::with_builtins().map_err(|e| e.to_string())?;
    let provider = registry
        .new_provider("rustcrypto", conclave::sdk::Options::default())
        .map_err(|e| e.to_string())?;
    let mut client = match (&address, &args.identity) {
        (_, Some(path)) => {
            let identity =
                conclave::Identity::read_file(&provider, path).map_err(|e| e.to_string())?;
            conclave::session::connect_engine(&address, &identity, daemon.as_ref())
                .await
                .map_err(|e| format!("cannot reach the daemon at {address}: {e}"))?
        }
        (_, None) => {
            let name = MemberName::new(format!("status.{}", std::process::id()))
                .map_err(|e| e.to_string())?;
            Client::connect(&address, name)
                .await
                .map_err(|e| format!("cannot reach the daemon at {address}: {e}"))?
        }
    };
    let json = tokio::time::timeout(std::time::Duration::from_secs(10), client.status())
        .await
        .map_err(|_| "no status from the daemon within 10 s".to_string())?
        .map_err(|e| e.to_string())?;
    client.close().await;
    let doc: Value = serde_json::from_slice(&json).map_err(|e| e.to_string())?;
    let trust = match &args.policy {
        Some(p) => Some(conclave::PolicyFile::load(p).map_err(|e| e.to_string())?.2),
        None => None,
    };
    Ok(annotate(doc, trust.as_ref().map(|t| (t, &provider))))
}

/// Runs `conclave status`.
pub fn run(args: StatusArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(query(&args)) {
        Ok(doc) if args.json => {
            out!("{doc}");
            ExitCode::SUCCESS
        }
        Ok(doc) => {
            out!("{}", text(&doc).trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
