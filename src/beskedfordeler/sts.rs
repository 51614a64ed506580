//! The token provider: SAML tokens for Beskedfordeler's `token` header.
//!
//! A static token (local brokers, tests), or a token from KOMBIT's STS
//! (Adgangsstyring) over mutual TLS, cached per (authority CVR, service
//! entity id) until `refresh_before` ahead of its expiry, and dropped when
//! Beskedfordeler answers 41 (token expired).
//!
//! The STS exchange is the project's **assumed** WS-Trust 1.3 form (the
//! real one is described in KOMBIT's STS documentation, not in the seeds):
//! `POST {url}` with a SOAP 1.2 `RequestSecurityToken` (Issue, SAML 2.0,
//! `AppliesTo` = the service entity id, a claim with the authority's CVR);
//! the answer is a `RequestSecurityTokenResponse` whose `Lifetime/Expires`
//! gives the expiry and whose `RequestedSecurityToken` holds the
//! `Assertion`, which becomes the header's value. Request and answer live
//! in this module only.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::secret::Secret;

/// Most bytes an STS answer may have.
const MAX_ANSWER: usize = 1 << 20;

/// Settings of the STS.
#[derive(Debug, Clone, PartialEq)]
pub struct StsConfig {
    pub url: String,
    pub ca_cert: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// The service entity id tokens are asked for (Beskedfordeler's).
    pub service_entity_id: String,
    /// Fetch a new token this long before the cached one expires.
    pub refresh_before: Duration,
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

/// Hands out tokens per authority, caching STS tokens.
pub struct Tokens {
    source: TokenSource,
    http: Option<reqwest::Client>,
    cache: HashMap<(u32, String), Cached>,
}

impl Tokens {
    pub fn new(source: &TokenSource) -> anyhow::Result<Tokens> {
        let http = match source {
            TokenSource::Static(_) => None,
            TokenSource::Sts(c) => {
                let mut pem = std::fs::read(&c.client_cert)
                    .with_context(|| format!("cannot read {}", c.client_cert.display()))?;
                pem.extend(crate::tls::read_key_file(&c.client_key)?);
                let ca = std::fs::read(&c.ca_cert)
                    .with_context(|| format!("cannot read {}", c.ca_cert.display()))?;
                Some(
                    reqwest::Client::builder()
                        .tls_backend_rustls()
                        .tls_certs_only(
                            reqwest::Certificate::from_pem_bundle(&ca)
                                .context("STS CA certificate")?,
                        )
                        .identity(
                            reqwest::Identity::from_pem(&pem).context("STS client certificate")?,
                        )
                        // Only the configured STS: no redirect is followed
                        // and nothing but https is spoken.
                        .redirect(reqwest::redirect::Policy::none())
                        .https_only(true)
                        .timeout(Duration::from_secs(30))
                        .build()
                        .context("cannot build the STS client")?,
                )
            }
        };
        Ok(Tokens {
            source: source.clone(),
            http,
            cache: HashMap::new(),
        })
    }

    /// The token to send for `authority`.
    pub async fn get(&mut self, authority: u32) -> anyhow::Result<String> {
        let cfg = match &self.source {
            TokenSource::Static(t) => return Ok(t.expose().to_owned()),
            TokenSource::Sts(c) => c.clone(),
        };
        let key = (authority, cfg.service_entity_id.clone());
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
            .header("Content-Type", "application/soap+xml; charset=utf-8")
            .body(request(&cfg.service_entity_id, &cvr))
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
        anyhow::ensure!(
            status.is_success(),
            "the STS answered HTTP {status} for authority {cvr}"
        );
        let (token, expires) =
            parse_response(&body).map_err(|e| anyhow::anyhow!("STS answer: {e}"))?;
        tracing::info!(authority_cvr = %cvr, expires = %expires, "new token from the STS");
        self.cache.insert(
            key,
            Cached {
                token: Secret::new(token.clone()),
                expires,
            },
        );
        Ok(token)
    }

    /// Forgets `authority`'s token (Beskedfordeler said it expired).
    pub fn invalidate(&mut self, authority: u32) {
        self.cache.retain(|(a, _), _| *a != authority);
    }
}

/// The `RequestSecurityToken` for a service and an authority.
pub fn request(service: &str, cvr: &str) -> String {
    let service = quick_xml::escape::escape(service);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body>\
<wst:RequestSecurityToken xmlns:wst=\"http://docs.oasis-open.org/ws-sx/ws-trust/200512\">\
<wst:TokenType>http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0</wst:TokenType>\
<wst:RequestType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue</wst:RequestType>\
<wsp:AppliesTo xmlns:wsp=\"http://www.w3.org/ns/ws-policy\"><wsa:EndpointReference xmlns:wsa=\"http://www.w3.org/2005/08/addressing\">\
<wsa:Address>{service}</wsa:Address></wsa:EndpointReference></wsp:AppliesTo>\
<wst:Claims Dialect=\"http://docs.oasis-open.org/wsfed/authorization/200706/authclaims\">\
<auth:ClaimType xmlns:auth=\"http://docs.oasis-open.org/wsfed/authorization/200706\" Uri=\"dk:gov:saml:attribute:CvrNumberIdentifier\">\
<auth:Value>{cvr}</auth:Value></auth:ClaimType></wst:Claims>\
</wst:RequestSecurityToken></s:Body></s:Envelope>"
    )
}

