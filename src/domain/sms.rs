//! NemSMS's rules for an SMS (SF2250 §1.2.4 and EP_SP4): a text of at most
//! 160 characters, sent only between 08:00 and 22:00 Danish time, file
//! format always `TXT`, KanalValg `D` (Digital Post/NemSMS) and Prioritet
//! `D` (direct). Checked before anything leaves, and by the simulator.

/// Most characters in an SMS (`MeddelelseServicebeskedTekst`).
pub const MAX_CHARS: usize = 160;
/// KanalValg: Digital Post/NemSMS.
pub const KANAL_VALG: &str = "D";
/// Prioritet: direct.
pub const PRIORITET: &str = "D";
/// Filformat: always text.
pub const FILFORMAT: &str = "TXT";
/// First hour SMS may be sent (Danish time).
pub const OPENS: i8 = 8;
/// The hour from which no SMS may be sent (Danish time).
pub const CLOSES: i8 = 22;

/// Checks the text: not empty (after trimming), at most [`MAX_CHARS`]
/// characters, no control characters but line breaks.
pub fn check_text(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("the text is empty".into());
    }
    let n = text.chars().count();
    if n > MAX_CHARS {
        return Err(format!(
            "the text has {n} characters; an SMS has at most {MAX_CHARS}"
        ));
    }
    if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\n') {
        return Err(format!(
            "the text holds a control character (U+{:04X})",
            c as u32
        ));
    }
    Ok(())
}

/// `Ok` when an SMS may be sent at `local` (Danish civil time), else the
/// next moment it may.
pub fn window(local: jiff::civil::DateTime) -> Result<(), jiff::civil::DateTime> {
    let h = local.hour();
    if (OPENS..CLOSES).contains(&h) {
        return Ok(());
    }
    let day = if h < OPENS {
        local.date()
    } else {
        local.date().tomorrow().unwrap_or(local.date())
    };
    Err(day.at(OPENS, 0, 0, 0))
}

/// Checks the fixed fields of a send.
pub fn check_fields(kanal_valg: &str, prioritet: &str, filformat: &str) -> Result<(), String> {
    for (name, got, want) in [
        ("KanalValg", kanal_valg, KANAL_VALG),
        ("Prioritet", prioritet, PRIORITET),
        ("Filformat", filformat, FILFORMAT),
    ] {
        if got != want {
            return Err(format!("{name} must be {want}, not {got:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn texts_of_at_most_160_characters() {
        assert!(
            check_text(&"æ".repeat(160)).is_ok(),
            "characters, not bytes"
        );
        assert!(
            check_text(&"a".repeat(161))
                .unwrap_err()
                .contains("161 characters")
        );
        assert!(check_text("  ").is_err());
        assert!(check_text("hej\nmed dig").is_ok());
        assert!(check_text("bip\u{7}").unwrap_err().contains("U+0007"));
    }

    #[test]
    fn only_between_eight_and_ten_danish_time() {
        let d = date(2026, 12, 2);
        assert_eq!(window(d.at(8, 0, 0, 0)), Ok(()));
        assert_eq!(window(d.at(21, 59, 59, 0)), Ok(()));
        assert_eq!(window(d.at(7, 59, 59, 0)), Err(d.at(8, 0, 0, 0)));
        assert_eq!(
            window(d.at(22, 0, 0, 0)),
            Err(date(2026, 12, 3).at(8, 0, 0, 0))
        );
        assert_eq!(
            window(date(2026, 12, 31).at(23, 0, 0, 0)),
            Err(date(2027, 1, 1).at(8, 0, 0, 0))
        );
    }

    #[test]
    fn the_fixed_fields() {
        assert!(check_fields("D", "D", "TXT").is_ok());
        assert!(
            check_fields("P", "D", "TXT")
                .unwrap_err()
                .contains("KanalValg")
        );
        assert!(
            check_fields("D", "D", "PDF")
                .unwrap_err()
                .contains("Filformat")
        );
    }
}
