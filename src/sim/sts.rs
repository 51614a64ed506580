//! The STS simulator (KOMBIT's Adgangsstyring, REST/JSON form) and the
//! tokens it issues.
//!
//! `POST /runtime/api/rest/wstrust/v1/issue` over mutual TLS: it checks the
//! fixed fields, that `UseKey` is the certificate the client showed in the
//! TLS handshake, that the CVR is eight digits (and, with `--cvr`, one it
//! knows) and that `AppliesTo` is a known service entity id, and answers a
//! SAML 2.0 assertion (base64) with its `Lifetime`. Errors are JSON `{code,
//! message}` with HTTP 400/401, as the real one's.
//!
//! The assertion names the CVR (`dk:gov:saml:attribute:CvrNumberIdentifier`),
//! the audience (the entity id), `NotOnOrAfter` and the holder's
//! certificate, and is signed with HMAC-SHA256 under the simulator's key
//! file (the real STS signs with its certificate). [`verify`] is how the
//! Beskedfordeler emulator's front door and answerer check a token against
//! the STS simulator: same key file, signature, expiry, audience, CVR.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};

use crate::beskedfordeler::sts;

/// The issue endpoint's path.
pub const ISSUE_PATH: &str = "/runtime/api/rest/wstrust/v1/issue";
/// The attribute that carries the CVR.
const CVR_ATTRIBUTE: &str = "dk:gov:saml:attribute:CvrNumberIdentifier";
const SIGNATURE_START: &str = "<ds:Signature ";
const SIGNATURE_END: &str = "</ds:Signature>";

/// Options of the STS simulator.
#[derive(Debug, Clone)]
pub struct StsOptions {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Clients must show a certificate signed by this CA.
    pub client_ca: PathBuf,
    /// The signing key file (made on first use, mode 0600).
    pub signing_key: PathBuf,
    /// The service entity ids it issues tokens for.
    pub services: Vec<String>,
    /// The CVRs it knows (empty: any eight digits).
    pub cvrs: HashSet<String>,
    /// Lifetime of the tokens it issues.
    pub ttl: std::time::Duration,
    /// Append every issued token's (service, CVR) as a JSON line here.
    pub record: Option<PathBuf>,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub cvr: String,
    pub audience: String,
    pub expires: jiff::Timestamp,
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token")]
    Missing,
    #[error("not a token of the STS: {0}")]
    Invalid(String),
    #[error("the token expired at {0}")]
    Expired(jiff::Timestamp),
}

fn mac(key: &[u8; 32], text: &str) -> Hmac<sha2::Sha256> {
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("any key length");
    m.update(text.as_bytes());
    m
}

/// A signed assertion for `cvr` and `audience`, held by `holder` (DER).
pub fn issue(
    key: &[u8; 32],
    cvr: &str,
    audience: &str,
    holder: &[u8],
    expires: jiff::Timestamp,
) -> String {
    let now = jiff::Timestamp::now();
    let esc = |s: &str| quick_xml::escape::escape(s).into_owned();
    let unsigned = format!(
        "<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_{id}\" IssueInstant=\"{now}\" Version=\"2.0\">\
<saml:Issuer>https://sts.nemsms-diff.test</saml:Issuer>\
<saml:Subject><saml:NameID Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName\">CVR:{cvr}</saml:NameID>\
<saml:SubjectConfirmation Method=\"urn:oasis:names:tc:SAML:2.0:cm:holder-of-key\"><saml:SubjectConfirmationData>\
<ds:KeyInfo xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:X509Data><ds:X509Certificate>{holder}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>\
</saml:SubjectConfirmationData></saml:SubjectConfirmation></saml:Subject>\
<saml:Conditions NotBefore=\"{now}\" NotOnOrAfter=\"{expires}\"><saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction></saml:Conditions>\
<saml:AttributeStatement><saml:Attribute Name=\"{CVR_ATTRIBUTE}\"><saml:AttributeValue>{cvr}</saml:AttributeValue></saml:Attribute></saml:AttributeStatement>\
</saml:Assertion>",
        id = uuid::Uuid::new_v4(),
        cvr = esc(cvr),
        audience = esc(audience),
        holder = base64::engine::general_purpose::STANDARD.encode(holder),
    );
    let signature = base64::engine::general_purpose::STANDARD
        .encode(mac(key, &unsigned).finalize().into_bytes());
    let close = unsigned.len() - "</saml:Assertion>".len();
    format!(
        "{}{SIGNATURE_START}xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">\
<ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#hmac-sha256\"/>\
<ds:SignatureValue>{signature}</ds:SignatureValue>{SIGNATURE_END}</saml:Assertion>",
        &unsigned[..close]
    )
}

