//! The token provider: SAML tokens for Beskedfordeler's login and `token`
//! header.
//!
//! A static token (local brokers, tests), or a token from KOMBIT's STS
//! (Adgangsstyring) over mutual TLS, cached per (authority CVR, service
//! entity id) until `refresh_before` ahead of its expiry, and dropped when
//! Beskedfordeler answers 41 (token expired).
//!
//! The STS exchange is KOMBIT's REST/JSON form (public samples, see
//! DOMAIN.md): `POST` to the configured issue URL
//! (`…/runtime/api/rest/wstrust/v1/issue`) with `TokenType` (SAML 2.0),
//! `RequestType` (Issue), `KeyType` (PublicKey), the authority's CVR in
//! `AnvenderKontekst.Cvr` (the field's spelling is a setting: KOMBIT's Java
//! model writes `Anvenderkontekst`), `UseKey` (our client certificate, DER
//! in base64 on one line) and `AppliesTo.EndpointReference.Address` (the
//! service entity id: afsend to send, afhent to pull). The answer carries
//! `RequestedSecurityToken.Assertion` (base64 of the SAML assertion) and
//! `Lifetime` (`MM/dd/yyyy HH:mm:ss`, UTC); errors are JSON `{code,
//! message}`. The decoded assertion is what we send: the SASL EXTERNAL
//! response of the AMQP login and the `token` header.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;

use crate::secret::Secret;

/// Most bytes an STS answer may have.
const MAX_ANSWER: usize = 1 << 20;

/// `TokenType`: a SAML 2.0 assertion.
pub const TOKEN_TYPE: &str =
    "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0";
/// `RequestType`: issue.
pub const REQUEST_TYPE: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue";
/// `KeyType`: holder-of-key with our public key.
pub const KEY_TYPE: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/PublicKey";
/// The default spelling of the context field (the public Python client's).
pub const DEFAULT_CONTEXT_FIELD: &str = "AnvenderKontekst";
/// The `Lifetime` format of the answer (read as UTC).
pub const LIFETIME_FORMAT: &str = "%m/%d/%Y %H:%M:%S";

/// What a token is for: each is its own service entity id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Sending to Beskedfordeler (publish, AliveBeskedSend).
    Afsend,
    /// Pulling from a dueslag (AliveBeskedHent).
    Afhent,
}

/// Settings of the STS.
#[derive(Debug, Clone, PartialEq)]
pub struct StsConfig {
    /// The issue endpoint, e.g.
    /// `https://adgangsstyring.eksterntest-stoettesystemerne.dk/runtime/api/rest/wstrust/v1/issue`.
    pub url: String,
    pub ca_cert: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// Beskedfordeler's entity id for sending (`http://<host>/service/afsend/1`).
    pub afsend_entity_id: String,
    /// Beskedfordeler's entity id for pulling (`http://<host>/service/afhent/1`).
    pub afhent_entity_id: String,
    /// The JSON name of the context with the CVR (`AnvenderKontekst`).
    pub context_field: String,
    /// Fetch a new token this long before the cached one expires.
    pub refresh_before: Duration,
}

impl StsConfig {
    /// The entity id tokens for `service` are asked for.
    pub fn entity_id(&self, service: Service) -> &str {
        match service {
            Service::Afsend => &self.afsend_entity_id,
            Service::Afhent => &self.afhent_entity_id,
        }
    }
}

/// Where tokens come from.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenSource {
    Static(Secret),
    Sts(StsConfig),
}

/// A token and when it stops being valid.
#[derive(Debug, Clone)]
struct Cached {
    token: Secret,
    expires: jiff::Timestamp,
}

/// Hands out tokens per (authority, service), caching STS tokens.
pub struct Tokens {
    source: TokenSource,
    http: Option<reqwest::Client>,
    /// Our certificate as `UseKey` wants it: DER, base64, one line.
    use_key: String,
    cache: HashMap<(u32, String), Cached>,
}

