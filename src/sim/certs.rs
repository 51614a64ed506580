//! Test certificates made at run time (rcgen).
//!
//! `nemsms-diff simulate certs --out DIR` writes a complete set for the
//! simulators, tests, demos and benchmarks: a CA, a server certificate for
//! `localhost`/`127.0.0.1`, a client certificate signed by the CA (an
//! authority's FOCES stand-in), and a client certificate from another CA
//! (one the register must refuse), with that CA's certificate.

use std::path::Path;

use anyhow::Context;

/// Writes a test CA, server and client certificates into `dir`.
pub fn generate_test_certs(dir: &Path) -> anyhow::Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    crate::fsutil::create_dir_all(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |name: &str, text: &str| -> anyhow::Result<()> {
        crate::fsutil::write_atomic(&dir.join(name), text.as_bytes())
            .with_context(|| format!("cannot write {}", dir.join(name).display()))
    };
    let ca = |cn: &str| -> anyhow::Result<(String, Issuer<'static, KeyPair>)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key)?;
        Ok((cert.pem(), Issuer::new(params, key)))
    };
    let leaf = |names: Vec<String>,
                cn: &str,
                issuer: &Issuer<'static, KeyPair>|
     -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (ca_pem, ca_issuer) = ca("nemsms-diff test CA")?;
    write("ca.pem", &ca_pem)?;
    let (server, server_key) = leaf(
        vec!["localhost".into(), "127.0.0.1".into()],
        "localhost",
        &ca_issuer,
    )?;
    write("server.pem", &server)?;
    write("server-key.pem", &server_key)?;
    let (client, client_key) = leaf(vec![], "FOCES test client", &ca_issuer)?;
    write("client.pem", &client)?;
    write("client-key.pem", &client_key)?;
    let (other_ca, other_issuer) = ca("some other CA")?;
    write("other-ca.pem", &other_ca)?;
    let (other, other_key) = leaf(vec![], "unknown client", &other_issuer)?;
    write("other-client.pem", &other)?;
    write("other-client-key.pem", &other_key)?;
    Ok(())
}