/// The text between `open` and `close` after `from`.
fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let len = text[start..].find(close)?;
    Some(&text[start..start + len])
}

/// Checks a token's signature and expiry; its claims.
pub fn verify(key: &[u8; 32], token: &str) -> Result<Claims, TokenError> {
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    let invalid = |why: &str| TokenError::Invalid(why.to_owned());
    let start = token
        .find(SIGNATURE_START)
        .ok_or_else(|| invalid("unsigned"))?;
    let end = token[start..]
        .find(SIGNATURE_END)
        .map(|e| start + e + SIGNATURE_END.len())
        .ok_or_else(|| invalid("unsigned"))?;
    let unsigned = format!("{}{}", &token[..start], &token[end..]);
    let value = between(
        &token[start..end],
        "<ds:SignatureValue>",
        "</ds:SignatureValue>",
    )
    .ok_or_else(|| invalid("no SignatureValue"))?;
    let value = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| invalid("SignatureValue is not base64"))?;
    mac(key, &unsigned)
        .verify_slice(&value)
        .map_err(|_| invalid("the signature does not verify"))?;
    let field = |open: &str, close: &str, name: &str| {
        between(&unsigned, open, close)
            .map(|s| quick_xml::escape::unescape(s).map_or(s.to_owned(), |c| c.into_owned()))
            .ok_or_else(|| TokenError::Invalid(format!("no {name}")))
    };
    let expires: jiff::Timestamp = field("NotOnOrAfter=\"", "\"", "NotOnOrAfter")?
        .parse()
        .map_err(|_| invalid("NotOnOrAfter is not a timestamp"))?;
    let claims = Claims {
        cvr: field(
            &format!("Name=\"{CVR_ATTRIBUTE}\"><saml:AttributeValue>"),
            "</saml:AttributeValue>",
            "CVR attribute",
        )?,
        audience: field("<saml:Audience>", "</saml:Audience>", "Audience")?,
        expires,
    };
    if jiff::Timestamp::now() >= expires {
        return Err(TokenError::Expired(expires));
    }
    Ok(claims)
}

/// The CVR a token names, without checking it (a token's owner, for
/// messages about a refused one).
pub fn cvr_of(token: &str) -> Option<String> {
    between(
        token,
        &format!("Name=\"{CVR_ATTRIBUTE}\"><saml:AttributeValue>"),
        "</saml:AttributeValue>",
    )
    .map(str::to_owned)
}

type Resp = crate::http::Resp;

fn json(status: StatusCode, value: serde_json::Value) -> Resp {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed())
        .expect("a valid response")
}

fn error(status: StatusCode, message: impl Into<String>) -> Resp {
    json(
        status,
        serde_json::json!({"code": status.as_u16(), "message": message.into()}),
    )
}

struct Sts {
    opts: StsOptions,
    key: [u8; 32],
    record: Mutex<Option<std::fs::File>>,
}

