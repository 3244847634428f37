//! PostgreSQL connection settings as libpq users expect them: the URL (or key=value string),
//! `sslmode` disable | prefer | require | verify-ca | verify-full and `sslrootcert` read from it,
//! TLS through rustls, the password from the URL, `PGPASSWORD` or `~/.pgpass`, and `PGHOST`,
//! `PGPORT`, `PGUSER`, `PGDATABASE` when no target is given. Passwords never leave this module
//! except to the server.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::{Host, SslMode as PgSslMode};
use tokio_postgres::{Client, Config, NoTls};

use crate::error::{pg_message, Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// A parsed target: the tokio-postgres config plus what tokio-postgres does not know.
#[derive(Clone)]
pub struct Target {
    pub config: Config,
    pub sslmode: SslMode,
    pub sslrootcert: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target({})", self.identity())
    }
}

/// Split `sslmode` and `sslrootcert` out of a URL's query or a key=value string.
fn take_ssl_params(s: &str) -> (String, Option<String>, Option<String>) {
    let (mut mode, mut root) = (None, None);
    if s.contains("://") {
        let Some((base, query)) = s.split_once('?') else {
            return (s.to_string(), None, None);
        };
        let mut kept = Vec::new();
        for kv in query.split('&') {
            match kv.split_once('=') {
                Some(("sslmode", v)) => mode = Some(v.to_string()),
                Some(("sslrootcert", v)) => root = Some(percent_decode(v)),
                _ => kept.push(kv),
            }
        }
        let rebuilt = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (rebuilt, mode, root)
    } else {
        let mut kept = Vec::new();
        for kv in s.split_whitespace() {
            match kv.split_once('=') {
                Some(("sslmode", v)) => mode = Some(v.trim_matches('\'').to_string()),
                Some(("sslrootcert", v)) => root = Some(v.trim_matches('\'').to_string()),
                _ => kept.push(kv),
            }
        }
        (kept.join(" "), mode, root)
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The target from `--target`/`DATABASE_URL`, or from the PG* variables when neither is given.
pub fn resolve(url: Option<&str>) -> Result<Target> {
    let (rest, mode, root) = match url {
        Some(u) => take_ssl_params(u),
        None => {
            if env("PGHOST").is_none() && env("PGDATABASE").is_none() && env("PGUSER").is_none() {
                return Err(Error::config(
                    "no target database: pass --target postgres://user@host:5432/db, or set \
                     DATABASE_URL, or PGHOST/PGPORT/PGUSER/PGDATABASE",
                ));
            }
            (String::new(), None, None)
        }
    };
    let mut config: Config = if rest.is_empty() {
        Config::new()
    } else {
        rest.parse().map_err(|e| {
            Error::config(format!(
                "the target is not a valid PostgreSQL URL ({e}); expected postgres://user@host:5432/db"
            ))
        })?
    };
    if config.get_hosts().is_empty() {
        config.host(env("PGHOST").as_deref().unwrap_or("localhost"));
    }
    if config.get_ports().is_empty() {
        let port = match env("PGPORT") {
            Some(p) => p
                .parse()
                .map_err(|_| Error::config(format!("PGPORT={p:?} is not a port number")))?,
            None => 5432,
        };
        config.port(port);
    }
    if config.get_user().is_none() {
        let user = env("PGUSER")
            .or_else(|| env("USER"))
            .unwrap_or_else(|| "postgres".into());
        config.user(&user);
    }
    if config.get_dbname().is_none() {
        if let Some(db) = env("PGDATABASE") {
            config.dbname(&db);
        }
    }
    if config.get_password().is_none() {
        if let Some(pw) = env("PGPASSWORD").or_else(|| pgpass(&config)) {
            config.password(pw);
        }
    }
    let sslmode = match mode.or_else(|| env("PGSSLMODE")).as_deref() {
        None | Some("prefer") => SslMode::Prefer,
        Some("disable") => SslMode::Disable,
        Some("allow") => SslMode::Prefer,
        Some("require") => SslMode::Require,
        Some("verify-ca") => SslMode::VerifyCa,
        Some("verify-full") => SslMode::VerifyFull,
        Some(o) => {
            return Err(Error::config(format!(
                "sslmode={o:?}: expected disable, prefer, require, verify-ca or verify-full"
            )))
        }
    };
    config.ssl_mode(match sslmode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        _ => PgSslMode::Require,
    });
    Ok(Target {
        config,
        sslmode,
        sslrootcert: root.or_else(|| env("PGSSLROOTCERT")),
    })
}

fn first_host(c: &Config) -> String {
    match c.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    }
}

/// A password from the pgpass file (`PGPASSFILE` or `~/.pgpass`): `host:port:db:user:password`,
/// `*` matching anything, `\:` and `\\` escaped.
fn pgpass(c: &Config) -> Option<String> {
    let path = env("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".pgpass")))?;
    let text = std::fs::read_to_string(path).ok()?;
    let host = first_host(c);
    let port = c.get_ports().first().copied().unwrap_or(5432).to_string();
    let user = c.get_user().unwrap_or("").to_string();
    let db = c
        .get_dbname()
        .map(str::to_string)
        .unwrap_or_else(|| user.clone());
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(ch) = chars.next() {
            match ch {
                '\\' => cur.extend(chars.next()),
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                _ => cur.push(ch),
            }
        }
        fields.push(cur);
        if fields.len() != 5 {
            continue;
        }
        let ok = |pat: &str, v: &str| pat == "*" || pat == v;
        let host_ok = ok(&fields[0], &host) || (fields[0] == "localhost" && host == "127.0.0.1");
        if host_ok && ok(&fields[1], &port) && ok(&fields[2], &db) && ok(&fields[3], &user) {
            return Some(fields[4].clone());
        }
    }
    None
}

