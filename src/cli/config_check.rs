//! `config check`: is the configuration usable, before a run finds out.

use super::*;
use crate::nightly::preflight::{self, Level};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration: it parses, every path exists, key files are
    /// private, certificates parse, match their keys and are valid; with
    /// --connect also a TLS handshake and reference call to the Register
    /// and a login to Beskedfordeler. Exit 2 if anything is wrong.
    Check(ConfigCheckArgs),
}

#[derive(Debug, Args)]
pub struct ConfigCheckArgs {
    /// The configuration file (or NEMSMS_DIFF_CONFIG).
    #[arg(long, env = "NEMSMS_DIFF_CONFIG")]
    pub config: PathBuf,
    /// Also connect: the Register (mTLS and a reference call), the STS and
    /// Beskedfordeler (token and AMQP login).
    #[arg(long)]
    pub connect: bool,
    /// One JSON object instead of lines.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn config_command(c: ConfigCommand) -> anyhow::Result<u8> {
    let ConfigCommand::Check(a) = c;
    let cfg = load_config(&a.config)?;
    let mut findings = preflight::check_files(&cfg, preflight::Scope::all());
    if a.connect {
        preflight::check_connections(&cfg, &mut findings);
    }
    let n_errors = findings.errors().count();
    let n_warnings = findings.warnings().count();
    let mut out = BufWriter::new(io::stdout().lock());
    if a.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "config": cfg.path.display().to_string(),
                "findings": findings.0,
                "errors": n_errors,
                "warnings": n_warnings,
            })
        )?;
    } else {
        writeln!(out, "ok      {} parses", cfg.path.display())?;
        for f in &findings.0 {
            let level = match f.level {
                Level::Error => "ERROR  ",
                Level::Warning => "warning",
                Level::Ok => "ok     ",
            };
            writeln!(out, "{level} {}: {}", f.what, f.detail)?;
        }
        writeln!(
            out,
            "{}: {n_errors} errors, {n_warnings} warnings{}",
            cfg.path.display(),
            if a.connect {
                ""
            } else {
                " (--connect also tries the network)"
            }
        )?;
    }
    out.flush()?;
    Ok(if n_errors > 0 { exit::USAGE } else { exit::OK })
}

/// At the start of `run`/`backfill`: the files the run will use; errors
/// are configuration errors (exit 2), warnings are logged.
pub(super) fn preflight_for_run(cfg: &crate::config::Config, publish: bool) -> anyhow::Result<()> {
    let scope = preflight::Scope {
        state_dir: false,
        register: !matches!(cfg.source, crate::config::Source::Files(_)),
        beskedfordeler: publish,
        alive: false,
    };
    let findings = preflight::check_files(cfg, scope);
    for w in findings.warnings() {
        tracing::warn!(what = %w.what, "{}", w.detail);
    }
    let errors: Vec<String> = findings
        .errors()
        .map(|e| format!("{}: {}", e.what, e.detail))
        .collect();
    if !errors.is_empty() {
        bail!(UsageError(format!(
            "{}: {} (nothing was run; `config check` lists every finding)",
            cfg.path.display(),
            errors.join("; ")
        )));
    }
    Ok(())
}
