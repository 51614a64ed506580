//! Beskedfordeler messages around the envelope: reading an envelope's
//! filter fields, `StandardRetur` replies, `ModtagBeskedInput` /
//! `ModtagBeskedOutput` (push delivery) and the AliveBesked envelope.
//!
//! Pure: bytes in, values out. Documents are read with the one hardened reader, `domain::xml`
//! (no DOCTYPE, depth and text capped).

use uuid::Uuid;

use crate::domain::envelope::{KUVERT_NS, SAGDOK_NS};
use crate::domain::xml;

/// Beskedtype of AliveBesked (seed 004).
pub const ALIVE_BESKEDTYPE: Uuid = Uuid::from_u128(0xf7e8_4a06_c47e_42e8_a864_fb40_95d7_f520);
/// Namespace of `ModtagBeskedInput`/`ModtagBeskedOutput`.
pub const STS_NS: &str = "urn:oio:sts:1.0.0";
/// `StatusKode` of success.
pub const OK: u32 = 20;
/// `StatusKode` of an expired token.
pub const TOKEN_EXPIRED: u32 = 41;
const MAX_DEPTH: usize = 32;

/// What the filter and the publisher need from an envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvelopeInfo {
    pub besked_id: Option<String>,
    pub beskedtype: Option<String>,
    pub objekt_ids: Vec<String>,
    /// `ObjektRegistrering/ObjektAnsvarligMyndighed` (`urn:oio:cvr-nr:…`).
    pub objekt_ansvarlig_myndighed: Option<String>,
    pub has_leveranceinformation: bool,
    pub has_beskeddata: bool,
}

impl EnvelopeInfo {
    /// Checks the fields Beskedfordeler requires; `Err` names the first missing one.
    pub fn validate(&self) -> Result<(), String> {
        let uuid = |v: &Option<String>, name: &str| match v {
            Some(s) if Uuid::parse_str(s).is_ok() => Ok(()),
            Some(_) => Err(format!("{name} is not a UUID")),
            None => Err(format!("{name} is missing")),
        };
        uuid(&self.besked_id, "BeskedId")?;
        uuid(&self.beskedtype, "Beskedtype")?;
        if !self.has_leveranceinformation {
            return Err("Leveranceinformation is missing".into());
        }
        Ok(())
    }
}

const LIMITS: xml::Limits = xml::Limits {
    max_depth: MAX_DEPTH,
    max_run: 1 << 20,
};

/// Reads the filter fields of a `Haendelsesbesked` (also inside a
/// `ModtagBeskedInput`).
pub fn inspect(bytes: &[u8]) -> Result<EnvelopeInfo, String> {
    let mut info = EnvelopeInfo::default();
    let mut seen_root = false;
    xml::walk(
        bytes,
        &["Haendelsesbesked", "ModtagBeskedInput"],
        LIMITS,
        |node| {
            match node {
                xml::Node::Start { path, .. } => match path.last().map(Vec::as_slice) {
                    Some(b"Haendelsesbesked") => seen_root = true,
                    Some(b"Leveranceinformation") => info.has_leveranceinformation = true,
                    Some(b"Beskeddata") => info.has_beskeddata = true,
                    _ => {}
                },
                xml::Node::End { path, text, .. } if !text.is_empty() => {
                    let n = path.len();
                    let at = |k: usize| n.checked_sub(k).map_or(&b""[..], |i| &path[i][..]);
                    match [at(1), at(2), at(3)] {
                        [b"UUIDIdentifikator", b"BeskedId", b"Haendelsesbesked"] => {
                            info.besked_id = Some(text.to_owned())
                        }
                        [b"UUIDIdentifikator", b"Beskedtype", b"Filtreringsdata"] => {
                            info.beskedtype = Some(text.to_owned())
                        }
                        [b"URNIdentifikator", b"ObjektId", b"RelateretObjekt"] => {
                            info.objekt_ids.push(text.to_owned())
                        }
                        [
                            b"URNIdentifikator",
                            b"ObjektAnsvarligMyndighed",
                            b"ObjektRegistrering",
                        ] => info.objekt_ansvarlig_myndighed = Some(text.to_owned()),
                        _ => {}
                    }
                }
                xml::Node::End { .. } => {}
            }
            Ok::<_, xml::XmlError>(())
        },
    )
    .map_err(|e| match e {
        xml::XmlError::WrongRoot { found, .. } => {
            format!("not a Haendelsesbesked: root element {found}")
        }
        e => e.to_string(),
    })?;
    if !seen_root {
        return Err("no Haendelsesbesked".into());
    }
    Ok(info)
}

