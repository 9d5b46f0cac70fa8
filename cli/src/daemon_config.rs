//! The daemon's configuration file (`conclave daemon --config FILE`): listener, limits
//! and access rules in TOML, every error as `FILE:LINE: what` (see docs/daemon.md).

use std::path::Path;

#[cfg(test)]
use std::time::Duration;

use std::sync::Arc;

use conclave::{Identity, plugins::Registry, sdk::Options};
use conclave_gcs::{
    Access, Address, DaemonConfig, Principals, Rule, TcpSecurity,
    daemon::{ConfigError, DURATION_RANGE},
    noise::TcpTrust,
};
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: Option<Spanned<String>>,
    socket_mode: Option<Spanned<String>>,
    threads: Option<Spanned<u64>>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    names: Vec<RawRule>,
    #[serde(default)]
    groups: Vec<RawRule>,
    tcp: Option<Spanned<RawTcp>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTcp {
    identity: Spanned<String>,
    trust: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    flush_timeout: Option<Spanned<String>>,
    stall_timeout: Option<Spanned<String>>,
    frame_timeout: Option<Spanned<String>>,
    handshake_timeout: Option<Spanned<String>>,
    queue_limit_mib: Option<Spanned<u64>>,
    receive_budget_mib: Option<Spanned<u64>>,
    max_connections: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match")]
    pattern: Spanned<String>,
    #[serde(default)]
    uids: Vec<u32>,
    #[serde(default)]
    gids: Vec<u32>,
    #[serde(default)]
    identities: Vec<String>,
    #[serde(default)]
    tcp: bool,
}

/// Errors of a configuration file, each `FILE:LINE: what`, one per line.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.join("\n"))
    }
}

struct Lines<'a> {
    file: &'a str,
    text: &'a str,
}

impl Lines<'_> {
    fn at(&self, offset: usize) -> String {
        let line = self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1;
        format!("{}:{line}", self.file)
    }

    fn of<T>(&self, v: &Spanned<T>) -> String {
        self.at(v.span().start)
    }
}

/// Reads and checks `path`: the daemon's settings, or every error found. Relative
/// paths in it are taken from the file's directory.
pub fn load(path: &Path) -> Result<DaemonConfig, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors(vec![format!("{file}: cannot read it: {e}")]))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&file, &text, base)
}

/// The daemon's side of authenticated TCP: its identity file (from `conclave keygen`,
/// Ed25519) and the directory of its clients' public keys (`NAME.pub`, as a policy's
/// trust directory).
pub fn tcp_security(identity: &Path, trust: &Path) -> Result<TcpSecurity, String> {
    let registry = Registry::with_builtins().map_err(|e| e.to_string())?;
    let provider = registry
        .new_provider("rustcrypto", Options::default())
        .map_err(|e| e.to_string())?;
    let me = Identity::read_file(&provider, identity)
        .and_then(|i| i.tcp_identity())
        .map_err(|e| e.to_string())?;
    let keys = conclave_policy::Trust::load_dir(trust).map_err(|e| e.to_string())?;
    let mut clients = TcpTrust::new();
    for (name, key) in keys.iter() {
        if key.algorithm() != "ed25519" {
            return Err(format!(
                "{}: the key of {name} is {}: TCP clients authenticate with Ed25519 keys",
                trust.display(),
                key.algorithm()
            ));
        }
        clients
            .insert(name, key.bytes())
            .map_err(|e| format!("{}: {e}", trust.display()))?;
    }
    if clients.is_empty() {
        return Err(format!(
            "{}: no client keys (NAME.pub files): no one could connect over TCP",
            trust.display()
        ));
    }
    Ok(TcpSecurity {
        identity: Arc::new(me),
        clients,
    })
}

