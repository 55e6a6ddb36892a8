//! `hookfan check-config`: validates the configuration and prints the
//! effective settings, secrets masked, every path absolute (resolved
//! against the file's directory), so that the output works as a config
//! from any directory.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use hookfan::config::{ConfigErrors, SECRET_ENV, SecretSource};

use crate::EXIT_CONFIG;
use crate::prepare::Prepared;

pub(crate) fn run(path: &Path, prepared: Result<Prepared, ConfigErrors>) -> ExitCode {
    match prepared {
        Ok(p) => {
            let secret = match p.secret.source() {
                SecretSource::File(f) => {
                    format!("**** ({}; from {})", p.secret.summary(), f.display())
                }
                SecretSource::Env => format!("**** ({}; from {SECRET_ENV})", p.secret.summary()),
            };
            // The base is on the first line, the one that names the file:
            // the rest is the same for the printed config fed back.
            let text = format!(
                "# {}: valid; relative paths resolved against {}\n\
                 # webhook secret: {secret}\n# auth: {}\n\
                 # broker.shards = 0 resolves to {} here\n{}",
                path.display(),
                p.config.base_dir.display(),
                p.auth_summary,
                p.config.broker.effective_shards(),
                toml::to_string(&p.config).expect("config serializes"),
            );
            // A reader that stops early (`| head`) is not an error.
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{}: {errors}", path.display());
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
