//! One `Haendelsesbesked` per change, valid against KOMBIT's `Beskedkuvert.xsd`.
//!
//! Pure: configuration, context and event in, bytes out. For speed the
//! envelope of each (key kind, change) is written once per batch with
//! quick-xml, with markers where the per-event values go; each event then
//! fills in its `BeskedId` and number. Every filled-in value is digits or a
//! UUID, so no escaping is ever needed there.
//!
//! `BeskedId` is a UUID v5 over (authority CVR, list date, key kind, key,
//! change): the same event always gets the same id, across reruns and
//! backfills. The business payload in `Beskeddata` uses the project's own
//! namespace [`DATA_NS`] (README, "Events").

use jiff::civil::Date;
use quick_xml::Writer;
use quick_xml::events::BytesText;
use uuid::Uuid;

pub use crate::domain::diff::Change;
use crate::domain::keys::{self, KeyKind};

/// ObjektType "Person" from KOMBIT's sample (not authoritative: configurable).
pub const OBJEKTTYPE_PERSON: &str = "ce7fcf97-a8a2-447a-8690-d38aa0f6e23c";
/// Sikkerhedsklassificering "Fortrolige personoplysninger" from KOMBIT's sample.
pub const FORTROLIGE_PERSONOPLYSNINGER: &str = "44f4108b-26d4-46de-a90f-35e35b55b8d8";

/// Envelope settings: the UUIDs every `Haendelsesbesked` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeConfig {
    /// Beskedtype "NemSMS tilmelding".
    pub beskedtype: Uuid,
    /// Our IT system, as BeskedAnsvarligAktoer.
    pub beskedansvarlig_aktoer: Uuid,
    /// Kildesystem (defaults to BeskedAnsvarligAktoer).
    pub kildesystem: Uuid,
    /// ObjektType of a citizen (CPR).
    pub objekttype_person: Uuid,
    /// ObjektType of a company (CVR).
    pub objekttype_virksomhed: Uuid,
    /// ObjektHandling of a sign-up.
    pub handling_tilmeldt: Uuid,
    /// ObjektHandling of a sign-off.
    pub handling_afmeldt: Uuid,
    /// Sikkerhedsklassificering.
    pub sikkerhedsklassificering: Uuid,
    /// RegistreringsAktoer: the system that registered the change
    /// (defaults to BeskedAnsvarligAktoer; KOMBIT's sample names
    /// Serviceplatformen).
    pub registrerings_aktoer: Uuid,
}

/// Namespace of the envelope.
pub const KUVERT_NS: &str = "urn:oio:besked:kuvert:1.0";
/// Namespace of `UUIDIdentifikator`, `URNIdentifikator`, `TidsstempelDatoTid`.
pub const SAGDOK_NS: &str = "urn:oio:sagdok:3.0.0";
/// Namespace of the project's business payload in `Beskeddata`.
pub const DATA_NS: &str = "urn:nemsms-diff:haendelse:1.0";

/// One change to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub kind: KeyKind,
    pub key: u32,
    pub change: Change,
}

/// The installation's secret key for event ids: without it, a `BeskedId`
/// cannot be traced back to the CPR number it was made from (a public
/// derivation could be reversed by trying every possible CPR number).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdKey(pub [u8; 32]);

impl std::fmt::Debug for IdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdKey(***)")
    }
}

/// What every envelope of one batch shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchContext {
    /// The authority's CVR.
    pub authority: u32,
    /// The list date.
    pub date: Date,
    /// When today's list was taken (Unix seconds), from the snapshot.
    pub taken_at: i64,
    /// The key event ids are derived with.
    pub id_key: IdKey,
}

