//! `conclave plugins ...`

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode};

use clap::Subcommand;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use conclave::plugins::{PluginInfo, Registry, Sha256Pin, inspect};
use serde::Serialize;

/// Plugin commands.
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List the built-in plugins and those found in plugin directories.
    List {
        /// A directory of plugin libraries to load (repeatable).
        #[arg(long = "plugin-dir", value_name = "DIR")]
        plugin_dirs: Vec<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Load one plugin library and print its metadata, or why it was refused.
    Inspect {
        /// The library's path.
        path: PathBuf,
        /// Require this SHA-256 (`sha256:<hex>`).
        #[arg(long, value_name = "PIN")]
        pin: Option<Sha256Pin>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Create a plugin crate outside the repository (DIR/NAME) that builds, passes the
    /// conformance kit and loads: a cipher or a key agreement to start from.
    New {
        /// The plugin's name (a-z, 0-9, '-'); also the crate's.
        name: String,
        /// What to create.
        #[arg(long, value_enum)]
        kind: crate::scaffold::Kind,
        /// Where to create the crate's directory.
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
        /// The Conclave source checkout to depend on (the SDK is not on crates.io);
        /// default: the one this binary was built from.
        #[arg(long, value_name = "DIR")]
        sdk: Option<PathBuf>,
    },
}

/// Exit status when a plugin (or one of several) was refused.
const REFUSED: u8 = 2;

#[derive(Serialize)]
struct Refused {
    path: String,
    error: String,
}

#[derive(Serialize)]
struct Listing<'a> {
    plugins: Vec<&'a PluginInfo>,
    refused: Vec<Refused>,
}

pub fn run(cmd: PluginsCommand) -> ExitCode {
    match cmd {
        PluginsCommand::List { plugin_dirs, json } => list(&plugin_dirs, json),
        PluginsCommand::Inspect { path, pin, json } => inspect_one(&path, pin.as_ref(), json),
        PluginsCommand::New {
            name,
            kind,
            dir,
            sdk,
        } => crate::scaffold::run(&name, kind, &dir, sdk.as_deref()),
    }
}

fn list(dirs: &[PathBuf], json: bool) -> ExitCode {
    let mut registry = match Registry::with_builtins() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("conclave: built-in plugins: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut refused = Vec::new();
    for dir in dirs {
        match registry.load_dir(dir, &BTreeMap::new()) {
            Ok(results) => {
                for (path, result) in results {
                    if let Err(e) = result {
                        refused.push(Refused {
                            path: path.display().to_string(),
                            error: e.to_string(),
                        });
                    }
                }
            }
            Err(e) => refused.push(Refused {
                path: dir.display().to_string(),
                error: e.to_string(),
            }),
        }
    }
    let infos: Vec<&PluginInfo> = registry.plugins().iter().map(|p| p.info()).collect();
    if json {
        let listing = Listing {
            plugins: infos,
            refused,
        };
        return print_json(&listing, listing.refused.is_empty());
    }
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    table.set_header(["name", "kind", "version", "origin", "algorithms"]);
    for p in &infos {
        // One line per algorithm class: "dh-group: modp2048, ristretto255".
        let mut by_class: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for a in &p.algorithms {
            by_class.entry(a.class).or_default().push(&a.name);
        }
        let algorithms: Vec<String> = by_class
            .iter()
            .map(|(class, names)| format!("{class}: {}", names.join(", ")))
            .collect();
        table.add_row([
            p.name.as_str(),
            p.kind,
            p.version.as_str(),
            p.origin.as_str(),
            &algorithms.join("\n"),
        ]);
    }
    out!("{table}");
    for r in &refused {
        eprintln!("not loaded: {}", r.error);
    }
    if refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(REFUSED)
    }
}

fn inspect_one(path: &std::path::Path, pin: Option<&Sha256Pin>, json: bool) -> ExitCode {
    match inspect(path, pin) {
        Ok(plugin) => {
            let info = plugin.info();
            if json {
                return print_json(info, true);
            }
            out!("name:        {}", info.name);
            out!("kind:        {}", info.kind);
            out!("version:     {}", info.version);
            out!("abi version: {}", info.abi_version);
            out!("description: {}", info.description);
            out!("origin:      {}", info.origin);
            if let Some(sha) = &info.sha256 {
                out!("sha256 pin:  {sha}");
            }
            out!("algorithms:");
            for a in &info.algorithms {
                out!("  {} ({})", a.name, a.class);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if json {
                print_json(
                    &Refused {
                        path: path.display().to_string(),
                        error: e.to_string(),
                    },
                    false,
                );
            } else {
                eprintln!("conclave: {e}");
            }
            ExitCode::from(REFUSED)
        }
    }
}

fn print_json<T: Serialize>(value: &T, ok: bool) -> ExitCode {
    match serde_json::to_string_pretty(value) {
        Ok(s) => {
            out!("{s}");
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(REFUSED)
            }
        }
        Err(e) => {
            eprintln!("conclave: cannot encode JSON: {e}");
            ExitCode::FAILURE
        }
    }
}
