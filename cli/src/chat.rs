//! `conclave chat`: a secure group chat on a daemon or on the local corosync, for people
//! to try it by hand (and for tests to drive it as a process).
//!
//! Each line on standard input is multicast to the group (agreed order, sealed). Lines
//! that start with `/` are commands: `/refresh` forces a new key (with new modules if the
//! policy file changed), `/status` shows the group's view, modules, epoch and key age as
//! this member holds them, `/leave` leaves the group and exits. SIGHUP reloads the policy
//! file: a change takes effect at the group's next key agreement.

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use clap::Args;
use conclave::{
    Identity, PolicyFile, Session, SessionEvent, sdk::Options, session::Command as SessionCommand,
};
use conclave_corosync::CpgConnection;
use conclave_gcs::{Address, Connection, MemberName, Service};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Arguments of `conclave chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The engine: `daemon` (a `conclave daemon` at `--connect`) or `corosync` (the
    /// corosync of this machine, through CPG: groups that span machines).
    #[arg(long, default_value = "daemon", value_parser = ["daemon", "corosync"])]
    engine: String,
    /// The daemon: `unix:PATH` or `tcp:IP:PORT` (with `--engine daemon`; default: the
    /// address a plain `conclave daemon` of this user listens on).
    #[arg(long, value_name = "ADDRESS")]
    connect: Option<Address>,
    /// The daemon's public-key file (`NAME.pub`, from `conclave keygen`): needed for a
    /// `tcp:` address, where the daemon must prove this key (Noise, both ways).
    #[arg(long, value_name = "FILE")]
    daemon_key: Option<PathBuf>,
    /// The group to join.
    #[arg(long)]
    group: String,
    /// The identity's secret-key file (from `conclave keygen`).
    #[arg(long, value_name = "FILE")]
    identity: PathBuf,
    /// The policy file (modules, trusted keys, plugins).
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// Print events as JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

fn print(json: bool, e: &SessionEvent) {
    if json {
        let mut v = serde_json::to_value(e).unwrap_or_default();
        if let (SessionEvent::Message { data, .. }, Some(obj)) = (e, v.as_object_mut()) {
            obj.insert(
                "text".into(),
                String::from_utf8_lossy(data).into_owned().into(),
            );
        }
        out!("{v}");
        return;
    }
    out!("{}", crate::render::describe(e));
}

async fn chat(args: ChatArgs) -> Result<(), String> {
    let (registry, policy, trust) = PolicyFile::load(&args.policy).map_err(|e| e.to_string())?;
    let settings = policy.resolve(&args.group).map_err(|e| e.to_string())?;
    let provider = registry
        .new_provider(&settings.provider, Options::default())
        .map_err(|e| e.to_string())?;
    let identity = Identity::read_file(&provider, &args.identity).map_err(|e| e.to_string())?;
    let live_trust = trust.clone();
    let policy = Arc::new(policy);
    if args.engine == "corosync" {
        let member = MemberName::new(identity.name()).map_err(|e| e.to_string())?;
        let connection = CpgConnection::connect(member).map_err(|e| e.to_string())?;
        let session = Session::over(connection, identity, registry, policy, trust)
            .map_err(|e| e.to_string())?;
        return run_session(session, &args, live_trust).await;
    }
    let (address, daemon_key) =
        crate::daemon::target(args.connect.as_ref(), args.daemon_key.as_deref())?;
    let session = Session::connect_pinned(
        &address,
        identity,
        daemon_key.as_ref(),
        registry,
        policy,
        trust,
    )
    .await
    .map_err(|e| format!("cannot reach the daemon at {address}: {e}"))?;
    run_session(session, &args, live_trust).await
}

async fn run_session<C: Connection>(
    mut session: Session<C>,
    args: &ChatArgs,
    live_trust: conclave::sdk::ka_kit::MapTrustStore,
) -> Result<(), String> {
    session.join(&args.group).await.map_err(|e| e.to_string())?;
    let handle = session.handle();
    let group = args.group.clone();
    let policy_path = args.policy.clone();
    // Standard input and SIGHUP feed the session through its handle.
    let input = {
        let handle = handle.clone();
        let group = group.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let c = match line.trim() {
                    "" => continue,
                    "/refresh" => SessionCommand::Refresh(group.clone()),
                    "/status" => SessionCommand::Status(group.clone()),
                    "/leave" | "/quit" => SessionCommand::Leave(group.clone()),
                    text => SessionCommand::Multicast {
                        group: group.clone(),
                        service: Service::Agreed,
                        data: text.as_bytes().to_vec(),
                    },
                };
                if !handle.send(c) {
                    break;
                }
            }
            // End of input: leave the group, which ends the chat once it is confirmed.
            handle.send(SessionCommand::Leave(group.clone()));
        })
    };
    let hup = tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match PolicyFile::load(&policy_path) {
                Ok((_, p, _)) => {
                    tracing::info!(path = %policy_path.display(), "policy reloaded");
                    // The trust directory is read again too: added and removed keys
                    // count from now on.
                    live_trust.replace_all(
                        p.policy()
                            .trust()
                            .iter()
                            .map(|(name, key)| (name, key.algorithm(), key.bytes())),
                    );
                    handle.send(SessionCommand::ReloadPolicy(Arc::new(p)));
                }
                Err(e) => eprintln!("! policy reload refused, keeping the old one:\n{e}"),
            }
        }
    });
    let result = loop {
        match session.next_event().await {
            Ok(e) => {
                print(args.json, &e);
                match e {
                    SessionEvent::Left { .. } => break Ok(()),
                    SessionEvent::Refused { reason, .. } => {
                        break Err(format!("the daemon refused to let us in: {reason}"));
                    }
                    _ => {}
                }
            }
            Err(e) => break Err(e.to_string()),
        }
    };
    input.abort();
    hup.abort();
    result
}

/// Runs `conclave chat`.
pub fn run(args: ChatArgs) -> ExitCode {
    let runtime = match crate::embedded::runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("conclave chat: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(chat(args));
    // Standard input is read by a blocking thread that would hold the runtime open.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conclave chat: {e}");
            ExitCode::from(1)
        }
    }
}