/// The deterministic `BeskedId` of an event: HMAC-SHA256 under the
/// installation's [`IdKey`] of (authority, date, kind, number, change), as a
/// UUID version 8. The same on every rerun and backfill with the same key;
/// not reversible to the number without it.
pub fn besked_id(key: &IdKey, authority: u32, date: Date, event: &Event) -> Uuid {
    use hmac::Mac;
    let mut buf = [0u8; 10];
    let name = format!(
        "{}|{}|{}|{}|{}",
        keys::format(KeyKind::Cvr, authority),
        date,
        event.kind,
        String::from_utf8_lossy(keys::format_into(event.kind, event.key, &mut buf)),
        event.change.as_str()
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key.0).expect("any key length");
    mac.update(b"nemsms-diff BeskedId\0");
    mac.update(name.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The `ObjektRegistreringId` of the event whose `BeskedId` is `besked_id`:
/// deterministic like it, keyed like it, and distinct from it.
pub fn registrering_id(key: &IdKey, besked_id: &Uuid) -> Uuid {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key.0).expect("any key length");
    mac.update(b"nemsms-diff ObjektRegistreringId\0");
    mac.update(besked_id.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

const ID_MARK: &str = "@@BESKEDID@@";
const REG_MARK: &str = "@@REGISTRERINGID@@";
const KEY_MARK: &str = "@@NUMMER@@";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Id,
    RegId,
    Key,
}

#[derive(Debug, Clone)]
struct Template {
    segments: Vec<Vec<u8>>,
    slots: Vec<Slot>,
}

/// Renders the envelopes of one batch.
#[derive(Debug, Clone)]
pub struct Renderer {
    ctx: BatchContext,
    templates: [[Template; 2]; 2],
}

fn kind_index(kind: KeyKind) -> usize {
    match kind {
        KeyKind::Cpr => 0,
        KeyKind::Cvr => 1,
    }
}

fn change_index(change: Change) -> usize {
    match change {
        Change::SignedUp => 0,
        Change::SignedOff => 1,
    }
}

impl Renderer {
    /// Prepares the templates of one batch.
    pub fn new(cfg: &EnvelopeConfig, ctx: BatchContext) -> Renderer {
        let t = |kind, change| template(cfg, &ctx, kind, change);
        Renderer {
            ctx,
            templates: [
                [
                    t(KeyKind::Cpr, Change::SignedUp),
                    t(KeyKind::Cpr, Change::SignedOff),
                ],
                [
                    t(KeyKind::Cvr, Change::SignedUp),
                    t(KeyKind::Cvr, Change::SignedOff),
                ],
            ],
        }
    }

    /// Appends the envelope of `event` to `out`; returns its `BeskedId`.
    pub fn render(&self, event: &Event, out: &mut Vec<u8>) -> Uuid {
        let t = &self.templates[kind_index(event.kind)][change_index(event.change)];
        let uuid = besked_id(&self.ctx.id_key, self.ctx.authority, self.ctx.date, event);
        let mut id_buf = Uuid::encode_buffer();
        let id = uuid.hyphenated().encode_lower(&mut id_buf).as_bytes();
        let reg = registrering_id(&self.ctx.id_key, &uuid);
        let mut reg_buf = Uuid::encode_buffer();
        let reg = reg.hyphenated().encode_lower(&mut reg_buf).as_bytes();
        let mut key_buf = [0u8; 10];
        let key = keys::format_into(event.kind, event.key, &mut key_buf);
        out.extend_from_slice(&t.segments[0]);
        for (slot, segment) in t.slots.iter().zip(&t.segments[1..]) {
            out.extend_from_slice(match slot {
                Slot::Id => id,
                Slot::RegId => reg,
                Slot::Key => key,
            });
            out.extend_from_slice(segment);
        }
        uuid
    }

    /// The envelope of `event` as a string.
    pub fn render_string(&self, event: &Event) -> String {
        let mut out = Vec::with_capacity(2048);
        self.render(event, &mut out);
        String::from_utf8(out).expect("envelopes are UTF-8")
    }
}

fn template(cfg: &EnvelopeConfig, ctx: &BatchContext, kind: KeyKind, change: Change) -> Template {
    let xml = write_envelope(cfg, ctx, kind, change).expect("writing to a Vec cannot fail");
    let text = String::from_utf8(xml).expect("quick-xml writes UTF-8");
    let mut segments = Vec::new();
    let mut slots = Vec::new();
    let mut rest = text.as_str();
    loop {
        let next = [
            (ID_MARK, Slot::Id),
            (REG_MARK, Slot::RegId),
            (KEY_MARK, Slot::Key),
        ]
        .into_iter()
        .filter_map(|(mark, slot)| rest.find(mark).map(|at| (at, mark, slot)))
        .min_by_key(|&(at, _, _)| at);
        let Some((at, mark, slot)) = next else {
            segments.push(rest.as_bytes().to_vec());
            break;
        };
        segments.push(rest.as_bytes()[..at].to_vec());
        slots.push(slot);
        rest = &rest[at + mark.len()..];
    }
    Template { segments, slots }
}

fn timestamp(unix: i64) -> String {
    crate::domain::dates::utc_seconds(unix)
}

fn write_envelope(
    cfg: &EnvelopeConfig,
    ctx: &BatchContext,
    kind: KeyKind,
    change: Change,
) -> std::io::Result<Vec<u8>> {
    let authority_urn = format!(
        "urn:oio:cvr-nr:{}",
        keys::format(KeyKind::Cvr, ctx.authority)
    );
    let object_urn = match kind {
        KeyKind::Cpr => format!("urn:oio:cpr-nr:{KEY_MARK}"),
        KeyKind::Cvr => format!("urn:oio:cvr-nr:{KEY_MARK}"),
    };
    let object_type = match kind {
        KeyKind::Cpr => cfg.objekttype_person,
        KeyKind::Cvr => cfg.objekttype_virksomhed,
    };
    let handling = match change {
        Change::SignedUp => cfg.handling_tilmeldt,
        Change::SignedOff => cfg.handling_afmeldt,
    };
    let registered = format!("{}T00:00:00", ctx.date);
    let taken = timestamp(ctx.taken_at);

    let mut w = Writer::new(Vec::with_capacity(2048));
    w.write_event(quick_xml::events::Event::Decl(
        quick_xml::events::BytesDecl::new("1.0", Some("UTF-8"), None),
    ))?;
    let uuid = |w: &mut Writer<Vec<u8>>, name: &str, id: &str| -> std::io::Result<()> {
        w.create_element(name).write_inner_content(|w| {
            w.create_element("sd:UUIDIdentifikator")
                .write_text_content(BytesText::new(id))?;
            Ok(())
        })?;
        Ok(())
    };
    let urn = |w: &mut Writer<Vec<u8>>, name: &str, id: &str| -> std::io::Result<()> {
        w.create_element(name).write_inner_content(|w| {
            w.create_element("sd:URNIdentifikator")
                .write_text_content(BytesText::new(id))?;
            Ok(())
        })?;
        Ok(())
    };
    let when = |w: &mut Writer<Vec<u8>>, name: &str, at: &str| -> std::io::Result<()> {
        w.create_element(name).write_inner_content(|w| {
            w.create_element("sd:TidsstempelDatoTid")
                .write_text_content(BytesText::new(at))?;
            Ok(())
        })?;
        Ok(())
    };
    let text = |w: &mut Writer<Vec<u8>>, name: &str, value: &str| -> std::io::Result<()> {
        w.create_element(name)
            .write_text_content(BytesText::new(value))?;
        Ok(())
    };
    let s = |u: Uuid| u.hyphenated().to_string();

    w.create_element("b:Haendelsesbesked")
        .with_attribute(("xmlns:b", KUVERT_NS))
        .with_attribute(("xmlns:sd", SAGDOK_NS))
        .write_inner_content(|w| {
            uuid(w, "b:BeskedId", ID_MARK)?;
            text(w, "b:BeskedVersion", "1.0")?;
            w.create_element("b:Beskedkuvert")
                .write_inner_content(|w| {
                    w.create_element("b:Filtreringsdata")
                        .write_inner_content(|w| {
                            uuid(w, "b:Beskedtype", &s(cfg.beskedtype))?;
                            uuid(w, "b:BeskedAnsvarligAktoer", &s(cfg.beskedansvarlig_aktoer))?;
                            urn(w, "b:TilladtModtager", &authority_urn)?;
                            w.create_element("b:RelateretObjekt")
                                .write_inner_content(|w| {
                                    urn(w, "b:ObjektId", &object_urn)?;
                                    uuid(w, "b:ObjektType", &s(object_type))
                                })?;
                            w.create_element("b:ObjektRegistrering")
                                .write_inner_content(|w| {
                                    uuid(w, "b:ObjektRegistreringId", REG_MARK)?;
                                    uuid(w, "b:RegistreringsAktoer", &s(cfg.registrerings_aktoer))?;
                                    when(w, "b:Registreringstidspunkt", &registered)?;
                                    urn(w, "b:ObjektAnsvarligMyndighed", &authority_urn)?;
                                    urn(w, "b:ObjektId", &object_urn)?;
                                    uuid(w, "b:ObjektType", &s(object_type))?;
                                    uuid(w, "b:ObjektHandling", &s(handling))
                                })?;
                            Ok(())
                        })?;
                    w.create_element("b:Leveranceinformation")
                        .write_inner_content(|w| {
                            when(w, "b:Dannelsestidspunkt", &taken)?;
                            uuid(w, "b:TransaktionsId", ID_MARK)?;
                            uuid(w, "b:Kildesystem", &s(cfg.kildesystem))?;
                            uuid(
                                w,
                                "b:Sikkerhedsklassificering",
                                &s(cfg.sikkerhedsklassificering),
                            )
                        })?;
                    Ok(())
                })?;
            w.create_element("b:Beskeddata").write_inner_content(|w| {
                w.create_element("h:NemSMSTilmeldingHaendelse")
                    .with_attribute(("xmlns:h", DATA_NS))
                    .write_inner_content(|w| {
                        text(w, "h:Haendelse", change.as_str())?;
                        text(w, "h:Type", kind.as_str())?;
                        text(w, "h:Nummer", KEY_MARK)?;
                        text(w, "h:Myndighed", &keys::format(KeyKind::Cvr, ctx.authority))?;
                        text(w, "h:Listedato", &ctx.date.to_string())
                    })?;
                Ok(())
            })?;
            Ok(())
        })?;
    Ok(w.into_inner())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn config() -> EnvelopeConfig {
        let u = |s: &str| Uuid::parse_str(s).unwrap();
        EnvelopeConfig {
            beskedtype: u("11111111-1111-4111-8111-111111111111"),
            beskedansvarlig_aktoer: u("22222222-2222-4222-8222-222222222222"),
            kildesystem: u("22222222-2222-4222-8222-222222222222"),
            objekttype_person: u(OBJEKTTYPE_PERSON),
            objekttype_virksomhed: u("33333333-3333-4333-8333-333333333333"),
            handling_tilmeldt: u("44444444-4444-4444-8444-444444444444"),
            handling_afmeldt: u("55555555-5555-4555-8555-555555555555"),
            sikkerhedsklassificering: u(FORTROLIGE_PERSONOPLYSNINGER),
            registrerings_aktoer: u("22222222-2222-4222-8222-222222222222"),
        }
    }

    pub(crate) const KEY: IdKey = IdKey([7; 32]);

    fn ctx() -> BatchContext {
        BatchContext {
            authority: 29189846,
            date: jiff::civil::date(2026, 1, 2),
            taken_at: 1_767_322_800,
            id_key: KEY,
        }
    }

    #[test]
    fn renders_the_fields() {
        let r = Renderer::new(&config(), ctx());
        let ev = Event {
            kind: KeyKind::Cpr,
            key: 101901234,
            change: Change::SignedOff,
        };
        let xml = r.render_string(&ev);
        let id = besked_id(&KEY, 29189846, ctx().date, &ev).to_string();
        assert_eq!(
            xml.matches(&id).count(),
            2,
            "BeskedId and TransaktionsId: {xml}"
        );
        assert_eq!(xml.matches("urn:oio:cpr-nr:0101901234").count(), 2);
        let reg = registrering_id(&KEY, &Uuid::parse_str(&id).unwrap()).to_string();
        assert_ne!(reg, id);
        assert!(
            xml.contains(&format!(
                "<b:ObjektRegistreringId><sd:UUIDIdentifikator>{reg}</sd:UUIDIdentifikator></b:ObjektRegistreringId>"
            )),
            "{xml}"
        );
        assert!(xml.contains(
            "<b:RegistreringsAktoer><sd:UUIDIdentifikator>22222222-2222-4222-8222-222222222222</sd:UUIDIdentifikator></b:RegistreringsAktoer>"
        ));
        assert!(xml.contains("<h:Nummer>0101901234</h:Nummer>"));
        assert!(xml.contains("<h:Haendelse>afmeldt</h:Haendelse>"));
        assert!(xml.contains("urn:oio:cvr-nr:29189846"));
        assert!(
            xml.contains("55555555-5555-4555-8555-555555555555"),
            "afmeldt handling"
        );
        assert!(xml.contains("<sd:TidsstempelDatoTid>2026-01-02T00:00:00</sd:TidsstempelDatoTid>"));
        assert!(
            xml.contains("<sd:TidsstempelDatoTid>2026-01-02T03:00:00Z</sd:TidsstempelDatoTid>")
        );
        assert!(!xml.contains("@@"));
    }

    #[test]
    fn besked_id_is_stable_and_distinct() {
        let date = ctx().date;
        let ev = |kind, key, change| Event { kind, key, change };
        let a = besked_id(
            &KEY,
            29189846,
            date,
            &ev(KeyKind::Cpr, 101901234, Change::SignedUp),
        );
        assert_eq!(
            a,
            besked_id(
                &KEY,
                29189846,
                date,
                &ev(KeyKind::Cpr, 101901234, Change::SignedUp)
            )
        );
        assert_eq!(a.get_version_num(), 8);
        // Another installation's key: other ids for the same event.
        assert_ne!(
            a,
            besked_id(
                &IdKey([8; 32]),
                29189846,
                date,
                &ev(KeyKind::Cpr, 101901234, Change::SignedUp)
            )
        );
        for other in [
            besked_id(
                &KEY,
                29189846,
                date,
                &ev(KeyKind::Cpr, 101901234, Change::SignedOff),
            ),
            besked_id(
                &KEY,
                29189846,
                date.tomorrow().unwrap(),
                &ev(KeyKind::Cpr, 101901234, Change::SignedUp),
            ),
            besked_id(
                &KEY,
                13585628,
                date,
                &ev(KeyKind::Cpr, 101901234, Change::SignedUp),
            ),
            besked_id(
                &KEY,
                29189846,
                date,
                &ev(KeyKind::Cvr, 101901234, Change::SignedUp),
            ),
        ] {
            assert_ne!(a, other);
        }
    }
}
