//! `outbox list` and `outbox show`.

use super::*;

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Every batch: date, authority, events, published or not.
    List {
        /// The configuration file.
        #[arg(long, env = "NEMSMS_DIFF_CONFIG")]
        config: PathBuf,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the envelopes of one batch.
    Show {
        /// The configuration file.
        #[arg(long, env = "NEMSMS_DIFF_CONFIG")]
        config: PathBuf,
        /// The authority's CVR.
        #[arg(long, value_parser = parse_cvr_arg)]
        authority: u32,
        /// The list date.
        #[arg(long, value_parser = parse_date)]
        date: Date,
        /// Print at most this many envelopes.
        #[arg(long)]
        limit: Option<u64>,
    },
}

pub(super) fn outbox_list(config: &Path, json: bool) -> anyhow::Result<u8> {
    let cfg = load_config(config)?;
    let mut out = BufWriter::new(io::stdout().lock());
    if !json {
        writeln!(
            out,
            "{:<10} {:<9} {:>9} {:>9} {:>9} {:>11}  published",
            "date", "authority", "events", "tilmeldt", "afmeldt", "bytes"
        )?;
    }
    let mut failed = false;
    for path in crate::store::outbox::list(&cfg.state_dir)? {
        let h = match crate::store::outbox::read_header(&path) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
                continue;
            }
        };
        let cursor =
            crate::store::outbox::read_cursor(&path).with_context(|| path.display().to_string())?;
        let published = if h.n_events == 0 || cursor >= h.n_events {
            "yes".to_owned()
        } else if cursor == 0 {
            "no".to_owned()
        } else {
            format!("{cursor} of {}", h.n_events)
        };
        if json {
            let mut v = serde_json::to_value(h)?;
            v["published_events"] = cursor.into();
            // A u64 above 2^53 loses digits as a JSON number: hex text.
            v["payload_sum"] = format!("{:016x}", h.payload_sum).into();
            v["authority"] = keys::format(KeyKind::Cvr, h.authority).into();
            writeln!(out, "{v}")?;
        } else {
            writeln!(
                out,
                "{:<10} {:<9} {:>9} {:>9} {:>9} {:>11}  {published}",
                h.date.to_string(),
                keys::format(KeyKind::Cvr, h.authority),
                h.n_events,
                h.n_signed_up,
                h.n_signed_off,
                h.file_bytes()
            )?;
        }
    }
    out.flush()?;
    Ok(if failed { exit::FAILURE } else { exit::OK })
}

pub(super) fn outbox_show(
    config: &Path,
    authority: u32,
    date: Date,
    limit: Option<u64>,
) -> anyhow::Result<u8> {
    let cfg = load_config(config)?;
    let path = crate::store::outbox::batch_path(&cfg.state_dir, authority, date);
    if !path.exists() {
        bail!(
            "no batch for authority {} on {date} ({} does not exist)",
            keys::format(KeyKind::Cvr, authority),
            path.display()
        );
    }
    let (header, envelopes) = crate::store::outbox::open(&path)?;
    let mut out = BufWriter::new(io::stdout().lock());
    for env in envelopes.take(limit.unwrap_or(u64::MAX) as usize) {
        out.write_all(&env?.envelope)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    eprintln!(
        "{}: {} events ({} tilmeldt, {} afmeldt)",
        path.display(),
        header.n_events,
        header.n_signed_up,
        header.n_signed_off
    );
    Ok(exit::OK)
}

pub(super) fn outbox_command(c: OutboxCommand) -> anyhow::Result<u8> {
    match c {
        OutboxCommand::List { config, json } => outbox_list(&config, json),
        OutboxCommand::Show {
            config,
            authority,
            date,
            limit,
        } => outbox_show(&config, authority, date, limit),
    }
}
