//! The gateway's certificates, as k3s makes them: a cluster CA made once
//! (ECDSA P-256), an administrator's client certificate it signs (CN
//! `kubus-admin`, O `system:masters`) made once, and a server certificate
//! made at every start (its names may change: host name, addresses,
//! `--api-san`). Keys are written 0600 and never leave the directory but
//! in the kubeconfig written for the administrator.
//!
//! The CA's issuer is rebuilt at each start from its saved key and the
//! same fixed parameters (name, key usages), so a certificate issued
//! later chains to the CA certificate issued first.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The CA's common name.
pub const CA_NAME: &str = "kubus-ca";
/// The administrator's user name (its certificate's CN).
pub const ADMIN_USER: &str = "kubus-admin";
/// The administrator's group (its certificate's O): Kubernetes' group
/// of cluster administrators.
pub const ADMIN_GROUP: &str = "system:masters";

/// What can go wrong making or reading the certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("making a certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("{path}: not a PEM {what}")]
    Pem { path: PathBuf, what: &'static str },
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
}

/// The PEM texts of the CA, the server's and the administrator's
/// certificates and keys.
#[derive(Clone)]
pub struct Pki {
    pub ca_cert: String,
    pub server_cert: String,
    pub server_key: String,
    pub admin_cert: String,
    pub admin_key: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn ca_params() -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

/// Writes `text` to `path` with mode `mode`, through a temporary file.
pub fn write_private(path: &Path, text: &str, mode: u32) -> Result<(), PkiError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(text.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// Reads the CA and administrator credentials from `dir` (making them
/// the first time) and issues a server certificate for `names` (DNS
/// names and IP addresses).
pub fn load_or_create(dir: &Path, names: &[String]) -> Result<Pki, PkiError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (ca_cert_path, ca_key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
    let (ca_cert, ca_key) = match (read(&ca_cert_path)?, read(&ca_key_path)?) {
        (Some(cert), Some(key)) => (cert, KeyPair::from_pem(&key)?),
        _ => {
            let key = KeyPair::generate()?;
            let cert = ca_params()?.self_signed(&key)?;
            write_private(&ca_key_path, &key.serialize_pem(), 0o600)?;
            write_private(&ca_cert_path, &cert.pem(), 0o644)?;
            (cert.pem(), key)
        }
    };
    let issuer = Issuer::new(ca_params()?, ca_key);

    let (admin_cert_path, admin_key_path) = (dir.join("admin.crt"), dir.join("admin.key"));
    let (admin_cert, admin_key) = match (read(&admin_cert_path)?, read(&admin_key_path)?) {
        (Some(cert), Some(key)) => (cert, key),
        _ => {
            let key = KeyPair::generate()?;
            let mut p = CertificateParams::new(Vec::<String>::new())?;
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, ADMIN_USER);
            dn.push(DnType::OrganizationName, ADMIN_GROUP);
            p.distinguished_name = dn;
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let cert = p.signed_by(&key, &issuer)?;
            write_private(&admin_key_path, &key.serialize_pem(), 0o600)?;
            write_private(&admin_cert_path, &cert.pem(), 0o644)?;
            (cert.pem(), key.serialize_pem())
        }
    };

    let server_key = KeyPair::generate()?;
    let mut p = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "kubus-apiserver");
    p.distinguished_name = dn;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = p.signed_by(&server_key, &issuer)?;
    write_private(&dir.join("server.key"), &server_key.serialize_pem(), 0o600)?;
    write_private(&dir.join("server.crt"), &server.pem(), 0o644)?;
    Ok(Pki {
        ca_cert,
        server_cert: server.pem(),
        server_key: server_key.serialize_pem(),
        admin_cert,
        admin_key,
    })
}

/// The names a server certificate carries by default: loopback, the
/// host's name, and the names a pod would use for the API.
pub fn default_names(host: &str, extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = [
        "localhost",
        "127.0.0.1",
        "::1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for n in std::iter::once(host.to_string()).chain(extra.iter().cloned()) {
        if !n.is_empty() && !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// The rustls server configuration: the server certificate, client
/// certificates checked against the CA but not required (the handler
/// refuses everything but `/version` and health checks without one),
/// HTTP/2 and HTTP/1.1 by ALPN.
pub fn server_config(pki: &Pki) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let tls = |e: &dyn std::fmt::Display| PkiError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca = CertificateDer::from_pem_slice(pki.ca_cert.as_bytes()).map_err(|e| tls(&e))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).map_err(|e| tls(&e))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| tls(&e))?;
    let chain =
        vec![CertificateDer::from_pem_slice(pki.server_cert.as_bytes()).map_err(|e| tls(&e))?];
    let key = PrivateKeyDer::from_pem_slice(pki.server_key.as_bytes()).map_err(|e| tls(&e))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls(&e))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The user a client certificate names, as Kubernetes reads one: the
/// subject's common name is the user, its organizations the groups (the
/// CA already checked the certificate; None if the subject has no name).
pub fn user_of(der: &[u8]) -> Option<kubus_api::rbac::UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|n| !n.is_empty())?
        .to_string();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    groups.push(kubus_api::rbac::AUTHENTICATED.to_string());
    Some(kubus_api::rbac::UserInfo { name, groups })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_certificate_names_a_master() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = load_or_create(dir.path(), &default_names("h", &[])).expect("pki");
        let der = CertificateDer::from_pem_slice(pki.admin_cert.as_bytes()).expect("pem");
        let user = user_of(der.as_ref()).expect("a user");
        assert_eq!(user.name, "kubus-admin");
        assert!(user.in_group(kubus_api::rbac::MASTERS));
    }

    #[test]
    fn the_ca_is_made_once_and_the_server_certificate_every_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = default_names("host-a", &["10.0.0.7".into()]);
        let a = load_or_create(dir.path(), &names).expect("first");
        let b = load_or_create(dir.path(), &names).expect("second");
        assert_eq!(a.ca_cert, b.ca_cert);
        assert_eq!(a.admin_cert, b.admin_cert);
        assert_ne!(a.server_cert, b.server_cert);
        server_config(&b).expect("a server config from a reloaded CA");
        use std::os::unix::fs::PermissionsExt as _;
        for key in ["ca.key", "admin.key", "server.key"] {
            let mode = std::fs::metadata(dir.path().join(key))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }
}
