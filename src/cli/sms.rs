//! `sms send`: EP_SP4 under NemSMS's rules, checked before anything leaves.

use super::*;

#[derive(Debug, Subcommand)]
pub enum SmsCommand {
    /// Afsend SMS (EP_SP4): send one SMS from the authority's
    /// Afsendersystem SysID. Refused before anything is sent when the text
    /// has more than 160 characters, outside 08:00-22:00 Danish time
    /// (unless --wait), or when the recipient is not signed up at the
    /// authority (asked of the Register first, EP_SP1). File format TXT,
    /// KanalValg D and Prioritet D are always set. Prints the MeddelelseId.
    Send(SendArgs),
}

#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub target: user::UserTarget,
    /// The text (at most 160 characters).
    #[arg(
        long,
        conflicts_with = "text_file",
        required_unless_present = "text_file"
    )]
    pub text: Option<String>,
    /// Read the text from this file (UTF-8; one trailing line break is dropped).
    #[arg(long)]
    pub text_file: Option<PathBuf>,
    /// Outside 08:00-22:00 Danish time, wait until 08:00 instead of refusing.
    #[arg(long)]
    pub wait: bool,
}

pub(super) fn sms_command(c: SmsCommand) -> anyhow::Result<u8> {
    match c {
        SmsCommand::Send(a) => send(&a),
    }
}

fn send(a: &SendArgs) -> anyhow::Result<u8> {
    use crate::domain::sms;
    let t = &a.target;
    let cfg = load_config(&t.config)?;
    let authority = user::configured_authority(&cfg, t)?;
    let cvr = keys::format(KeyKind::Cvr, authority.cvr);
    let afsender = authority.afsender_sysid.clone().ok_or_else(|| {
        UsageError(format!(
            "authority {cvr} has no afsender_sysid in {} (the Afsendersystem SysID SMS are sent from)",
            t.config.display()
        ))
    })?;
    let text = match (&a.text, &a.text_file) {
        (Some(t), None) => t.clone(),
        (None, Some(f)) => {
            let mut t = std::fs::read_to_string(f)
                .with_context(|| format!("--text-file: cannot read {}", f.display()))?;
            if t.ends_with('\n') {
                t.pop();
                if t.ends_with('\r') {
                    t.pop();
                }
            }
            t
        }
        _ => bail!(UsageError("give --text or --text-file".into())),
    };
    sms::check_text(&text).map_err(|e| UsageError(format!("--text: {e}; nothing was sent")))?;
    let (kind, value) = t.nummer.resolve()?;
    let (client, _) = user::register_client(&cfg, &t.config, authority)?;

    // 08:00-22:00 Danish time (NemSMS's terms).
    let now = crate::register::fetch::now();
    if let Err(opens) = sms::window(now.datetime()) {
        let opens_at = opens.in_tz("Europe/Copenhagen").context("Danish time")?;
        if !a.wait {
            bail!(
                "an SMS may only be sent between 08:00 and 22:00 Danish time; it is {} now. \
                 Nothing was sent (--wait waits until {})",
                now.strftime("%H:%M"),
                opens_at.strftime("%Y-%m-%d %H:%M %Z")
            );
        }
        let wait = now.duration_until(&opens_at).unsigned_abs();
        eprintln!(
            "outside 08:00-22:00 Danish time: waiting until {} ({} s)",
            opens_at.strftime("%Y-%m-%d %H:%M %Z"),
            wait.as_secs()
        );
        std::thread::sleep(wait);
    }

    // The sender must know the recipient is signed up (SF2250 §1.2.4).
    if !user::ask_register(&client, &authority.register_sysid, kind, value)? {
        bail!(
            "the {kind} is not signed up for NemSMS at authority {cvr} (Spoerg tilmelding); nothing was sent"
        );
    }
    let message = crate::register::wire::Sms {
        id: uuid::Uuid::new_v4().to_string(),
        kind,
        nummer: value,
        kanal_valg: sms::KANAL_VALG.into(),
        prioritet: sms::PRIORITET.into(),
        filformat: sms::FILFORMAT.into(),
        text,
    };
    let status = client
        .post(
            &crate::register::wire::sms_path(&afsender),
            crate::register::wire::sms_body(&message).into_bytes(),
        )
        .map_err(|e| anyhow::anyhow!("Afsend SMS: {e}"))?;
    eprintln!(
        "Afsend SMS to a {kind} from authority {cvr} (Afsendersystem {afsender}): HTTP {status}"
    );
    println!("{}", message.id);
    Ok(exit::OK)
}