/// A `StandardRetur` reply.
pub fn standard_retur(code: u32, text: &str) -> String {
    let text = quick_xml::escape::escape(text);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><sd:StandardRetur xmlns:sd=\"{SAGDOK_NS}\">\
         <sd:StatusKode>{code}</sd:StatusKode><sd:FejlbeskedTekst>{text}</sd:FejlbeskedTekst></sd:StandardRetur>"
    )
}

/// Reads `StatusKode` and `FejlbeskedTekst` of a `StandardRetur` (also
/// inside a `ModtagBeskedOutput`).
pub fn parse_standard_retur(bytes: &[u8]) -> Result<(u32, String), String> {
    match plain_standard_retur(bytes) {
        Some(answer) => Ok(answer),
        None => read_standard_retur(bytes),
    }
}

/// [`parse_standard_retur`] through the XML reader, whatever the form.
fn read_standard_retur(bytes: &[u8]) -> Result<(u32, String), String> {
    let (mut code, mut text) = (None, String::new());
    xml::walk(bytes, &[], LIMITS, |node| {
        if let xml::Node::End { path, text: t, .. } = node {
            match path.last().map(Vec::as_slice) {
                Some(b"StatusKode") if code.is_none() => code = t.parse().ok(),
                Some(b"FejlbeskedTekst") if text.is_empty() => text = t.to_owned(),
                _ => {}
            }
        }
        Ok::<_, xml::XmlError>(())
    })
    .map_err(|e| format!("malformed StandardRetur: {e}"))?;
    code.map(|c| (c, text))
        .ok_or_else(|| "StandardRetur without StatusKode".into())
}

/// A `StandardRetur` in the one plain form [`standard_retur`] writes
/// (any prefix): the XML declaration, the root with only its namespace
/// declaration, a StatusKode of digits and a FejlbeskedTekst of plain
/// text, nothing between the tags. The publisher reads one per message;
/// anything else (`None`) goes through the XML reader, which gives the
/// same answer for this form (tested).
fn plain_standard_retur(bytes: &[u8]) -> Option<(u32, String)> {
    fn take<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
        s.strip_prefix(prefix)
    }
    let s = take(bytes, b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><")?;
    let colon = s.iter().position(|&b| b == b':')?;
    let p = &s[..colon];
    if p.is_empty() || !p.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_') {
        return None;
    }
    let s = take(&s[colon..], b":StandardRetur xmlns:")?;
    let s = take(
        take(take(take(s, p)?, b"=\"")?, SAGDOK_NS.as_bytes())?,
        b"\"><",
    )?;
    let s = take(take(s, p)?, b":StatusKode>")?;
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 9 {
        return None;
    }
    let code: u32 = std::str::from_utf8(&s[..digits]).ok()?.parse().ok()?;
    let s = take(take(take(&s[digits..], b"</")?, p)?, b":StatusKode><")?;
    let s = take(take(s, p)?, b":FejlbeskedTekst>")?;
    let end = s.iter().position(|&b| b == b'<')?;
    let text = &s[..end];
    // Printable ASCII and UTF-8 only: references, line ends and control
    // characters are the reader's business.
    if text
        .iter()
        .any(|&b| b == b'&' || b == b'>' || (b < 0x80 && !(b' '..=b'~').contains(&b)))
    {
        return None;
    }
    let s = take(take(take(&s[end..], b"</")?, p)?, b":FejlbeskedTekst></")?;
    let s = take(take(s, p)?, b":StandardRetur>")?;
    if !s.is_empty() {
        return None;
    }
    let text = std::str::from_utf8(text).ok()?.trim();
    Some((code, text.to_owned()))
}

/// Wraps an envelope in `ModtagBeskedInput` (push delivery).
pub fn modtag_besked_input(envelope: &[u8]) -> Vec<u8> {
    let body = strip_declaration(envelope);
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><sts:ModtagBeskedInput xmlns:sts=\"{STS_NS}\">"
    )
    .into_bytes();
    out.extend_from_slice(body);
    out.extend_from_slice(b"</sts:ModtagBeskedInput>");
    out
}

/// The `Haendelsesbesked` inside a `ModtagBeskedInput`, as its own document.
pub fn unwrap_modtag_besked_input(xml: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(xml).map_err(|_| "not UTF-8".to_owned())?;
    let start = text
        .find("<sts:ModtagBeskedInput")
        .ok_or("not a ModtagBeskedInput")?;
    let inner_start = start + text[start..].find('>').ok_or("not a ModtagBeskedInput")? + 1;
    let end = text
        .rfind("</sts:ModtagBeskedInput>")
        .ok_or("ModtagBeskedInput is not closed")?;
    if end < inner_start {
        return Err("ModtagBeskedInput is empty".into());
    }
    let mut out = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>".to_vec();
    out.extend_from_slice(text[inner_start..end].trim().as_bytes());
    Ok(out)
}

