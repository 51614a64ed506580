//! The `nemsms-diff` binary: parses the command line, runs the command and
//! maps the result to an exit code. All logic lives in the library.

use std::process::ExitCode;

use clap::Parser;
use nemsms_diff::{cli, exit};

fn main() -> ExitCode {
    nemsms_diff::harden::process();
    let cli = cli::Cli::parse();
    init_logging(cli.log_format, cli.debug_wire, cli.quiet);
    match cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) if is_broken_pipe(&err) => ExitCode::from(exit::OK),
        Err(err) => {
            eprintln!("error: {err:#}");
            if err.downcast_ref::<cli::UsageError>().is_some() {
                ExitCode::from(exit::USAGE)
            } else if err.downcast_ref::<exit::LockHeld>().is_some() {
                ExitCode::from(exit::LOCKED)
            } else {
                ExitCode::from(exit::FAILURE)
            }
        }
    }
}

/// Logs go to stderr: `RUST_LOG` filters (default `info`, `warn` with
/// `--quiet`). Other crates
/// (lapin logs SASL responses and every frame, token header included, at
/// debug and trace; reqwest, hyper and rustls log connection details) are
/// capped at `info` whatever `RUST_LOG` says, unless `--debug-wire`
/// (which refuses anything but loopback peers).
fn init_logging(format: cli::LogFormat, debug_wire: bool, quiet: bool) {
    use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
    use tracing_subscriber::prelude::*;
    let default = if quiet { "warn" } else { "info" };
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let cap = filter_fn(move |meta| {
        debug_wire
            || meta.target().starts_with("nemsms_diff")
            || *meta.level() <= tracing::Level::INFO
    });
    let filter = env.and(cap);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        cli::LogFormat::Json => tracing_subscriber::registry()
            .with(layer.json().with_filter(filter))
            .init(),
        cli::LogFormat::Text => tracing_subscriber::registry()
            .with(layer.with_filter(filter))
            .init(),
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