impl Sts {
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Resp, std::convert::Infallible> {
        if req.method() != Method::POST || req.uri().path() != ISSUE_PATH {
            return Ok(error(
                StatusCode::NOT_FOUND,
                format!("POST {ISSUE_PATH} is the only call"),
            ));
        }
        let peer = req
            .extensions()
            .get::<crate::http::PeerCertificate>()
            .cloned();
        let body = match http_body_util::Limited::new(req.into_body(), 1 << 20)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => return Ok(error(StatusCode::BAD_REQUEST, "unreadable body")),
        };
        Ok(self.issue(peer.as_ref(), &body))
    }

    fn issue(&self, peer: Option<&crate::http::PeerCertificate>, body: &[u8]) -> Resp {
        let Some(peer) = peer else {
            return error(StatusCode::UNAUTHORIZED, "no client certificate");
        };
        let req = match sts::parse_request(body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        };
        let shown = base64::engine::general_purpose::STANDARD.decode(&req.use_key);
        if shown.as_deref().ok() != Some(peer.0.as_slice()) {
            return error(
                StatusCode::BAD_REQUEST,
                "UseKey is not the certificate of the TLS connection",
            );
        }
        if req.cvr.len() != 8 || !req.cvr.bytes().all(|b| b.is_ascii_digit()) {
            return error(
                StatusCode::BAD_REQUEST,
                "AnvenderKontekst.Cvr is not a CVR number",
            );
        }
        if !self.opts.cvrs.is_empty() && !self.opts.cvrs.contains(&req.cvr) {
            return error(
                StatusCode::UNAUTHORIZED,
                format!("no agreement for CVR {}", req.cvr),
            );
        }
        if !self.opts.services.contains(&req.entity_id) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown service {}", req.entity_id),
            );
        }
        if let Some(file) = self.record.lock().expect("lock").as_mut() {
            crate::sim::record_line(
                file,
                &serde_json::json!({"service": req.entity_id, "cvr": req.cvr}),
            );
        }
        let expires = jiff::Timestamp::now()
            + jiff::SignedDuration::try_from(self.opts.ttl).unwrap_or_default();
        // Lifetime has whole seconds: the assertion's expiry is the same.
        let expires = jiff::Timestamp::from_second(expires.as_second()).unwrap_or(expires);
        let token = issue(&self.key, &req.cvr, &req.entity_id, &peer.0, expires);
        json(StatusCode::OK, sts::response(&token, expires))
    }
}

/// Runs the STS simulator until SIGTERM or SIGINT.
pub fn serve_sts(opts: StsOptions) -> anyhow::Result<()> {
    let tls = Arc::new(crate::tls::server_config(
        &opts.cert,
        &opts.key,
        Some(&opts.client_ca),
    )?);
    let key = crate::store::secret::id_key(&opts.signing_key)?.0;
    let record = Mutex::new(
        opts.record
            .as_deref()
            .map(crate::fsutil::open_private_append)
            .transpose()?,
    );
    let sim = Arc::new(Sts {
        opts: opts.clone(),
        key,
        record,
    });
    let runtime = crate::rt::runtime()?;
    runtime.block_on(crate::http::serve(
        "STS simulator",
        opts.listen,
        crate::http::Accept::lab(tls),
        move |req| sim.clone().handle(req),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_unchanged_unexpired_and_under_the_key() {
        let key = [7u8; 32];
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60);
        let t = issue(
            &key,
            "29189846",
            "http://bfo.test/service/afsend/1",
            b"cert",
            later,
        );
        let c = verify(&key, &t).unwrap();
        assert_eq!(c.cvr, "29189846");
        assert_eq!(c.audience, "http://bfo.test/service/afsend/1");
        assert_eq!(cvr_of(&t).as_deref(), Some("29189846"));
        assert!(matches!(
            verify(&[8u8; 32], &t),
            Err(TokenError::Invalid(_))
        ));
        let forged = t.replace("29189846", "12345674");
        assert!(matches!(verify(&key, &forged), Err(TokenError::Invalid(_))));
        assert_eq!(verify(&key, ""), Err(TokenError::Missing));
        let past = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1);
        let old = issue(&key, "29189846", "a", b"cert", past);
        assert!(matches!(verify(&key, &old), Err(TokenError::Expired(_))));
    }
}
