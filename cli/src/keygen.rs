//! `conclave keygen`: a new identity (a name and a signing key pair).

use std::{path::PathBuf, process::ExitCode};

use clap::Args;
use conclave::{Identity, plugins::Registry, sdk::Options};

/// Arguments of `conclave keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The identity's name (the member name it will use).
    #[arg(long)]
    name: String,
    /// Where to write NAME.key (mode 0600) and NAME.pub.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// The signature algorithm.
    #[arg(long, default_value = "ed25519")]
    signature: String,
    /// The provider that generates the key.
    #[arg(long, default_value = "rustcrypto")]
    provider: String,
}

/// Runs `conclave keygen`.
pub fn run(args: KeygenArgs) -> ExitCode {
    if let Err(why) = conclave_policy::check_identity(&args.name) {
        eprintln!(
            "conclave keygen: the name {:?} is refused: {why}",
            args.name
        );
        return ExitCode::from(2);
    }
    let result = (|| -> Result<_, String> {
        let registry = Registry::with_builtins().map_err(|e| e.to_string())?;
        let provider = registry
            .new_provider(&args.provider, Options::default())
            .map_err(|e| e.to_string())?;
        let identity = Identity::generate(&provider, &args.name, &args.signature)
            .map_err(|e| e.to_string())?;
        identity.write_files(&args.out).map_err(|e| e.to_string())
    })();
    match result {
        Ok((key, public)) => {
            out!("secret key: {} (mode 0600: keep it private)", key.display());
            out!(
                "public key: {} (copy it into the trust directory of every member)",
                public.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("conclave keygen: {e}");
            ExitCode::from(1)
        }
    }
}
