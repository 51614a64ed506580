//! `user …`: the SF2250 pass-through calls for one end user.

use super::*;

#[derive(Debug, Args)]
pub struct UserTarget {
    /// The configuration file ([register] and the authority's SysID).
    #[arg(long, env = "NEMSMS_DIFF_CONFIG")]
    pub config: PathBuf,
    /// The authority's CVR.
    #[arg(long, value_parser = parse_cvr_arg)]
    pub authority: u32,
    #[command(flatten)]
    pub nummer: Nummer,
}

/// The end user: exactly one of these.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Nummer {
    /// The citizen's CPR number, or `-` to read it from standard input
    /// (which keeps it out of `ps` and shell history).
    #[arg(long)]
    pub cpr: Option<String>,
    /// Read the citizen's CPR number from this file (its first line).
    #[arg(long)]
    pub cpr_file: Option<PathBuf>,
    /// The company's CVR number.
    #[arg(long)]
    pub cvr: Option<String>,
}

impl Nummer {
    /// The validated number and its kind. Errors never show the number.
    pub fn resolve(&self) -> anyhow::Result<(KeyKind, u32)> {
        let (text, kind, from) = match (&self.cpr, &self.cpr_file, &self.cvr) {
            (Some(c), None, None) if c == "-" => (
                read_first_line(io::stdin().lock(), "standard input")?,
                KeyKind::Cpr,
                "--cpr -".to_owned(),
            ),
            (Some(c), None, None) => (c.clone(), KeyKind::Cpr, "--cpr".to_owned()),
            (None, Some(f), None) => {
                let file = std::fs::File::open(f)
                    .with_context(|| format!("--cpr-file: cannot open {}", f.display()))?;
                (
                    read_first_line(io::BufReader::new(file), &f.display().to_string())?,
                    KeyKind::Cpr,
                    format!("--cpr-file {}", f.display()),
                )
            }
            (None, None, Some(c)) => (c.clone(), KeyKind::Cvr, "--cvr".to_owned()),
            _ => bail!(UsageError(
                "give exactly one of --cpr, --cpr-file and --cvr".into()
            )),
        };
        let value = keys::parse_kind(kind, text.trim().as_bytes())
            .map_err(|e| UsageError(format!("{from}: {e}")))?;
        Ok((kind, value))
    }
}

/// The first line of `r` (at most 64 bytes are read: a number is short).
pub(super) fn read_first_line(r: impl io::BufRead, what: &str) -> anyhow::Result<String> {
    use io::BufRead;
    let mut line = String::new();
    r.take(64)
        .read_line(&mut line)
        .with_context(|| format!("cannot read the number from {what}"))?;
    Ok(line)
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// OpdaterBorgerNemSMS: create or update the end user's master data
    /// (PUT …/boks/{nummer} with a SlutbrugerStamdata body).
    Update {
        #[command(flatten)]
        target: UserTarget,
        /// The SlutbrugerStamdata XML body.
        #[arg(long)]
        stamdata: PathBuf,
    },
    /// TilmeldNemSMS: sign the end user up at all authorities
    /// (PUT …/boks/{nummer}/myndighedstilmelding, Myndighedstilmelding = true).
    Signup {
        #[command(flatten)]
        target: UserTarget,
    },
    /// AfmeldNemSMS: sign the end user off
    /// (PUT …/boks/{nummer}/myndighedstilmelding, Myndighedstilmelding = false).
    Signoff {
        #[command(flatten)]
        target: UserTarget,
    },
    /// Spoerg tilmelding (EP_SP1): whether the end user is signed up at
    /// the authority, asked of the Register (GET …/boks/{nummer}/
    /// myndighedstilmelding), or with --local answered from our own replica
    /// (the authority's current snapshot, as of its list date; no network).
    /// The number is never printed.
    Status {
        #[command(flatten)]
        target: UserTarget,
        /// Answer from the local replica instead of asking the Register.
        #[arg(long)]
        local: bool,
        /// One JSON object instead of a sentence.
        #[arg(long)]
        json: bool,
    },
    /// OpdaterBorgerNemSMS, then TilmeldNemSMS; stops if the first fails.
    Enroll {
        #[command(flatten)]
        target: UserTarget,
        /// The SlutbrugerStamdata XML body.
        #[arg(long)]
        stamdata: PathBuf,
    },
}

