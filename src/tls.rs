//! TLS material: PEM loading, and rustls client and server configs that
//! trust only the configured CA (the test certificates are made by
//! `sim::certs`).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read certificate {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not a PEM certificate file", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{}: no certificate in the file",
        path.display()
    );
    Ok(certs)
}

/// Reads a private key file, warning when others than its owner may read it.
pub fn read_key_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::os::unix::fs::PermissionsExt;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read key {}", path.display()))?;
    let mode = file
        .metadata()
        .with_context(|| format!("cannot read key {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "private key readable by others than its owner: chmod 600 it"
        );
    }
    let mut pem = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, 1 << 20), &mut pem)
        .with_context(|| format!("cannot read key {}", path.display()))?;
    Ok(pem)
}

/// Reads the private key of a PEM file.
pub fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = read_key_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            anyhow::anyhow!("{}: no private key in the file", path.display())
        }
        e => anyhow::anyhow!("{}: not a PEM key file: {e}", path.display()),
    })
}

/// The process-wide crypto provider, installed once (reqwest takes the
/// installed one): ring's, with its AES-128-GCM suites first.
///
/// Not aws-lc-rs (reqwest's own default): its random generator gathers CPU
/// jitter entropy once per process, about 50 ms of CPU on the first
/// handshake, on the critical path of every run. ring takes its seeds from
/// the kernel (getrandom). AES-128-GCM first, as Mozilla's recommended
/// configurations list it: 10 AES rounds a block instead of 14 for every
/// byte of a national list, on both ends.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<rustls::crypto::CryptoProvider>> =
        std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let mut p = rustls::crypto::ring::default_provider();
            p.cipher_suites.sort_by_key(|s| {
                use rustls::CipherSuite as C;
                !matches!(
                    s.suite(),
                    C::TLS13_AES_128_GCM_SHA256
                        | C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                        | C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
                )
            });
            let _ = rustls::crypto::CryptoProvider::install_default(p.clone());
            Arc::new(p)
        })
        .clone()
}

/// A client config that trusts `ca` alone (never the system's roots) and
/// shows `cert`/`key` as its identity.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots
            .add(c)
            .with_context(|| format!("{}: not a usable CA certificate", ca.display()))?;
    }
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
        .with_context(|| {
            format!(
                "client certificate {} and key {} do not match",
                cert.display(),
                key.display()
            )
        })
}

/// A server config; with `client_ca`, clients must present a certificate
/// signed by it.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> anyhow::Result<rustls::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in load_certs(ca)? {
                roots.add(c).context("client CA certificate")?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .context("client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .context("server certificate and key do not match")
}