impl Tokens {
    pub fn new(source: &TokenSource) -> anyhow::Result<Tokens> {
        let (http, use_key) = match source {
            TokenSource::Static(_) => (None, String::new()),
            TokenSource::Sts(c) => {
                let mut pem = std::fs::read(&c.client_cert)
                    .with_context(|| format!("cannot read {}", c.client_cert.display()))?;
                let certs = crate::tls::load_certs(&c.client_cert)?;
                let use_key = base64::engine::general_purpose::STANDARD.encode(&certs[0]);
                pem.extend(crate::tls::read_key_file(&c.client_key)?);
                let ca = std::fs::read(&c.ca_cert)
                    .with_context(|| format!("cannot read {}", c.ca_cert.display()))?;
                // reqwest takes the process-wide provider once one is installed.
                crate::tls::provider();
                let http = reqwest::Client::builder()
                    .tls_backend_rustls()
                    .tls_certs_only(
                        reqwest::Certificate::from_pem_bundle(&ca).context("STS CA certificate")?,
                    )
                    .identity(reqwest::Identity::from_pem(&pem).context("STS client certificate")?)
                    // Only the configured STS: no redirect is followed
                    // and nothing but https is spoken.
                    .redirect(reqwest::redirect::Policy::none())
                    .https_only(true)
                    .timeout(Duration::from_secs(30))
                    .build()
                    .context("cannot build the STS client")?;
                (Some(http), use_key)
            }
        };
        Ok(Tokens {
            source: source.clone(),
            http,
            use_key,
            cache: HashMap::new(),
        })
    }

    /// The token (the decoded assertion) to send for `authority`.
    pub async fn get(&mut self, authority: u32, service: Service) -> anyhow::Result<String> {
        let cfg = match &self.source {
            TokenSource::Static(t) => return Ok(t.expose().to_owned()),
            TokenSource::Sts(c) => c.clone(),
        };
        let entity_id = cfg.entity_id(service).to_owned();
        let key = (authority, entity_id.clone());
        let now = jiff::Timestamp::now();
        if let Some(c) = self.cache.get(&key)
            && now + jiff::SignedDuration::try_from(cfg.refresh_before).unwrap_or_default()
                < c.expires
        {
            return Ok(c.token.expose().to_owned());
        }
        let cvr = crate::domain::keys::format(crate::domain::keys::KeyKind::Cvr, authority);
        let http = self.http.as_ref().expect("STS client");
        let mut resp = http
            .post(&cfg.url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .body(request(&cfg.context_field, &cvr, &self.use_key, &entity_id).to_string())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.without_url()))
            .with_context(|| format!("cannot reach the STS at {}", cfg.url))?;
        let status = resp.status();
        anyhow::ensure!(
            !status.is_redirection(),
            "the STS answered a redirect (HTTP {status}) for authority {cvr}; redirects are never followed"
        );
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.without_url()))
            .context("cannot read the STS answer")?
        {
            anyhow::ensure!(
                body.len() + chunk.len() <= MAX_ANSWER,
                "the STS answer is larger than the limit of {MAX_ANSWER} bytes"
            );
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            anyhow::bail!(
                "the STS refused a token for authority {cvr} and {entity_id} (HTTP {status}): {}",
                error_text(&body)
            );
        }
        let (token, expires) =
            parse_response(&body).map_err(|e| anyhow::anyhow!("STS answer: {e}"))?;
        tracing::info!(authority_cvr = %cvr, service = %entity_id, expires = %expires, "new token from the STS");
        self.cache.insert(
            key,
            Cached {
                token: Secret::new(token.clone()),
                expires,
            },
        );
        Ok(token)
    }

    /// Forgets `authority`'s tokens (Beskedfordeler said one expired).
    pub fn invalidate(&mut self, authority: u32) {
        self.cache.retain(|(a, _), _| *a != authority);
    }
}

/// The issue request for an authority's CVR and a service entity id.
pub fn request(
    context_field: &str,
    cvr: &str,
    use_key: &str,
    entity_id: &str,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "TokenType": TOKEN_TYPE,
        "RequestType": REQUEST_TYPE,
        "KeyType": KEY_TYPE,
        "UseKey": use_key,
        "AppliesTo": {"EndpointReference": {"Address": entity_id}},
        "OnBehalfOf": null,
    });
    v[context_field] = serde_json::json!({ "Cvr": cvr });
    v
}

/// An issue request as the STS reads it (simulator side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest {
    pub cvr: String,
    pub use_key: String,
    pub entity_id: String,
}

/// Reads an issue request (either spelling of the context field), checking
/// the fixed fields.
pub fn parse_request(body: &[u8]) -> Result<IssueRequest, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not a JSON issue request: {e}"))?;
    let field = |name: &str| v.get(name).and_then(|x| x.as_str());
    for (name, want) in [
        ("TokenType", TOKEN_TYPE),
        ("RequestType", REQUEST_TYPE),
        ("KeyType", KEY_TYPE),
    ] {
        if field(name) != Some(want) {
            return Err(format!("{name} must be {want}"));
        }
    }
    let cvr = ["AnvenderKontekst", "Anvenderkontekst"]
        .iter()
        .find_map(|n| v.get(*n))
        .and_then(|c| c.get("Cvr"))
        .and_then(|c| c.as_str())
        .ok_or("AnvenderKontekst.Cvr is missing")?;
    let use_key = field("UseKey").ok_or("UseKey is missing")?;
    let entity_id = v
        .pointer("/AppliesTo/EndpointReference/Address")
        .and_then(|a| a.as_str())
        .ok_or("AppliesTo.EndpointReference.Address is missing")?;
    Ok(IssueRequest {
        cvr: cvr.to_owned(),
        use_key: use_key.to_owned(),
        entity_id: entity_id.to_owned(),
    })
}

