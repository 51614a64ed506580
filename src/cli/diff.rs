//! Diffing two lists or snapshots, or two directories of them.

use super::*;
use crate::domain::diff::Changes;
use crate::domain::keys::KeySet;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `haendelse;type;nummer` rows.
    Csv,
    /// One JSON object a line.
    Jsonl,
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
    if crate::store::snapshot::is_snapshot(&head[..n]) {
        Ok(crate::store::snapshot::read(path)?.keys)
    } else {
        Ok(crate::store::lists::read_list(path)?.keys)
    }
}

pub(super) fn diff_command(a: &DiffArgs) -> anyhow::Result<u8> {
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
            let changes = crate::domain::diff::diff(&old, &new);
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
    for (kind, key, change) in changes.events() {
        let event = change.as_str();
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
    Ok(())
}

/// The outcome of one pair of a directory diff.
struct PairResult {
    name: String,
    outcome: anyhow::Result<(usize, usize, usize, usize)>,
}

pub(super) fn list_names(dir: &Path) -> anyhow::Result<Vec<String>> {
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

pub(super) fn diff_dirs(old: &Path, new: &Path, out: &Path, format: Format) -> anyhow::Result<u8> {
    let mut names = list_names(old)?;
    names.extend(list_names(new)?);
    names.sort();
    names.dedup();
    fsutil::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    // Largest pair first: started late, the biggest list would be parsed
    // alone at the end. The report keeps the names' order.
    let bytes = |name: &String| {
        [old, new]
            .iter()
            .filter_map(|d| std::fs::metadata(d.join(name)).ok())
            .map(|m| m.len())
            .sum::<u64>()
    };
    let results: Vec<PairResult> = crate::rt::largest_first(&names, bytes, |name| PairResult {
        name: name.clone(),
        outcome: diff_pair(&old.join(name), &new.join(name), &out.join(name), format),
    });
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

pub(super) fn diff_pair(
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
    let changes = crate::domain::diff::diff(&o, &n);
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