/// The texts of the first elements with the wanted local names, and the
/// raw bytes of the first `Assertion` element.
type Scanned = (Vec<Option<String>>, Option<Vec<u8>>);

fn scan(body: &[u8], wanted: &[&[u8]]) -> Result<Scanned, String> {
    let mut found: Vec<Option<String>> = vec![None; wanted.len()];
    let mut assertion: Option<(u64, Option<u64>)> = None;
    let mut assertion_depth = None;
    let limits = crate::domain::xml::Limits {
        max_depth: 64,
        max_run: MAX_ANSWER,
    };
    crate::domain::xml::walk(body, &[], limits, |node| {
        match node {
            crate::domain::xml::Node::Start { path, at } => {
                if path.last().is_some_and(|n| n == b"Assertion") && assertion.is_none() {
                    assertion = Some((at, None));
                    assertion_depth = Some(path.len());
                }
            }
            crate::domain::xml::Node::End { path, text, at } => {
                if let Some(i) = path
                    .last()
                    .and_then(|n| wanted.iter().position(|w| *w == n.as_slice()))
                    && found[i].is_none()
                {
                    found[i] = Some(text.to_owned());
                }
                if assertion_depth == Some(path.len()) {
                    if let Some(a) = assertion.as_mut() {
                        a.1 = Some(at);
                    }
                    assertion_depth = None;
                }
            }
        }
        Ok::<_, crate::domain::xml::XmlError>(())
    })
    .map_err(|e| e.to_string())?;
    let assertion = match assertion {
        Some((s, Some(e))) if e > s => Some(body[s as usize..e as usize].to_vec()),
        _ => None,
    };
    Ok((found, assertion))
}

/// The assertion (as text) and its expiry from a `RequestSecurityTokenResponse`.
pub fn parse_response(body: &[u8]) -> Result<(String, jiff::Timestamp), String> {
    let (found, assertion) = scan(body, &[b"Expires"])?;
    let expires = found[0]
        .as_deref()
        .ok_or("no Lifetime/Expires")?
        .parse::<jiff::Timestamp>()
        .map_err(|e| format!("Expires is not a timestamp: {e}"))?;
    let assertion = assertion.ok_or("no Assertion in RequestedSecurityToken")?;
    let token =
        String::from_utf8(assertion).map_err(|_| "the Assertion is not UTF-8".to_owned())?;
    Ok((token, expires))
}

/// The service and CVR of a `RequestSecurityToken` (simulator side).
pub fn parse_request(body: &[u8]) -> Result<(String, String), String> {
    let (found, _) = scan(body, &[b"Address", b"Value"])?;
    match (&found[0], &found[1]) {
        (Some(service), Some(cvr)) => Ok((service.clone(), cvr.clone())),
        _ => Err("RequestSecurityToken without AppliesTo address or CVR claim".into()),
    }
}

/// A `RequestSecurityTokenResponse` with a test assertion (simulator side).
pub fn response(service: &str, cvr: &str, expires: jiff::Timestamp) -> String {
    let id = uuid::Uuid::new_v4();
    let service = quick_xml::escape::escape(service);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body>\
<wst:RequestSecurityTokenResponseCollection xmlns:wst=\"http://docs.oasis-open.org/ws-sx/ws-trust/200512\">\
<wst:RequestSecurityTokenResponse><wst:Lifetime>\
<wsu:Expires xmlns:wsu=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd\">{expires}</wsu:Expires>\
</wst:Lifetime><wst:RequestedSecurityToken>\
<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_{id}\" Version=\"2.0\">\
<saml:Issuer>nemsms-diff STS simulator</saml:Issuer>\
<saml:Subject><saml:NameID>{cvr}</saml:NameID></saml:Subject>\
<saml:Conditions NotOnOrAfter=\"{expires}\"><saml:AudienceRestriction><saml:Audience>{service}</saml:Audience>\
</saml:AudienceRestriction></saml:Conditions></saml:Assertion>\
</wst:RequestedSecurityToken></wst:RequestSecurityTokenResponse>\
</wst:RequestSecurityTokenResponseCollection></s:Body></s:Envelope>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_response_roundtrip() {
        let (service, cvr) =
            parse_request(request("http://bfo.example/service", "29189846").as_bytes()).unwrap();
        assert_eq!(
            (service.as_str(), cvr.as_str()),
            ("http://bfo.example/service", "29189846")
        );
        let expires: jiff::Timestamp = "2026-11-24T10:00:00Z".parse().unwrap();
        let (token, got) = parse_response(response(&service, &cvr, expires).as_bytes()).unwrap();
        assert_eq!(got, expires);
        assert!(
            token.starts_with("<saml:Assertion") && token.ends_with("</saml:Assertion>"),
            "{token}"
        );
        assert!(token.contains("<saml:NameID>29189846</saml:NameID>"));
        assert!(parse_response(b"<x/>").is_err());
    }
}
