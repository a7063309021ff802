//! TLS settings for one registry: the system's roots plus `--ca-cert` and
//! the certs.d conventions, a client certificate from certs.d, or no
//! verification at all for hosts named by `--insecure`.

use std::path::Path;
use std::sync::Arc;

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use super::options::RegistryOptions;
use crate::error::{Error, Result};

fn read_pem_certs(path: &Path, into: &mut Vec<Certificate<'static>>) -> Result<()> {
    let pem = std::fs::read(path).map_err(|e| Error::io("read certificate", path, e))?;
    let before = into.len();
    for item in ureq::tls::parse_pem(&pem) {
        if let Ok(PemItem::Certificate(c)) = item {
            into.push(c);
        }
    }
    if into.len() == before {
        return Err(Error::Usage(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(())
}

/// certs.d names a directory per `host:port` (or `host` for port 443).
fn certs_d_dirs<'a>(
    opts: &'a RegistryOptions,
    registry: &'a str,
) -> impl Iterator<Item = std::path::PathBuf> + 'a {
    opts.certs_dirs
        .iter()
        .map(move |d| d.join(registry))
        .filter(|d| d.is_dir())
}

pub fn config(opts: &RegistryOptions, registry: &str) -> Result<TlsConfig> {
    if RegistryOptions::names(&opts.insecure, registry) {
        return Ok(TlsConfig::builder().disable_verification(true).build());
    }
    let mut roots: Vec<Certificate<'static>> = Vec::new();
    let native = rustls_native_certs::load_native_certs();
    roots.extend(
        native
            .certs
            .into_iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned()),
    );
    for ca in &opts.ca_certs {
        read_pem_certs(ca, &mut roots)?;
    }
    let mut client_cert = None;
    for dir in certs_d_dirs(opts, registry) {
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io("read", &dir, e))?;
        for entry in entries.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|x| x == "crt") {
                read_pem_certs(&p, &mut roots)?;
            }
        }
        let (cert, key) = (dir.join("client.cert"), dir.join("client.key"));
        if cert.is_file() && key.is_file() {
            let mut chain = Vec::new();
            read_pem_certs(&cert, &mut chain)?;
            let key_pem = std::fs::read(&key).map_err(|e| Error::io("read", &key, e))?;
            let key = PrivateKey::from_pem(&key_pem)
                .map_err(|e| Error::Failed(format!("{}: {e}", key.display())))?;
            client_cert = Some(ClientCert::new_with_certs(&chain, key));
        }
    }
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .client_cert(client_cert)
        .build())
}
