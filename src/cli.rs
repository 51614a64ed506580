//! Command-line interface: clap definitions and the commands behind them.
//!
//! Each command validates its arguments once, calls the pipeline stages and
//! prints what the user asked for. Exit codes are in [`crate::exit`].

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use rayon::prelude::*;
use time::{Date, OffsetDateTime};

use crate::diff::{self, Changes};
use crate::keys::{self, KeyKind, KeySet};
use crate::{exit, fsutil, generate, parse, snapshot};

/// Nightly NemSMS registration-list diff: snapshots, changes and
/// Beskedfordeler events.
#[derive(Debug, Parser)]
#[command(name = "nemsms-diff", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build, inspect and export snapshot files.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Print the changes between two lists (CSV lists or snapshots), or
    /// between two directories of lists paired by file name.
    Diff(DiffArgs),
    /// Write realistic synthetic lists: DIR/<date>/<authority>.csv.
    Generate(GenerateArgs),
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Parse a list and write it as a snapshot file.
    Build(BuildArgs),
    /// Show a snapshot's header: authority, date, counts, size, checksum.
    Inspect(InspectArgs),
    /// Print a snapshot's keys as a list (header `type;nummer`).
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The list (assumed tilmeldingsliste CSV).
    pub list: PathBuf,
    /// The authority's CVR number.
    #[arg(long, value_parser = parse_cvr_arg)]
    pub authority: u32,
    /// The list date, YYYY-MM-DD.
    #[arg(long, value_parser = parse_date)]
    pub date: Date,
    /// When the list was taken (RFC 3339); default: the list file's mtime.
    #[arg(long, value_parser = parse_timestamp)]
    pub taken_at: Option<OffsetDateTime>,
    /// The snapshot file to write.
    #[arg(short, long)]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The snapshot file.
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The snapshot file.
    pub file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `haendelse;type;nummer` rows.
    Csv,
    /// One JSON object a line.
    Jsonl,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Yesterday: a list, a snapshot, or a directory of them.
    pub old: PathBuf,
    /// Today: a list, a snapshot, or a directory of them.
    pub new: PathBuf,
    /// Output format of the changes.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: Format,
    /// With two directories: where to write one change file per pair.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of authorities.
    #[arg(long, default_value_t = 98)]
    pub authorities: usize,
    /// Total keys on the first day.
    #[arg(long, default_value_t = 6_000_000)]
    pub keys: u64,
    /// Number of days.
    #[arg(long, default_value_t = 2)]
    pub days: u32,
    /// Share of keys removed and, separately, added each day.
    #[arg(long, default_value_t = 0.001)]
    pub churn: f64,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// First list date, YYYY-MM-DD.
    #[arg(long, value_parser = parse_date, default_value = "2026-01-01")]
    pub start: Date,
    /// Share of keys that are CVR numbers.
    #[arg(long, default_value_t = 0.05)]
    pub cvr_share: f64,
}

/// An error in how the program was called (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn parse_cvr_arg(s: &str) -> Result<u32, String> {
    keys::parse_cvr_str(s).map_err(|e| format!("not a valid CVR number: {e}"))
}

/// Parses a `YYYY-MM-DD` date.
pub fn parse_date(s: &str) -> Result<Date, String> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &fmt).map_err(|e| format!("expected YYYY-MM-DD: {e}"))
}

fn parse_timestamp(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("expected an RFC 3339 timestamp: {e}"))
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Snapshot(SnapshotCommand::Build(a)) => snapshot_build(&a),
        Command::Snapshot(SnapshotCommand::Inspect(a)) => snapshot_inspect(&a),
        Command::Snapshot(SnapshotCommand::Export(a)) => snapshot_export(&a),
        Command::Diff(a) => diff_command(&a),
        Command::Generate(a) => generate_command(&a),
    }
}

fn snapshot_build(a: &BuildArgs) -> anyhow::Result<u8> {
    let list = parse::read_list(&a.list)?;
    let taken_at = match a.taken_at {
        Some(t) => t.unix_timestamp(),
        None => mtime(&a.list)?,
    };
    let snap = snapshot::Snapshot {
        meta: snapshot::Meta {
            authority: a.authority,
            date: a.date,
            taken_at,
            n_rows: list.n_rows,
            n_duplicates: list.n_duplicates,
        },
        keys: list.keys,
    };
    let bytes = snapshot::write(&a.output, &snap)
        .with_context(|| format!("cannot write snapshot {}", a.output.display()))?;
    let n = snap.keys.len();
    eprintln!(
        "wrote {}: {} CPR + {} CVR keys, {} duplicates collapsed, {} bytes ({:.3} bytes/key)",
        a.output.display(),
        snap.keys.cpr.len(),
        snap.keys.cvr.len(),
        list.n_duplicates,
        bytes,
        if n == 0 { 0.0 } else { bytes as f64 / n as f64 }
    );
    Ok(exit::OK)
}