/// The stamdata body, checked as XML (no DOCTYPE).
fn stamdata_body(stamdata: &Path) -> anyhow::Result<Vec<u8>> {
    let body =
        std::fs::read(stamdata).with_context(|| format!("cannot read {}", stamdata.display()))?;
    let limits = crate::domain::xml::Limits {
        max_depth: 32,
        max_run: 1 << 20,
    };
    crate::domain::xml::walk(&body[..], &[], limits, |_| {
        Ok::<_, crate::domain::xml::XmlError>(())
    })
    .map_err(|e| match e {
        crate::domain::xml::XmlError::Doctype => {
            UsageError("--stamdata: a DOCTYPE is not allowed".into())
        }
        e => UsageError(format!("--stamdata: not well-formed XML: {e}")),
    })?;
    Ok(body)
}

/// The calls, with their names and paths.
#[derive(Clone, Copy)]
enum Call {
    /// OpdaterBorgerNemSMS: `PUT …/boks/{nummer}` (a CVR with the configured prefix).
    Update,
    /// TilmeldNemSMS / AfmeldNemSMS: `PUT …/boks/{nummer}/myndighedstilmelding`.
    Tilmelding(bool),
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::Update => "OpdaterBorgerNemSMS",
            Call::Tilmelding(true) => "TilmeldNemSMS",
            Call::Tilmelding(false) => "AfmeldNemSMS",
        }
    }
}

pub(super) fn user_command(c: UserCommand) -> anyhow::Result<u8> {
    match c {
        UserCommand::Update { target, stamdata } => {
            put(&target, Call::Update, stamdata_body(&stamdata)?)
        }
        UserCommand::Signup { target } => put(
            &target,
            Call::Tilmelding(true),
            crate::register::wire::myndighedstilmelding_body(true).into_bytes(),
        ),
        UserCommand::Signoff { target } => put(
            &target,
            Call::Tilmelding(false),
            crate::register::wire::myndighedstilmelding_body(false).into_bytes(),
        ),
        UserCommand::Status {
            target,
            local,
            json,
        } => status_command(&target, local, json),
        UserCommand::Enroll { target, stamdata } => {
            put(&target, Call::Update, stamdata_body(&stamdata)?)?;
            put(
                &target,
                Call::Tilmelding(true),
                crate::register::wire::myndighedstilmelding_body(true).into_bytes(),
            )
        }
    }
}

/// The `--authority` of `t` in its config.
pub(super) fn configured_authority<'a>(
    cfg: &'a crate::config::Config,
    t: &UserTarget,
) -> anyhow::Result<&'a crate::config::Authority> {
    cfg.authority(t.authority).ok_or_else(|| {
        UsageError(format!(
            "authority {} is not in {}",
            keys::format(KeyKind::Cvr, t.authority),
            t.config.display()
        ))
        .into()
    })
}

/// `user status`: asked of the Register, or with `local` answered from the
/// authority's current snapshot; one sentence or one JSON object, never
/// the number.
fn status_command(t: &UserTarget, local: bool, json: bool) -> anyhow::Result<u8> {
    let cfg = load_config(&t.config)?;
    let authority = configured_authority(&cfg, t)?;
    let (kind, value) = t.nummer.resolve()?;
    let cvr = keys::format(KeyKind::Cvr, authority.cvr);
    let (signed_up, mut answer, how) = if local {
        local_answer(&cfg, authority, kind, value)?
    } else {
        register_answer(&cfg, &t.config, authority, kind, value)?
    };
    if json {
        answer["authority"] = cvr.into();
        answer["type"] = kind.as_str().into();
        answer["signed_up"] = signed_up.into();
        println!("{answer}");
    } else {
        let (da, en) = if signed_up {
            ("tilmeldt", "signed up")
        } else {
            ("ikke tilmeldt", "not signed up")
        };
        println!("{da}: {en} at authority {cvr} {how}");
    }
    Ok(exit::OK)
}

