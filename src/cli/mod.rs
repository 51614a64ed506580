//! Command-line interface: clap definitions and the commands behind them.
//!
//! Each command validates its arguments once, calls the pipeline stages and
//! prints what the user asked for. Exit codes are in [`crate::exit`].

mod alive;
mod check;
mod config_check;
mod diff;
#[cfg(feature = "sim")]
mod generate;
mod nightly;
mod outbox;
mod prune;
mod publish;
mod republish;
#[cfg(feature = "sim")]
mod simulate;
mod sms;
mod snapshot;
mod status;
mod user;

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use jiff::civil::Date;

pub use crate::domain::dates::parse_date;
use crate::domain::keys::{self, KeyKind};
pub use crate::exit::UsageError;
use crate::{exit, fsutil};

pub use diff::{Format, load_keys, write_changes};

/// Nightly NemSMS registration-list diff: snapshots, changes and
/// Beskedfordeler events.
#[derive(Debug, Parser)]
#[command(
    name = "nemsms-diff",
    version,
    about,
    max_term_width = 100,
    after_help = "Exit codes: 0 everything worked; 1 failed (bad input, corrupt file, I/O; `check`: a problem); \
2 usage or configuration error; 3 partial (some authorities failed or were quarantined; `status`: an operator is needed); \
4 publish incomplete (the next publish resumes); 5 another run holds the state lock; 6 every authority failed."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr: `text` for people, `json` for schedulers.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Let other crates' debug and trace logs through (AMQP frames, TLS and
    /// HTTP details, which carry credentials and tokens). Refused unless
    /// every configured peer (register, STS, broker) is on loopback.
    #[arg(long, global = true)]
    pub debug_wire: bool,
    /// Only warnings and errors on stderr, no progress bar (the tables and
    /// results on stdout stay).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Colour in text logs: `auto` colours only when stderr is a terminal
    /// (and NO_COLOR is unset).
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to write ANSI colours to stderr.
    pub fn ansi(self) -> bool {
        use std::io::IsTerminal;
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                io::stderr().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build, inspect and export snapshot files.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Print the changes between two lists (CSV lists or snapshots), or
    /// between two directories of lists paired by file name.
    Diff(diff::DiffArgs),
    /// Write realistic synthetic lists: DIR/<date>/<authority>.csv.
    #[cfg(feature = "sim")]
    Generate(generate::GenerateArgs),
    /// The nightly job: for every authority, snapshot today's list, diff it
    /// against the current snapshot and write the events to the outbox.
    Run(nightly::RunArgs),
    /// Run every date of a range in order per authority (resumable).
    Backfill(nightly::BackfillArgs),
    /// Look inside the outbox.
    #[command(subcommand)]
    Outbox(outbox::OutboxCommand),
    /// SF2250 pass-through calls to the Register for one end user.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Send an SMS under NemSMS's rules (SF2250 EP_SP4).
    #[command(subcommand)]
    Sms(sms::SmsCommand),
    /// The operator's view of the state: per authority the current
    /// snapshot, the last run, a quarantine and how to release it,
    /// unpublished events, a change list still to delete. Exit 3 when an
    /// authority needs an operator.
    Status(status::StatusArgs),
    /// Verify every state file (snapshots, pointers, batches, cursors,
    /// change-list records; orphans), like `restic check`. Changes nothing;
    /// exit 1 if anything is wrong.
    Check(check::CheckArgs),
    /// Check the configuration (`config check [--connect]`).
    #[command(subcommand)]
    Config(config_check::ConfigCommand),
    /// Retention: remove published batches, reports and snapshots no
    /// longer needed, older than --keep-days (never the current snapshot,
    /// an unpublished batch or what one needs); prints each file.
    Prune(prune::PruneArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) of nemsms-diff, or with --out DIR write
    /// one page per command there.
    Man {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Send one batch again (same BeskedIds): moves its publish cursor back
    /// to --from-event and records that it did; the next `publish` sends.
    Republish(republish::RepublishArgs),
    /// Send every unpublished outbox batch to Beskedfordeler (AMQP).
    ///
    /// An outage (broker unreachable, or up but answering nothing) is ridden
    /// out with capped, jittered backoff until the outage deadline passes
    /// without a confirmed event; then exit 4, and the next publish resumes.
    Publish(publish::PublishArgs),
    /// AliveBesked: prove the message flow through Beskedfordeler is alive.
    #[command(subcommand)]
    Alive(alive::AliveCommand),
    /// Test doubles that speak the real protocols over loopback.
    #[command(subcommand)]
    #[cfg(feature = "sim")]
    Simulate(simulate::SimulateCommand),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    if cli.debug_wire {
        crate::config::DEBUG_WIRE.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    if cli.quiet || cli.log_format == LogFormat::Json {
        crate::nightly::report::QUIET.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    match cli.command {
        Command::Snapshot(c) => snapshot::snapshot_command(c),
        Command::Diff(a) => diff::diff_command(&a),
        #[cfg(feature = "sim")]
        Command::Generate(a) => generate::generate_command(&a),
        Command::Run(a) => nightly::nightly_command(&a),
        Command::Backfill(a) => nightly::backfill_command(&a),
        Command::Outbox(c) => outbox::outbox_command(c),
        Command::User(c) => user::user_command(c),
        Command::Sms(c) => sms::sms_command(c),
        Command::Status(a) => status::status_command(&a),
        Command::Check(a) => check::check_command(&a),
        Command::Prune(a) => prune::prune_command(&a),
        Command::Config(c) => config_check::config_command(c),
        Command::Republish(a) => republish::republish_command(&a),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            // Into a buffer first: the generator panics on a closed pipe.
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "nemsms-diff", &mut buf);
            io::stdout().lock().write_all(&buf)?;
            Ok(exit::OK)
        }
        Command::Man { out } => man_command(out.as_deref()),
        Command::Publish(a) => publish::publish_command(&a),
        Command::Alive(alive::AliveCommand::Serve(a)) => alive::serve_command(&a),
        Command::Alive(alive::AliveCommand::Send { config, timeout }) => {
            alive::send_command(&config, timeout)
        }
        Command::Alive(alive::AliveCommand::Check {
            config,
            via,
            timeout,
        }) => alive::check_command(&config, via, timeout),
        #[cfg(feature = "sim")]
        Command::Simulate(c) => simulate::simulate_command(c),
    }
}

fn parse_cvr_arg(s: &str) -> Result<u32, String> {
    keys::parse_cvr_str(s).map_err(|e| format!("not a valid CVR number: {e}"))
}

fn parse_timestamp(s: &str) -> Result<i64, String> {
    crate::domain::dates::parse_rfc3339(s)
}

/// Loads the config; its errors are usage errors (exit 2).
fn load_config(path: &Path) -> anyhow::Result<crate::config::Config> {
    crate::config::Config::load(path).map_err(|e| UsageError(format!("{e:#}")).into())
}

fn bfo_config(
    cfg: &crate::config::Config,
) -> anyhow::Result<&crate::beskedfordeler::BeskedfordelerConfig> {
    cfg.beskedfordeler.as_ref().ok_or_else(|| {
        UsageError(format!(
            "{}: no [beskedfordeler] section",
            cfg.path.display()
        ))
        .into()
    })
}

/// `man`: the page of the whole program on stdout, or one page per
/// command under `out` (`nemsms-diff.1`, `nemsms-diff-run.1`, …).
fn man_command(out: Option<&Path>) -> anyhow::Result<u8> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    match out {
        None => {
            let mut stdout = io::stdout().lock();
            clap_mangen::Man::new(cmd).render(&mut stdout)?;
        }
        Some(dir) => {
            fsutil::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let mut pages = 0;
            let mut write = |name: String, c: clap::Command| -> anyhow::Result<()> {
                let mut buf = Vec::new();
                clap_mangen::Man::new(c).render(&mut buf)?;
                let path = dir.join(format!("{name}.1"));
                // Documentation, not state: readable by all, as man pages are.
                std::fs::write(&path, &buf)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                pages += 1;
                Ok(())
            };
            for sub in cmd.get_subcommands() {
                let name = format!("nemsms-diff-{}", sub.get_name());
                write(
                    name.clone(),
                    sub.clone().display_name(name.clone()).bin_name(name),
                )?;
            }
            write("nemsms-diff".into(), cmd.clone())?;
            println!("wrote {pages} man pages to {}", dir.display());
        }
    }
    Ok(exit::OK)
}
