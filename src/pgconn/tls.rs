//! TLS as libpq does it, over rustls: which root certificates `sslmode` and `sslrootcert`
//! trust (and when they are missing, the refusal libpq gives), the client certificate
//! (`sslcert`/`sslkey`, `PGSSLCERT`/`PGSSLKEY`, `~/.postgresql/postgresql.crt` and `.key`),
//! and the certificate verifiers of each mode.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::{Settings, SslMode};
use crate::error::{Error, Result};

/// Which certificates vouch for the server.
enum Roots {
    /// prefer/require without a root certificate file: the certificate is not checked.
    Unchecked,
    /// `sslrootcert=system`: the system's CAs (verify-full only).
    System,
    /// A PEM file of CA certificates.
    File(PathBuf),
}

/// `sslmode`, from the settings; `sslrootcert=system` makes verify-full the default and
/// refuses weaker modes, as libpq does.
pub(super) fn sslmode(s: &Settings) -> Result<SslMode> {
    let system = s.get("sslrootcert").as_deref() == Some("system");
    let mode = match s.get("sslmode").as_deref() {
        None if system => SslMode::VerifyFull,
        None | Some("prefer") => SslMode::Prefer,
        Some("disable") => SslMode::Disable,
        // allow (plaintext first, TLS if the server insists) is served as prefer.
        Some("allow") => SslMode::Prefer,
        Some("require") => SslMode::Require,
        Some("verify-ca") => SslMode::VerifyCa,
        Some("verify-full") => SslMode::VerifyFull,
        Some(o) => {
            return Err(Error::config(format!(
                "sslmode={o:?}: expected disable, allow, prefer, require, verify-ca or verify-full"
            )))
        }
    };
    if system && mode != SslMode::VerifyFull {
        return Err(Error::config(format!(
            "sslmode={} may not be used with sslrootcert=system: use sslmode=verify-full (the \
             system's CAs vouch for every public host name, so only a check of the name is safe)",
            mode.name()
        )));
    }
    Ok(mode)
}

/// The rustls configuration for `mode` (None for disable); every file is read now, so a
/// missing or unreadable one is refused before any connection.
pub(super) fn client_config(mode: SslMode, s: &Settings) -> Result<Option<Arc<ClientConfig>>> {
    if mode == SslMode::Disable {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("TLS setup: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match roots(mode, s)? {
        Roots::Unchecked => Arc::new(NoVerify(provider)),
        roots => {
            let store = load_roots(&roots)?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
                .build()
                .map_err(|e| Error::config(format!("TLS setup: {e}")))?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(IgnoreHostName(webpki))
            }
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match client_cert(s)? {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let (chain, key_der) = load_client_cert(&cert, &key)?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                Error::config(format!(
                    "sslcert {} and sslkey {}: not a usable pair (an X.509 v3 certificate and \
                     its own private key are needed): {e}",
                    cert.display(),
                    key.display()
                ))
            })?
        }
    };
    config.enable_sni = s.get("sslsni").as_deref() != Some("0");
    Ok(Some(Arc::new(config)))
}

fn home_file(s: &Settings, name: &str) -> Option<PathBuf> {
    s.env
        .get("HOME")
        .map(|h| Path::new(&h).join(".postgresql").join(name))
}

/// The roots `mode` trusts. libpq: `sslrootcert`, else `~/.postgresql/root.crt`; when that file
/// does not exist verify-ca and verify-full are refused, prefer and require go unchecked; when
/// it exists require checks the chain (as verify-ca).
fn roots(mode: SslMode, s: &Settings) -> Result<Roots> {
    let file = match s.get("sslrootcert") {
        Some(r) if r == "system" => return Ok(Roots::System),
        Some(r) => Some(PathBuf::from(r)),
        None => home_file(s, "root.crt"),
    };
    let verify = matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull);
    match file {
        Some(f) if f.exists() => Ok(if verify || mode == SslMode::Require {
            Roots::File(f)
        } else {
            Roots::Unchecked
        }),
        _ if !verify => Ok(Roots::Unchecked),
        f => Err(Error::config(format!(
            "root certificate file \"{}\" does not exist (sslmode={} checks the server's \
             certificate against it): set sslrootcert=/path/to/ca.pem, use the system's CAs with \
             sslrootcert=system and sslmode=verify-full, or use sslmode=require to skip the check",
            f.map_or_else(
                || "~/.postgresql/root.crt".into(),
                |f| f.display().to_string()
            ),
            mode.name()
        ))),
    }
}