/// EP_SP1 from the current snapshot: the answer, its JSON fields and how
/// it was found.
fn local_answer(
    cfg: &crate::config::Config,
    authority: &crate::config::Authority,
    kind: KeyKind,
    value: u32,
) -> anyhow::Result<(bool, serde_json::Value, String)> {
    let started = std::time::Instant::now();
    let state = crate::store::state::State::new(cfg.state_dir.clone());
    let Some(date) = state.read_current(authority.cvr)? else {
        bail!(
            "authority {} has no current snapshot yet: run the nightly job first",
            keys::format(KeyKind::Cvr, authority.cvr)
        );
    };
    // Looked up in the snapshot without decoding it (checksums verified).
    let (signed_up, meta) =
        crate::store::snapshot::read_contains(&state.snapshot(authority.cvr, date), kind, value)?;
    let micros = started.elapsed().as_micros() as u64;
    let fields = serde_json::json!({
        "source": "local",
        "as_of": date.to_string(),
        "taken_at": crate::domain::dates::rfc3339(meta.taken_at),
        "micros": micros,
    });
    Ok((
        signed_up,
        fields,
        format!("as of list date {date} ({micros} µs, from the local replica)"),
    ))
}

/// EP_SP1 asked of the Register: the answer, its JSON fields and how it
/// was found.
fn register_answer(
    cfg: &crate::config::Config,
    config_path: &Path,
    authority: &crate::config::Authority,
    kind: KeyKind,
    value: u32,
) -> anyhow::Result<(bool, serde_json::Value, String)> {
    let (client, _) = register_client(cfg, config_path, authority)?;
    let started = std::time::Instant::now();
    let signed_up = ask_register(&client, &authority.register_sysid, kind, value)?;
    let millis = started.elapsed().as_millis() as u64;
    let fields = serde_json::json!({"source": "register", "millis": millis});
    Ok((
        signed_up,
        fields,
        format!("({millis} ms, asked of the Register)"),
    ))
}

/// The Register client for an authority (its own certificate, if it has
/// one) and the [register] settings.
pub(super) fn register_client<'a>(
    cfg: &'a crate::config::Config,
    config_path: &Path,
    authority: &crate::config::Authority,
) -> anyhow::Result<(
    crate::register::fetch::Client,
    &'a crate::register::fetch::RegisterConfig,
)> {
    let register = cfg
        .register
        .as_ref()
        .ok_or_else(|| UsageError(format!("{}: no [register] section", config_path.display())))?;
    let (cert, key) = authority
        .client_cert
        .clone()
        .unwrap_or_else(|| (register.client_cert.clone(), register.client_key.clone()));
    Ok((
        crate::register::fetch::Client::new(register, &cert, &key)?,
        register,
    ))
}

/// Spoerg tilmelding (EP_SP1) asked of the Register.
pub(super) fn ask_register(
    client: &crate::register::fetch::Client,
    sysid: &str,
    kind: KeyKind,
    value: u32,
) -> anyhow::Result<bool> {
    let path = crate::register::wire::myndighedstilmelding_path(sysid, &keys::format(kind, value));
    let body = client
        .get_small("Spoerg tilmelding", &path)
        .map_err(|e| anyhow::anyhow!("Spoerg tilmelding: {e}"))?;
    crate::register::wire::parse_myndighedstilmelding(&body)
        .map_err(|e| anyhow::anyhow!("Spoerg tilmelding: the Register's answer: {e}"))
}

/// One SF2250 pass-through `PUT` of `body`; the number is validated first
/// and never printed (errors name the call). Not in NemSMS's service window.
fn put(t: &UserTarget, call: Call, body: Vec<u8>) -> anyhow::Result<u8> {
    let cfg = load_config(&t.config)?;
    let authority = configured_authority(&cfg, t)?;
    let (kind, value) = t.nummer.resolve()?;
    let nummer = keys::format(kind, value);
    let (client, register) = register_client(&cfg, &t.config, authority)?;
    let sysid = &authority.register_sysid;
    let path = match call {
        Call::Update if kind == KeyKind::Cvr => crate::register::wire::boks_path(
            sysid,
            &format!("{}{nummer}", register.boks_cvr_prefix),
        ),
        Call::Update => crate::register::wire::boks_path(sysid, &nummer),
        Call::Tilmelding(_) => crate::register::wire::myndighedstilmelding_path(sysid, &nummer),
    };
    let name = call.name();
    let status = client
        .put(&path, body)
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    eprintln!(
        "{name} for a {kind} at authority {}: HTTP {status}",
        keys::format(KeyKind::Cvr, authority.cvr)
    );
    Ok(exit::OK)
}