/// A file's modification time in Unix seconds.
pub fn mtime(path: &Path) -> anyhow::Result<i64> {
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .with_context(|| format!("cannot read the modification time of {}", path.display()))?;
    Ok(OffsetDateTime::from(modified).unix_timestamp())
}

fn snapshot_inspect(a: &InspectArgs) -> anyhow::Result<u8> {
    let bytes =
        std::fs::read(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    let s = snapshot::summarize(&bytes).with_context(|| a.file.display().to_string())?;
    let mut out = io::stdout().lock();
    if a.json {
        serde_json::to_writer(&mut out, &s)?;
        writeln!(out)?;
    } else {
        writeln!(out, "file:          {}", a.file.display())?;
        writeln!(out, "authority:     {}", s.authority)?;
        writeln!(out, "date:          {}", s.date)?;
        writeln!(out, "taken at:      {}", s.taken_at)?;
        writeln!(out, "CPR keys:      {}", s.n_cpr)?;
        writeln!(out, "CVR keys:      {}", s.n_cvr)?;
        writeln!(
            out,
            "source rows:   {} ({} duplicates)",
            s.n_rows, s.n_duplicates
        )?;
        writeln!(out, "size:          {} bytes", s.file_bytes)?;
        writeln!(out, "bytes per key: {:.3}", s.bytes_per_key)?;
        writeln!(out, "checksum:      {}", s.checksum)?;
    }
    out.flush()?;
    Ok(if s.checksum == "ok" {
        exit::OK
    } else {
        exit::FAILURE
    })
}

fn snapshot_export(a: &ExportArgs) -> anyhow::Result<u8> {
    let snap = snapshot::read(&a.file)?;
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    out.write_all(b"type;nummer\n")?;
    let mut buf = [0u8; 10];
    for kind in KeyKind::ALL {
        for &key in snap.keys.of(kind) {
            out.write_all(kind.as_str().as_bytes())?;
            out.write_all(b";")?;
            out.write_all(keys::format_into(kind, key, &mut buf))?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(exit::OK)
}

/// One side of a diff, read from a list or a snapshot (detected by content).
pub fn load_keys(path: &Path) -> anyhow::Result<KeySet> {
    let mut head = [0u8; 8];
    let n = {
        use std::io::Read;
        let mut f =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        f.read(&mut head)
            .with_context(|| format!("cannot read {}", path.display()))?
    };
    if snapshot::is_snapshot(&head[..n]) {
        Ok(snapshot::read(path)?.keys)
    } else {
        Ok(parse::read_list(path)?.keys)
    }
}

fn diff_command(a: &DiffArgs) -> anyhow::Result<u8> {
    match (a.old.is_dir(), a.new.is_dir()) {
        (true, true) => {
            let out = a.out.as_deref().ok_or_else(|| {
                UsageError("diffing two directories needs --out DIR for the change files".into())
            })?;
            diff_dirs(&a.old, &a.new, out, a.format)
        }
        (false, false) => {
            if a.out.is_some() {
                bail!(UsageError(
                    "--out is for diffing two directories; a single diff prints to stdout".into()
                ));
            }
            let (old, new) = rayon::join(|| load_keys(&a.old), || load_keys(&a.new));
            let (old, new) = (old?, new?);
            let changes = diff::diff(&old, &new);
            let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
            write_changes(&mut out, &changes, a.format)?;
            out.flush()?;
            eprintln!(
                "{} keys before, {} after: {} tilmeldt, {} afmeldt",
                old.len(),
                new.len(),
                changes.n_signed_up(),
                changes.n_signed_off()
            );
            Ok(exit::OK)
        }
        _ => bail!(UsageError(
            "OLD and NEW must both be files or both be directories".into()
        )),
    }
}

/// Writes changes sorted by kind (CPR first), then key.
pub fn write_changes(out: &mut impl Write, changes: &Changes, format: Format) -> io::Result<()> {
    if format == Format::Csv {
        out.write_all(b"haendelse;type;nummer\n")?;
    }
    let mut buf = [0u8; 10];
    for kind in KeyKind::ALL {
        let c = changes.of(kind);
        let (mut up, mut off) = (
            c.signed_up.iter().peekable(),
            c.signed_off.iter().peekable(),
        );
        loop {
            let (event, key) = match (up.peek(), off.peek()) {
                (Some(&&u), Some(&&o)) if u < o => ("tilmeldt", *up.next().expect("peeked")),
                (_, Some(_)) => ("afmeldt", *off.next().expect("peeked")),
                (Some(_), None) => ("tilmeldt", *up.next().expect("peeked")),
                (None, None) => break,
            };
            let digits = keys::format_into(kind, key, &mut buf);
            match format {
                Format::Csv => {
                    out.write_all(event.as_bytes())?;
                    out.write_all(b";")?;
                    out.write_all(kind.as_str().as_bytes())?;
                    out.write_all(b";")?;
                    out.write_all(digits)?;
                    out.write_all(b"\n")?;
                }
                Format::Jsonl => {
                    write!(
                        out,
                        "{{\"haendelse\":\"{event}\",\"type\":\"{kind}\",\"nummer\":\""
                    )?;
                    out.write_all(digits)?;
                    out.write_all(b"\"}\n")?;
                }
            }
        }
    }
    Ok(())
}

/// The outcome of one pair of a directory diff.
struct PairResult {
    name: String,
    outcome: anyhow::Result<(usize, usize, usize, usize)>,
}

fn list_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("cannot read directory {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.file_type()?.is_file() {
            names.push(name);
        }
    }
    Ok(names)
}

fn diff_dirs(old: &Path, new: &Path, out: &Path, format: Format) -> anyhow::Result<u8> {
    let mut names = list_names(old)?;
    names.extend(list_names(new)?);
    names.sort();
    names.dedup();
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let results: Vec<PairResult> = names
        .par_iter()
        .map(|name| PairResult {
            name: name.clone(),
            outcome: diff_pair(&old.join(name), &new.join(name), &out.join(name), format),
        })
        .collect();
    let mut stdout = BufWriter::new(io::stdout().lock());
    writeln!(
        stdout,
        "{:<24} {:>10} {:>10} {:>10} {:>10}  status",
        "file", "before", "after", "tilmeldt", "afmeldt"
    )?;
    let (mut failed, mut totals) = (0, (0, 0, 0, 0));
    for r in &results {
        match &r.outcome {
            Ok((before, after, up, off)) => {
                writeln!(
                    stdout,
                    "{:<24} {before:>10} {after:>10} {up:>10} {off:>10}  ok",
                    r.name
                )?;
                totals = (
                    totals.0 + before,
                    totals.1 + after,
                    totals.2 + up,
                    totals.3 + off,
                );
            }
            Err(e) => {
                failed += 1;
                writeln!(
                    stdout,
                    "{:<24} {:>10} {:>10} {:>10} {:>10}  error",
                    r.name, "-", "-", "-", "-"
                )?;
                eprintln!("error: {}: {e:#}", r.name);
            }
        }
    }
    writeln!(
        stdout,
        "{:<24} {:>10} {:>10} {:>10} {:>10}  {} ok, {} failed",
        "total",
        totals.0,
        totals.1,
        totals.2,
        totals.3,
        results.len() - failed,
        failed
    )?;
    stdout.flush()?;
    Ok(if failed == 0 { exit::OK } else { exit::PARTIAL })
}

fn diff_pair(
    old: &Path,
    new: &Path,
    out: &Path,
    format: Format,
) -> anyhow::Result<(usize, usize, usize, usize)> {
    for (side, path) in [("old", old), ("new", new)] {
        if !path.is_file() {
            bail!(
                "present only on one side: no {side} file {}",
                path.display()
            );
        }
    }
    let (o, n) = rayon::join(|| load_keys(old), || load_keys(new));
    let (o, n) = (o?, n?);
    let changes = diff::diff(&o, &n);
    let mut bytes = Vec::with_capacity(32 * (changes.n_signed_up() + changes.n_signed_off()) + 32);
    write_changes(&mut bytes, &changes, format)?;
    fsutil::write_replace(out, &bytes)
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok((
        o.len(),
        n.len(),
        changes.n_signed_up(),
        changes.n_signed_off(),
    ))
}

fn generate_command(a: &GenerateArgs) -> anyhow::Result<u8> {
    if !(0.0..=1.0).contains(&a.cvr_share) {
        bail!(UsageError("--cvr-share must be between 0 and 1".into()));
    }
    let summary = generate::generate(&generate::Options {
        out: a.out.clone(),
        authorities: a.authorities,
        keys: a.keys,
        days: a.days,
        churn: a.churn,
        seed: a.seed,
        start: a.start,
        cvr_share: a.cvr_share,
    })?;
    eprintln!(
        "wrote {} lists for {} authorities under {}: keys per day {:?}",
        summary.files,
        summary.authorities.len(),
        a.out.display(),
        summary.keys_per_day
    );
    Ok(exit::OK)
}