/// A `ModtagBeskedOutput` answer.
pub fn modtag_besked_output(code: u32, text: &str) -> String {
    let text = quick_xml::escape::escape(text);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><sts:ModtagBeskedOutput xmlns:sts=\"{STS_NS}\" xmlns:sd=\"{SAGDOK_NS}\">\
         <sd:StandardRetur><sd:StatusKode>{code}</sd:StatusKode><sd:FejlbeskedTekst>{text}</sd:FejlbeskedTekst></sd:StandardRetur>\
         </sts:ModtagBeskedOutput>"
    )
}

fn strip_declaration(xml: &[u8]) -> &[u8] {
    if xml.starts_with(b"<?xml")
        && let Some(end) = xml.windows(2).position(|w| w == b"?>")
    {
        return &xml[end + 2..];
    }
    xml
}

/// An AliveBesked: beskedtype [`ALIVE_BESKEDTYPE`], our system as the
/// responsible actor, the token's authority as `ObjektAnsvarligMyndighed`
/// (Beskedfordeler refuses a message whose authority is not the token's),
/// no business data.
pub fn alive_envelope(id: Uuid, aktoer: Uuid, authority_cvr: &str, created: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><b:Haendelsesbesked xmlns:b=\"{KUVERT_NS}\" xmlns:sd=\"{SAGDOK_NS}\">\
         <b:BeskedId><sd:UUIDIdentifikator>{id}</sd:UUIDIdentifikator></b:BeskedId><b:BeskedVersion>1.0</b:BeskedVersion>\
         <b:Beskedkuvert><b:Filtreringsdata><b:Beskedtype><sd:UUIDIdentifikator>{ALIVE_BESKEDTYPE}</sd:UUIDIdentifikator></b:Beskedtype>\
         <b:BeskedAnsvarligAktoer><sd:UUIDIdentifikator>{aktoer}</sd:UUIDIdentifikator></b:BeskedAnsvarligAktoer>\
         <b:ObjektRegistrering><b:ObjektAnsvarligMyndighed><sd:URNIdentifikator>urn:oio:cvr-nr:{authority_cvr}</sd:URNIdentifikator></b:ObjektAnsvarligMyndighed></b:ObjektRegistrering>\
         </b:Filtreringsdata>\
         <b:Leveranceinformation><b:Dannelsestidspunkt><sd:TidsstempelDatoTid>{created}</sd:TidsstempelDatoTid></b:Dannelsestidspunkt>\
         <b:TransaktionsId><sd:UUIDIdentifikator>{id}</sd:UUIDIdentifikator></b:TransaktionsId></b:Leveranceinformation>\
         </b:Beskedkuvert></b:Haendelsesbesked>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain form's shortcut answers what the XML reader answers,
    /// and leaves every other form to it.
    #[test]
    fn plain_standard_returs_read_as_the_xml_reader_reads_them() {
        let by_reader = |bytes: &[u8]| read_standard_retur(bytes).unwrap();
        let texts = [
            "",
            "token udloebet",
            " spaces around ",
            "æøå ÆØÅ",
            "a < b & c > d",
            "line\nbreak",
            "tab\there",
            "quote \" and ' apostrophe",
        ];
        let mut plain = 0;
        for code in [0, 20, 40, 41, 59, 999_999_999] {
            for text in texts {
                let doc = standard_retur(code, text);
                let fast = plain_standard_retur(doc.as_bytes());
                if let Some(answer) = &fast {
                    plain += 1;
                    assert_eq!(answer, &by_reader(doc.as_bytes()), "{doc}");
                }
                assert_eq!(
                    parse_standard_retur(doc.as_bytes()).unwrap(),
                    by_reader(doc.as_bytes()),
                    "{doc}"
                );
            }
        }
        // Four texts are plain; escaped ones (&lt; &quot; …) and control
        // characters are not.
        assert_eq!(plain, 6 * 4);
        // Other forms: another prefix, no declaration, whitespace between
        // tags, a default namespace, another namespace, an extra element.
        let ns = SAGDOK_NS;
        let other = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><x:StandardRetur xmlns:x=\"{ns}\"><x:StatusKode>41</x:StatusKode><x:FejlbeskedTekst>t</x:FejlbeskedTekst></x:StandardRetur>"
        );
        assert_eq!(
            plain_standard_retur(other.as_bytes()),
            Some((41, "t".into()))
        );
        for doc in [
            format!("<sd:StandardRetur xmlns:sd=\"{ns}\"><sd:StatusKode>20</sd:StatusKode><sd:FejlbeskedTekst/></sd:StandardRetur>"),
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><sd:StandardRetur xmlns:sd=\"{ns}\">\n  <sd:StatusKode>20</sd:StatusKode><sd:FejlbeskedTekst>x</sd:FejlbeskedTekst></sd:StandardRetur>"),
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><StandardRetur xmlns=\"{ns}\"><StatusKode>20</StatusKode><FejlbeskedTekst>x</FejlbeskedTekst></StandardRetur>"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><sd:StandardRetur xmlns:sd=\"urn:other\"><sd:StatusKode>20</sd:StatusKode><sd:FejlbeskedTekst>x</sd:FejlbeskedTekst></sd:StandardRetur>".to_owned(),
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><sd:StandardRetur xmlns:sd=\"{ns}\"><sd:StatusKode>20</sd:StatusKode><sd:FejlbeskedTekst>x</sd:FejlbeskedTekst><sd:X/></sd:StandardRetur>"),
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><sd:StandardRetur xmlns:sd=\"{ns}\"><sd:StatusKode>20</sd:StatusKode><sd:FejlbeskedTekst>x</sd:FejlbeskedTekst></sd:StandardRetur>trailing"),
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><sd:StandardRetur xmlns:sd=\"{ns}\"><sd:StatusKode>+20</sd:StatusKode><sd:FejlbeskedTekst>x</sd:FejlbeskedTekst></sd:StandardRetur>"),
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><sd:StandardRetur xmlns:sd=\"{ns}\"><sd:StatusKode>20</sd:StatusKode><sd:FejlbeskedTekst>x</sd:FejlbeskedTekst></sd:StandardRetur >"),
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><sd:StandardRetur xmlns:sd=\"{ns}\"><sd:StatusKode>20</sd:StatusKode><sd:FejlbeskedTekst>x</sd:FejlbeskedTekst></sd:StandardRetu>"),
        ] {
            assert_eq!(plain_standard_retur(doc.as_bytes()), None, "{doc}");
        }
        // A cut or broken plain form is refused by the reader, not read.
        let good = standard_retur(20, "");
        for cut in 1..good.len() {
            assert_eq!(plain_standard_retur(&good.as_bytes()[..cut]), None);
        }
    }

    #[test]
    fn inspects_envelopes_and_wrapped_envelopes() {
        let id = Uuid::from_u128(7);
        let env = alive_envelope(id, Uuid::from_u128(9), "29189846", "2026-11-24T01:00:00Z");
        let info = inspect(env.as_bytes()).unwrap();
        assert_eq!(info.besked_id.as_deref(), Some(id.to_string().as_str()));
        assert_eq!(
            info.beskedtype.as_deref(),
            Some(ALIVE_BESKEDTYPE.to_string().as_str())
        );
        assert!(!info.has_beskeddata, "AliveBesked carries no business data");
        assert_eq!(
            info.objekt_ansvarlig_myndighed.as_deref(),
            Some("urn:oio:cvr-nr:29189846")
        );
        info.validate().unwrap();
        let wrapped = modtag_besked_input(env.as_bytes());
        assert_eq!(inspect(&wrapped).unwrap(), info);
        assert_eq!(
            unwrap_modtag_besked_input(&wrapped).unwrap(),
            env.as_bytes()
        );
    }

    #[test]
    fn rejects_what_is_not_an_envelope() {
        assert!(inspect(b"<x/>").is_err());
        assert!(inspect(b"<b:Haendelsesbesked xmlns:b=\"u\"><b:BeskedId>").is_err());
        assert!(inspect(b"<!DOCTYPE a><a/>").is_err());
        let missing = inspect(b"<Haendelsesbesked><Beskedkuvert/></Haendelsesbesked>").unwrap();
        assert_eq!(missing.validate(), Err("BeskedId is missing".into()));
    }

    #[test]
    fn standard_retur_roundtrips() {
        assert_eq!(
            parse_standard_retur(standard_retur(41, "token <expired>").as_bytes()),
            Ok((41, "token <expired>".into()))
        );
        assert_eq!(
            parse_standard_retur(modtag_besked_output(20, "").as_bytes()),
            Ok((20, String::new()))
        );
        assert!(parse_standard_retur(b"<x/>").is_err());
    }
}