impl Target {
    /// `postgres://user@host:port/db`: who and where, never the password.
    pub fn identity(&self) -> String {
        let c = &self.config;
        let user = c.get_user().unwrap_or("");
        format!(
            "postgres://{user}@{}:{}/{}",
            first_host(c),
            c.get_ports().first().copied().unwrap_or(5432),
            c.get_dbname().unwrap_or(user)
        )
    }

    fn tls_config(&self) -> Result<ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config(format!("TLS setup: {e}")))?;
        let verify = matches!(self.sslmode, SslMode::VerifyCa | SslMode::VerifyFull);
        if !verify {
            // libpq's prefer/require: encrypted, but the server's certificate is not checked.
            return Ok(builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth());
        }
        let mut roots = RootCertStore::empty();
        let file = match self.sslrootcert.as_deref() {
            Some("system") => None,
            Some(p) => Some(PathBuf::from(p)),
            // libpq's default, when present; otherwise the system's CAs.
            None => env("HOME")
                .map(|h| Path::new(&h).join(".postgresql/root.crt"))
                .filter(|p| p.exists()),
        };
        match file {
            None => {
                for c in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(c);
                }
            }
            Some(path) => {
                let bad = |e: &dyn std::fmt::Display| {
                    Error::config(format!("sslrootcert {}: {e}", path.display()))
                };
                for c in CertificateDer::pem_file_iter(&path).map_err(|e| bad(&e))? {
                    roots.add(c.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
                }
            }
        }
        if roots.is_empty() {
            return Err(Error::config(format!(
                "sslmode={} needs trusted CA certificates: set sslrootcert=/path/to/ca.pem in the URL",
                if self.sslmode == SslMode::VerifyCa { "verify-ca" } else { "verify-full" }
            )));
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| Error::config(format!("TLS setup: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = if self.sslmode == SslMode::VerifyCa {
            Arc::new(IgnoreHostName(webpki))
        } else {
            webpki
        };
        Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth())
    }

    /// Connect; the connection task runs in the background.
    pub async fn connect(&self) -> Result<Client> {
        let ctx = |e: tokio_postgres::Error| {
            let mut err = Error::from_pg("connect", e);
            if let Error::Sink { message, .. } = &mut err {
                *message = format!(
                    "{} ({}): {}",
                    message,
                    self.identity(),
                    tls_hint(message, self.sslmode)
                );
            }
            err
        };
        if self.sslmode == SslMode::Disable {
            let (client, conn) = self.config.connect(NoTls).await.map_err(ctx)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("postgres connection ended: {}", pg_message(&e));
                }
            });
            return Ok(client);
        }
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.tls_config()?);
        let (client, conn) = self.config.connect(tls).await.map_err(ctx)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("postgres connection ended: {}", pg_message(&e));
            }
        });
        Ok(client)
    }
}

fn tls_hint(message: &str, mode: SslMode) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("notvalidforname") || m.contains("not valid for name") {
        "the server's certificate does not name this host: connect by a name the certificate holds, or use sslmode=verify-ca"
    } else if m.contains("unknownissuer")
        || m.contains("unknown issuer")
        || m.contains("invalid peer certificate")
    {
        "the server's certificate is not signed by a trusted CA: check sslrootcert"
    } else if m.contains("server does not support tls") || m.contains("tls is not supported") {
        "the server does not offer TLS: enable ssl on the server, or use sslmode=prefer/disable"
    } else if mode == SslMode::Disable {
        "check host, port, user and password"
    } else {
        "check host, port, user, password and sslmode"
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_params_are_taken_out_of_urls_and_kv_strings() {
        let (u, m, r) = take_ssl_params("postgres://u:p@h:5433/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&application_name=x");
        assert_eq!(u, "postgres://u:p@h:5433/db?application_name=x");
        assert_eq!(m.as_deref(), Some("verify-full"));
        assert_eq!(r.as_deref(), Some("/tmp/ca.pem"));
        let (u, m, _) = take_ssl_params("host=h user=u sslmode=require");
        assert_eq!(
            (u.as_str(), m.as_deref()),
            ("host=h user=u", Some("require"))
        );
    }

    #[test]
    fn identity_has_no_password_and_modes_parse() {
        let t = resolve(Some(
            "postgres://me:secret@127.0.0.1:5433/db?sslmode=verify-ca",
        ))
        .expect("ok");
        assert_eq!(t.identity(), "postgres://me@127.0.0.1:5433/db");
        assert_eq!(t.sslmode, SslMode::VerifyCa);
        assert!(!format!("{t:?}").contains("secret"));
        let e = resolve(Some("postgres://h/db?sslmode=bogus"))
            .expect_err("bad mode")
            .to_string();
        assert!(e.contains("sslmode"), "{e}");
    }

    #[test]
    fn pgpass_lines_match_with_wildcards_and_escapes() {
        let dir = std::env::temp_dir().join(format!("ddb2pg-pgpass-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("pgpass");
        std::fs::write(
            &f,
            "# comment\nother:5432:*:me:nope\n127.0.0.1:*:db:me:pa\\:ss\n",
        )
        .expect("write");
        let mut c = Config::new();
        c.host("127.0.0.1").port(5433).user("me").dbname("db");
        // SAFETY: single-threaded use of the variable within this test.
        unsafe { std::env::set_var("PGPASSFILE", &f) };
        let pw = pgpass(&c);
        unsafe { std::env::remove_var("PGPASSFILE") };
        assert_eq!(pw.as_deref(), Some("pa:ss"));
    }
}
