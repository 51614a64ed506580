//! `generate`: synthetic lists (the lab's data generator).

use super::*;

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

pub(super) fn generate_command(a: &GenerateArgs) -> anyhow::Result<u8> {
    if !(0.0..=1.0).contains(&a.cvr_share) {
        bail!(UsageError("--cvr-share must be between 0 and 1".into()));
    }
    let summary = crate::sim::generate::generate(&crate::sim::generate::Options {
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
