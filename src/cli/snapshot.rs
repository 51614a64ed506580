//! Snapshot files: build, inspect, export.

use super::*;

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
    pub taken_at: Option<i64>,
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

pub(super) fn snapshot_build(a: &BuildArgs) -> anyhow::Result<u8> {
    let list = crate::store::lists::read_list(&a.list)?;
    let taken_at = match a.taken_at {
        Some(t) => t,
        None => fsutil::mtime(&a.list)?,
    };
    let snap = crate::store::snapshot::Snapshot {
        meta: crate::store::snapshot::Meta {
            authority: a.authority,
            date: a.date,
            taken_at,
            n_rows: list.n_rows,
            n_duplicates: list.n_duplicates,
        },
        keys: list.keys,
    };
    if let Some(dir) = a.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        fsutil::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let bytes = crate::store::snapshot::write(&a.output, &snap)
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

pub(super) fn snapshot_inspect(a: &InspectArgs) -> anyhow::Result<u8> {
    let bytes =
        std::fs::read(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    let s =
        crate::store::snapshot::summarize(&bytes).with_context(|| a.file.display().to_string())?;
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

pub(super) fn snapshot_export(a: &ExportArgs) -> anyhow::Result<u8> {
    let snap = crate::store::snapshot::read(&a.file)?;
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

pub(super) fn snapshot_command(c: SnapshotCommand) -> anyhow::Result<u8> {
    match c {
        SnapshotCommand::Build(a) => snapshot_build(&a),
        SnapshotCommand::Inspect(a) => snapshot_inspect(&a),
        SnapshotCommand::Export(a) => snapshot_export(&a),
    }
}
