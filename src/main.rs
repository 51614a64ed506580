//! The `nemsms-diff` binary: parses the command line, runs the command and
//! maps the result to an exit code. All logic lives in the library.

use std::process::ExitCode;

use clap::Parser;
use nemsms_diff::{cli, exit};

fn main() -> ExitCode {
    nemsms_diff::harden::process();
    let cli = cli::Cli::parse();
    let json = cli.log_format == cli::LogFormat::Json;
    init_logging(cli.log_format, cli.debug_wire, cli.quiet, cli.color.ansi());
    match cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) if is_broken_pipe(&err) => ExitCode::from(exit::OK),
        Err(err) => {
            let code = if err.downcast_ref::<cli::UsageError>().is_some() {
                exit::USAGE
            } else if err.downcast_ref::<exit::LockHeld>().is_some() {
                exit::LOCKED
            } else {
                exit::FAILURE
            };
            if json {
                // A scheduler reading JSON gets the fatal error as JSON too.
                tracing::error!(exit_code = code, "{err:#}");
            } else {
                eprintln!("error: {err:#}");
            }
            ExitCode::from(code)
        }
    }
}

/// Log lines to stderr around the progress bar (if one is drawn).
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        nemsms_diff::nightly::report::write_log(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Logs go to stderr: `RUST_LOG` filters (default `info`, `warn` with
/// `--quiet`). Other crates
/// (lapin logs SASL responses and every frame, token header included, at
/// debug and trace; reqwest, hyper and rustls log connection details) are
/// capped at `info` whatever `RUST_LOG` says, unless `--debug-wire`
/// (which refuses anything but loopback peers). Colour only with `ansi`
/// (`--color`); lines are written around the progress bar.
fn init_logging(format: cli::LogFormat, debug_wire: bool, quiet: bool, ansi: bool) {
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
        .with_writer(|| LogWriter)
        .with_ansi(ansi)
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