/// The `Lifetime` text of an expiry.
pub fn lifetime(expires: jiff::Timestamp) -> String {
    expires.strftime(LIFETIME_FORMAT).to_string()
}

/// The decoded assertion and its expiry from an issue answer.
pub fn parse_response(body: &[u8]) -> Result<(String, jiff::Timestamp), String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let assertion = v
        .pointer("/RequestedSecurityToken/Assertion")
        .and_then(|a| a.as_str())
        .ok_or("no RequestedSecurityToken.Assertion")?;
    let assertion = base64::engine::general_purpose::STANDARD
        .decode(assertion.trim())
        .map_err(|e| format!("the Assertion is not base64: {e}"))?;
    let assertion =
        String::from_utf8(assertion).map_err(|_| "the Assertion is not UTF-8".to_owned())?;
    let life = v
        .get("Lifetime")
        .and_then(|l| l.as_str())
        .ok_or("no Lifetime")?;
    let dt = jiff::civil::DateTime::strptime(LIFETIME_FORMAT, life)
        .map_err(|e| format!("Lifetime {life:?} is not MM/dd/yyyy HH:mm:ss: {e}"))?;
    let expires = jiff::tz::TimeZone::UTC
        .to_timestamp(dt)
        .map_err(|e| format!("Lifetime {life:?}: {e}"))?;
    Ok((assertion, expires))
}

/// An issue answer for an assertion (simulator side).
pub fn response(assertion: &str, expires: jiff::Timestamp) -> serde_json::Value {
    serde_json::json!({
        "RequestedSecurityToken": {
            "Assertion": base64::engine::general_purpose::STANDARD.encode(assertion),
        },
        "TokenType": TOKEN_TYPE,
        "Lifetime": lifetime(expires),
    })
}

/// The message of a JSON error answer `{code, message}`, or a note that
/// there was none (the body is never echoed: it is not ours to log).
fn error_text(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .map(|v| {
            let code = v.get("code").map(|c| c.to_string()).unwrap_or_default();
            let msg = v
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("")
                .chars()
                .take(300)
                .collect::<String>();
            format!("{code} {}", crate::domain::keys::redact_cpr(&msg))
        })
        .unwrap_or_else(|| "no JSON error".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_response_roundtrip() {
        let req = request(
            DEFAULT_CONTEXT_FIELD,
            "29189846",
            "MIIB",
            "http://bfo.test/service/afsend/1",
        );
        let got = parse_request(req.to_string().as_bytes()).unwrap();
        assert_eq!(
            got,
            IssueRequest {
                cvr: "29189846".into(),
                use_key: "MIIB".into(),
                entity_id: "http://bfo.test/service/afsend/1".into()
            }
        );
        assert_eq!(req["OnBehalfOf"], serde_json::Value::Null);
        // KOMBIT's Java spelling is read too.
        let java = request("Anvenderkontekst", "29189846", "MIIB", "x");
        assert_eq!(
            parse_request(java.to_string().as_bytes()).unwrap().cvr,
            "29189846"
        );
        let mut wrong = req.clone();
        wrong["KeyType"] = "Bearer".into();
        assert!(
            parse_request(wrong.to_string().as_bytes())
                .unwrap_err()
                .contains("KeyType")
        );

        let expires: jiff::Timestamp = "2026-11-24T10:00:07Z".parse().unwrap();
        let answer = response("<saml:Assertion>x</saml:Assertion>", expires);
        assert_eq!(answer["Lifetime"], "11/24/2026 10:00:07");
        let (token, got) = parse_response(answer.to_string().as_bytes()).unwrap();
        assert_eq!(
            (token.as_str(), got),
            ("<saml:Assertion>x</saml:Assertion>", expires)
        );
        assert!(parse_response(b"{}").is_err());
        assert!(
            parse_response(
                br#"{"RequestedSecurityToken":{"Assertion":"eA=="},"Lifetime":"2026-11-24"}"#
            )
            .unwrap_err()
            .contains("Lifetime")
        );
    }

    #[test]
    fn error_answers_are_read_without_echoing_numbers() {
        assert_eq!(
            error_text(br#"{"code":401,"message":"no access for 0101901234"}"#),
            "401 no access for **********"
        );
        assert_eq!(error_text(b"<html>"), "no JSON error");
    }
}