fn load_roots(roots: &Roots) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::Unchecked => {}
        Roots::System => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = store.add(c);
            }
            if store.is_empty() {
                return Err(Error::config(
                    "sslrootcert=system: no CA certificates found on this system (install \
                     ca-certificates, or set sslrootcert=/path/to/ca.pem)",
                ));
            }
        }
        Roots::File(path) => {
            let bad = |e: &dyn std::fmt::Display| {
                Error::config(format!("sslrootcert {}: {e}", path.display()))
            };
            for c in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
                store.add(c.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
            if store.is_empty() {
                return Err(bad(&"no PEM certificate in the file"));
            }
        }
    }
    Ok(store)
}

/// The client certificate and key files, if any: `sslcert` (which must exist when given),
/// else `~/.postgresql/postgresql.crt` when present; the key from `sslkey`, else
/// `~/.postgresql/postgresql.key`.
fn client_cert(s: &Settings) -> Result<Option<(PathBuf, PathBuf)>> {
    let cert = match s.get("sslcert") {
        Some(c) => {
            let c = PathBuf::from(c);
            if !c.exists() {
                return Err(Error::config(format!(
                    "certificate file \"{}\" (sslcert) does not exist",
                    c.display()
                )));
            }
            c
        }
        None => match home_file(s, "postgresql.crt").filter(|c| c.exists()) {
            Some(c) => c,
            None => return Ok(None),
        },
    };
    let key = s
        .get("sslkey")
        .map(PathBuf::from)
        .or_else(|| home_file(s, "postgresql.key"))
        .filter(|k| k.exists());
    let Some(key) = key else {
        return Err(Error::config(format!(
            "certificate present ({}), but not private key file \"{}\": set sslkey=/path/to/key",
            cert.display(),
            s.get("sslkey")
                .unwrap_or_else(|| "~/.postgresql/postgresql.key".into())
        )));
    };
    check_key_permissions(&key)?;
    Ok(Some((cert, key)))
}

/// libpq's rule: a private key must not be readable by group or others (0600), or at most
/// group-readable (0640) when owned by root.
fn check_key_permissions(key: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(key).map_err(|e| Error::file(key, e))?;
    if !meta.is_file() {
        return Err(Error::config(format!(
            "private key file \"{}\" is not a regular file",
            key.display()
        )));
    }
    let forbidden = if meta.uid() == 0 { 0o037 } else { 0o077 };
    if meta.mode() & forbidden != 0 {
        return Err(Error::config(format!(
            "private key file \"{}\" has group or world access ({:o}): chmod 600 it (or 640 if \
             owned by root)",
            key.display(),
            meta.mode() & 0o777
        )));
    }
    Ok(())
}

fn load_client_cert(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let bad_cert =
        |e: &dyn std::fmt::Display| Error::config(format!("sslcert {}: {e}", cert.display()));
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad_cert(&e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad_cert(&e))?;
    if chain.is_empty() {
        return Err(bad_cert(&"no PEM certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        let text = std::fs::read_to_string(key).unwrap_or_default();
        let why = if text.contains("ENCRYPTED") {
            "the key is encrypted, which ddb2pg does not support (no sslpassword): decrypt it \
             with `openssl pkey -in KEY -out KEY.plain`"
                .to_string()
        } else {
            format!("no usable private key (PEM PKCS#8, PKCS#1 or SEC1 expected): {e}")
        };
        Error::config(format!("sslkey {}: {why}", key.display()))
    })?;
    Ok((chain, key_der))
}

/// prefer/require: accept any certificate (libpq does not verify in these modes).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// verify-ca: the chain must lead to a trusted CA; the host name is not checked.
#[derive(Debug)]
struct IgnoreHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreHostName {
    fn verify_server_cert(
        &self,
        end: &CertificateDer<'_>,
        inter: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end, inter, name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