/// Parses the text of a configuration file named `file`, whose relative paths are
/// taken from `base`.
pub fn parse(file: &str, text: &str, base: &Path) -> Result<DaemonConfig, ConfigErrors> {
    let lines = Lines { file, text };
    let raw: Raw = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map_or_else(|| file.to_string(), |s| lines.at(s.start));
        ConfigErrors(vec![format!("{at}: {}", e.message())])
    })?;
    let mut errors = Vec::new();
    let mut config = DaemonConfig::default();
    // Where each setting was given, to place range errors at their line.
    let mut placed: Vec<(&'static str, String)> = Vec::new();
    if let Some(listen) = &raw.listen {
        match listen.get_ref().parse::<Address>() {
            Ok(a) => config.listen = a,
            Err(e) => errors.push(format!("{}: listen: {e}", lines.of(listen))),
        }
    }
    if let Some(mode) = &raw.socket_mode {
        match u32::from_str_radix(mode.get_ref(), 8) {
            Ok(m) => {
                config.socket_mode = m;
                placed.push(("socket_mode", lines.of(mode)));
            }
            Err(_) => errors.push(format!(
                "{}: socket_mode {:?} is not an octal mode (e.g. \"660\")",
                lines.of(mode),
                mode.get_ref()
            )),
        }
    }
    if let Some(v) = &raw.threads {
        config.threads = usize::try_from(*v.get_ref()).unwrap_or(usize::MAX);
        placed.push(("threads", lines.of(v)));
    }
    let l = &raw.limits;
    for (name, value, slot) in [
        ("flush_timeout", &l.flush_timeout, &mut config.flush_timeout),
        ("stall_timeout", &l.stall_timeout, &mut config.stall_timeout),
        ("frame_timeout", &l.frame_timeout, &mut config.frame_timeout),
        (
            "handshake_timeout",
            &l.handshake_timeout,
            &mut config.handshake_timeout,
        ),
    ] {
        let Some(v) = value else { continue };
        match humantime::parse_duration(v.get_ref()) {
            Ok(d) => {
                *slot = d;
                placed.push((name, lines.of(v)));
            }
            Err(e) => errors.push(format!(
                "{}: {name} {:?} is not a duration ({e}; e.g. \"10s\", \"500ms\"); from {:?} to {:?}",
                lines.of(v),
                v.get_ref(),
                DURATION_RANGE.0,
                DURATION_RANGE.1
            )),
        }
    }
    let mib = |v: u64| {
        usize::try_from(v)
            .unwrap_or(usize::MAX)
            .saturating_mul(1 << 20)
    };
    if let Some(v) = &l.queue_limit_mib {
        config.queue_limit = mib(*v.get_ref());
        placed.push(("queue_limit", lines.of(v)));
    }
    if let Some(v) = &l.receive_budget_mib {
        config.receive_budget = mib(*v.get_ref());
        placed.push(("receive_budget", lines.of(v)));
    }
    if let Some(v) = &l.max_connections {
        config.max_connections = usize::try_from(*v.get_ref()).unwrap_or(usize::MAX);
        placed.push(("max_connections", lines.of(v)));
    }
    let mut rules = |raw: &[RawRule], what: &str| -> Vec<Rule> {
        let mut out = Vec::new();
        for r in raw {
            let at = lines.of(&r.pattern);
            match glob::Pattern::new(r.pattern.get_ref()) {
                Ok(pattern) => {
                    if r.uids.is_empty() && r.gids.is_empty() && r.identities.is_empty() && !r.tcp {
                        errors.push(format!(
                            "{at}: the {what} rule {:?} admits no one (give uids, gids, identities or tcp = true)",
                            r.pattern.get_ref()
                        ));
                    }
                    out.push(Rule {
                        pattern,
                        who: Principals {
                            uids: r.uids.clone(),
                            gids: r.gids.clone(),
                            identities: r.identities.clone(),
                            tcp: r.tcp,
                        },
                    });
                }
                Err(e) => errors.push(format!(
                    "{at}: match {:?} is not a glob: {e}",
                    r.pattern.get_ref()
                )),
            }
        }
        out
    };
    let names = rules(&raw.names, "names");
    let groups = rules(&raw.groups, "groups");
    config.access = Access { names, groups };
    if let Some(tcp) = &raw.tcp {
        let t = tcp.get_ref();
        match tcp_security(
            &base.join(t.identity.get_ref()),
            &base.join(t.trust.get_ref()),
        ) {
            Ok(security) => config.tcp = Some(security),
            Err(e) => errors.push(format!("{}: [tcp]: {e}", lines.of(tcp))),
        }
    }
    if matches!(config.listen, Address::Tcp(_))
        && raw.tcp.is_none()
        && let Some(listen) = &raw.listen
    {
        errors.push(format!(
            "{}: listen = {:?} needs a [tcp] section (identity, trust): TCP clients are authenticated and encrypted with Noise",
            lines.of(listen),
            listen.get_ref()
        ));
    }
    if let Err(ConfigError {
        setting,
        value,
        range,
    }) = config.validate()
    {
        let at = placed
            .iter()
            .find(|(s, _)| *s == setting)
            .map_or_else(|| file.to_string(), |(_, at)| at.clone());
        errors.push(format!(
            "{at}: {setting} = {value} is out of range: {range}"
        ));
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        parse("daemon.toml", text, Path::new(".")).unwrap_err().0
    }

    #[test]
    fn a_full_file_gives_every_setting() {
        let c = parse(
            "daemon.toml",
            r#"
listen = "unix:/run/conclave/conclave.sock"
socket_mode = "600"
threads = 4

[limits]
flush_timeout = "5s"
stall_timeout = "2s"
frame_timeout = "3s"
handshake_timeout = "1s"
queue_limit_mib = 32
receive_budget_mib = 128
max_connections = 64

[[names]]
match = "alice"
uids = [1000]

[[names]]
match = "svc-*"
gids = [50]
tcp = true

[[groups]]
match = "ops-*"
uids = [1000, 1001]
identities = ["ops"]
"#,
            Path::new("."),
        )
        .unwrap();
        assert_eq!(
            c.listen,
            "unix:/run/conclave/conclave.sock"
                .parse::<Address>()
                .unwrap()
        );
        assert_eq!(c.socket_mode, 0o600);
        assert_eq!(c.threads, 4);
        assert_eq!(c.flush_timeout, Duration::from_secs(5));
        assert_eq!(c.stall_timeout, Duration::from_secs(2));
        assert_eq!(c.frame_timeout, Duration::from_secs(3));
        assert_eq!(c.handshake_timeout, Duration::from_secs(1));
        assert_eq!(c.queue_limit, 32 << 20);
        assert_eq!(c.receive_budget, 128 << 20);
        assert_eq!(c.max_connections, 64);
        assert_eq!(c.access.names.len(), 2);
        assert_eq!(c.access.names[1].who.gids, vec![50]);
        assert!(c.access.names[1].who.tcp);
        assert_eq!(c.access.groups[0].pattern.as_str(), "ops-*");
        assert_eq!(c.access.groups[0].who.identities, vec!["ops".to_string()]);
        assert!(c.tcp.is_none());
    }

    /// Writes the identity `name` (its `.key` in `dir`, its `.pub` in `dir/trust`).
    fn keygen(dir: &Path, name: &str) {
        let registry = Registry::with_builtins().unwrap();
        let provider = registry
            .new_provider("rustcrypto", Options::default())
            .unwrap();
        let id = Identity::generate(&provider, name, "ed25519").unwrap();
        let (_, public) = id.write_files(dir).unwrap();
        std::fs::create_dir_all(dir.join("trust")).unwrap();
        std::fs::rename(&public, dir.join("trust").join(format!("{name}.pub"))).unwrap();
    }

    #[test]
    fn tcp_takes_the_daemons_identity_and_the_clients_keys_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["conclave-daemon", "alice", "bob"] {
            keygen(dir.path(), name);
        }
        std::fs::remove_file(dir.path().join("trust/conclave-daemon.pub")).unwrap();
        let text = "listen = \"tcp:127.0.0.1:0\"\n[tcp]\nidentity = \"conclave-daemon.key\"\ntrust = \"trust\"\n";
        let c = parse("daemon.toml", text, dir.path()).unwrap();
        let tcp = c.tcp.unwrap();
        assert_eq!(tcp.identity.name(), "conclave-daemon");
        assert_eq!(tcp.clients.len(), 2);
        assert!(tcp.clients.contains("alice") && tcp.clients.contains("bob"));
        // A missing key file or an empty trust directory: at the line of [tcp].
        let e = parse(
            "daemon.toml",
            &text.replace("conclave-daemon.key", "nope.key"),
            dir.path(),
        )
        .unwrap_err()
        .0;
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("daemon.toml:2: [tcp]: "), "{e:?}");
        assert!(e[0].contains("nope.key"), "{e:?}");
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        let e = parse(
            "daemon.toml",
            &text.replace("\"trust\"", "\"empty\""),
            dir.path(),
        )
        .unwrap_err()
        .0;
        assert!(e[0].contains("no client keys"), "{e:?}");
    }

    #[test]
    fn every_error_names_its_line() {
        assert_eq!(
            errors("listen = \"unix:/x\"\nlimit = 3\n"),
            [
                "daemon.toml:2: unknown field `limit`, expected one of `listen`, `socket_mode`, `threads`, `limits`, `names`, `groups`, `tcp`"
            ]
        );
        assert_eq!(
            errors("[limits]\nflush_timeout = \"soon\"\nqueue_limit_mib = 1\n"),
            [
                "daemon.toml:2: flush_timeout \"soon\" is not a duration (expected number at 0; e.g. \"10s\", \"500ms\"); from 10ms to 3600s",
                "daemon.toml:3: queue_limit = 1048576 bytes is out of range: 16781316 bytes (one maximal frame) to 68719476736 bytes (64 GiB)"
            ]
        );
        assert_eq!(
            errors("[limits]\nstall_timeout = \"2h\"\n"),
            ["daemon.toml:2: stall_timeout = 7200s is out of range: 10ms to 3600s"]
        );
        assert_eq!(
            errors("[[names]]\nmatch = \"a[\"\nuids = [1]\n\n[[groups]]\nmatch = \"g\"\n"),
            [
                "daemon.toml:2: match \"a[\" is not a glob: Pattern syntax error near position 1: invalid range pattern",
                "daemon.toml:6: the groups rule \"g\" admits no one (give uids, gids, identities or tcp = true)"
            ]
        );
        assert_eq!(
            errors("socket_mode = \"rw\"\n"),
            ["daemon.toml:1: socket_mode \"rw\" is not an octal mode (e.g. \"660\")"]
        );
        assert_eq!(
            errors("listen = \"udp:1.2.3.4:5\"\n"),
            [
                "daemon.toml:1: listen: invalid address \"udp:1.2.3.4:5\": expected unix:PATH or tcp:HOST:PORT (an IP address)"
            ]
        );
        assert_eq!(
            errors("listen = \"tcp:127.0.0.1:4804\"\n"),
            [
                "daemon.toml:1: listen = \"tcp:127.0.0.1:4804\" needs a [tcp] section (identity, trust): TCP clients are authenticated and encrypted with Noise"
            ]
        );
        assert_eq!(
            errors("threads = 0\n"),
            ["daemon.toml:1: threads = 0 is out of range: 1 to 256"]
        );
        assert_eq!(
            errors("[limits]\nmax_connections = \"many\"\n"),
            ["daemon.toml:2: invalid type: string \"many\", expected u64"]
        );
    }
}
