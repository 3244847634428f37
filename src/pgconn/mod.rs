//! PostgreSQL connection settings as libpq users expect them: the target is a libpq URI or
//! `key = value` string (parsed as libpq parses it, see `conninfo`), every keyword falls back to
//! its libpq environment variable (`PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD`,
//! `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY` ...), the password comes from the
//! target, `PGPASSWORD` or the pgpass file (`pgpass`), and TLS runs over rustls with libpq's
//! `sslmode` rules and client certificates (`tls`). Passwords never leave this module except
//! to the server; [`redact`] hides them in anything shown.

mod conninfo;
mod pgpass;
mod redact;
mod tls;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use rustls::ClientConfig;
use std::time::Duration;

use tokio_postgres::config::{
    ChannelBinding, Host, LoadBalanceHosts, SslMode as PgSslMode, SslNegotiation,
    TargetSessionAttrs,
};
use tokio_postgres::{Client, Config, NoTls};

pub use conninfo::{parse as parse_conninfo, percent_decode, Params};
pub use redact::redact;

use crate::error::{pg_message, Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The environment the settings fall back to: the process's, or given pairs (tests).
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: Option<HashMap<String, String>>,
}

impl Env {
    pub fn process() -> Env {
        Env { vars: None }
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Env {
        Env {
            vars: Some(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// A variable's value; empty counts as unset.
    pub fn get(&self, name: &str) -> Option<String> {
        match &self.vars {
            None => std::env::var(name).ok(),
            Some(m) => m.get(name).cloned(),
        }
        .filter(|v| !v.is_empty())
    }
}

/// A keyword's value: from the target, else from its libpq environment variable.
pub(crate) struct Settings<'a> {
    params: &'a Params,
    env: &'a Env,
}

impl Settings<'_> {
    fn get(&self, key: &str) -> Option<String> {
        if let Some(v) = conninfo::get(self.params, key) {
            // As libpq: a keyword given empty is given (no environment fallback); an empty
            // sslmode or sslrootcert is then refused where it is read, never a silent default.
            if !v.is_empty() || matches!(key, "sslmode" | "sslrootcert") {
                return Some(v.to_string());
            }
        }
        let var = conninfo::KEYWORDS
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, var)| *var)?;
        self.env.get(var)
    }
}

/// A parsed target: the tokio-postgres config plus the TLS configuration its sslmode needs.
#[derive(Clone)]
pub struct Target {
    pub config: Config,
    pub sslmode: SslMode,
    tls: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target({})", self.identity())
    }
}

/// The target from `--target`/`DATABASE_URL`, or from the PG* variables when neither is given.
pub fn resolve(url: Option<&str>) -> Result<Target> {
    resolve_in(url, &Env::process())
}

/// [`resolve`] against a given environment.
pub fn resolve_in(url: Option<&str>, env: &Env) -> Result<Target> {
    let params = match url {
        Some(u) => conninfo::parse(u)?,
        None => {
            if ["PGHOST", "PGHOSTADDR", "PGDATABASE", "PGUSER"]
                .iter()
                .all(|v| env.get(v).is_none())
            {
                return Err(Error::config(
                    "no target database: pass --target postgres://user@host:5432/db, or set \
                     DATABASE_URL, or PGHOST/PGPORT/PGUSER/PGDATABASE",
                ));
            }
            Params::new()
        }
    };
    let s = Settings {
        params: &params,
        env,
    };
    let mut config = Config::new();
    hosts_and_ports(&mut config, &s)?;
    let user = s
        .get("user")
        .or_else(|| env.get("USER"))
        .unwrap_or_else(|| "postgres".into());
    config.user(&user);
    if let Some(db) = s.get("dbname") {
        config.dbname(&db);
    }
    options(&mut config, &s)?;
    if let Some(pw) = s.get("password").or_else(|| pgpass::lookup(&config, &s)) {
        config.password(pw);
    }
    let sslmode = tls::sslmode(&s)?;
    config.ssl_mode(match sslmode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        _ => PgSslMode::Require,
    });
    Ok(Target {
        config,
        sslmode,
        tls: tls::client_config(sslmode, &s)?,
    })
}

/// `host` (names or socket directories), `hostaddr` (addresses) and `port`, each a
/// comma-separated list. `hostaddr` without `host` makes the address the host: the server's
/// certificate, the pgpass file and the displayed target then use it, as in libpq.
fn hosts_and_ports(config: &mut Config, s: &Settings) -> Result<()> {
    let list = |v: Option<String>| -> Vec<String> {
        v.map(|v| v.split(',').map(|h| h.trim().to_string()).collect())
            .unwrap_or_default()
    };
    let (hosts, addrs) = (list(s.get("host")), list(s.get("hostaddr")));
    let mut ips = Vec::new();
    for a in &addrs {
        ips.push(a.parse::<IpAddr>().map_err(|_| {
            Error::config(format!(
                "hostaddr {a:?} is not an IP address (use host= for names)"
            ))
        })?);
    }
    if !hosts.is_empty() && !ips.is_empty() && hosts.len() != ips.len() {
        return Err(Error::config(format!(
            "the target has {} host(s) but {} hostaddr(s): give one address per host",
            hosts.len(),
            ips.len()
        )));
    }
    let names = if hosts.is_empty() { &addrs } else { &hosts };
    for h in names {
        match h.as_str() {
            "" => config.host("localhost"),
            p if p.starts_with('/') => config.host_path(p),
            h => config.host(h),
        };
    }
    if names.is_empty() {
        config.host("localhost");
    }
    if !hosts.is_empty() {
        for ip in ips {
            config.hostaddr(ip);
        }
    }
    let ports = list(s.get("port"));
    if ports.len() > 1 && ports.len() != names.len().max(1) {
        return Err(Error::config(format!(
            "the target has {} port(s) for {} host(s): give one port, or one per host",
            ports.len(),
            names.len().max(1)
        )));
    }
    for p in ports
        .iter()
        .map(String::as_str)
        .chain(ports.is_empty().then_some(""))
    {
        config.port(match p {
            "" => 5432,
            p => p
                .parse()
                .map_err(|_| Error::config(format!("port {p:?} is not a port number (1-65535)")))?,
        });
    }
    Ok(())
}

fn number<T: std::str::FromStr>(key: &str, v: &str, what: &str) -> Result<T> {
    v.trim()
        .parse()
        .map_err(|_| Error::config(format!("{key}={v:?}: expected {what}")))
}

fn choice<T: Copy>(key: &str, v: &str, options: &[(&str, T)]) -> Result<T> {
    options
        .iter()
        .find(|(name, _)| *name == v)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            Error::config(format!("{key}={v:?}: expected {}", names.join(", ")))
        })
}

/// The other libpq keywords tokio-postgres supports; the rest are checked and refused when
/// they ask for what ddb2pg cannot do.
fn options(c: &mut Config, s: &Settings) -> Result<()> {
    if let Some(v) = s.get("options") {
        c.options(&v);
    }
    if let Some(v) = s
        .get("application_name")
        .or_else(|| s.get("fallback_application_name"))
    {
        c.application_name(&v);
    }
    if let Some(v) = s.get("connect_timeout") {
        let secs: i64 = number("connect_timeout", &v, "whole seconds")?;
        if secs > 0 {
            c.connect_timeout(Duration::from_secs(secs.max(2) as u64));
        }
    }
    if let Some(v) = s.get("keepalives") {
        c.keepalives(choice("keepalives", &v, &[("1", true), ("0", false)])?);
    }
    if let Some(v) = s.get("keepalives_idle") {
        c.keepalives_idle(Duration::from_secs(number(
            "keepalives_idle",
            &v,
            "whole seconds",
        )?));
    }
    if let Some(v) = s.get("keepalives_interval") {
        c.keepalives_interval(Duration::from_secs(number(
            "keepalives_interval",
            &v,
            "whole seconds",
        )?));
    }
    if let Some(v) = s.get("keepalives_count") {
        c.keepalives_retries(number("keepalives_count", &v, "a whole number")?);
    }
    if let Some(v) = s.get("tcp_user_timeout") {
        c.tcp_user_timeout(Duration::from_millis(number(
            "tcp_user_timeout",
            &v,
            "milliseconds",
        )?));
    }
    choices(c, s)
}

fn choices(c: &mut Config, s: &Settings) -> Result<()> {
    use TargetSessionAttrs as T;
    if let Some(v) = s.get("target_session_attrs") {
        let attrs = [
            ("any", T::Any),
            ("read-write", T::ReadWrite),
            ("read-only", T::ReadOnly),
        ];
        c.target_session_attrs(choice("target_session_attrs", &v, &attrs)?);
    }
    if let Some(v) = s.get("channel_binding") {
        let cb = [
            ("disable", ChannelBinding::Disable),
            ("prefer", ChannelBinding::Prefer),
            ("require", ChannelBinding::Require),
        ];
        c.channel_binding(choice("channel_binding", &v, &cb)?);
    }
    if let Some(v) = s.get("load_balance_hosts") {
        let lb = [
            ("disable", LoadBalanceHosts::Disable),
            ("random", LoadBalanceHosts::Random),
        ];
        c.load_balance_hosts(choice("load_balance_hosts", &v, &lb)?);
    }
    if let Some(v) = s.get("sslnegotiation") {
        let n = [
            ("postgres", SslNegotiation::Postgres),
            ("direct", SslNegotiation::Direct),
        ];
        c.ssl_negotiation(choice("sslnegotiation", &v, &n)?);
    }
    if let Some(v) = s.get("client_encoding") {
        if !["utf8", "utf-8", "unicode", "auto"].contains(&v.to_ascii_lowercase().as_str()) {
            return Err(Error::config(format!(
                "client_encoding={v:?}: ddb2pg always talks UTF8 to the server; remove it"
            )));
        }
    }
    if let Some(v) = s.get("gssencmode") {
        let g = [("disable", ()), ("prefer", ())];
        choice("gssencmode", &v, &g).map_err(|_| {
            Error::config(format!(
                "gssencmode={v:?}: ddb2pg has no GSSAPI encryption; use disable or prefer"
            ))
        })?;
    }
    for (key, opts) in [("sslcompression", ["0", "1"]), ("sslsni", ["0", "1"])] {
        if let Some(v) = s.get(key) {
            choice(key, &v, &opts.map(|o| (o, ())))?;
        }
    }
    Ok(())
}

fn first_host(c: &Config) -> String {
    match c.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    }
}

impl Target {
    /// `postgres://user@host:port/db`: who and where, never the password. Redacted like
    /// everything shown: a user, host or database name may hold words that look like one
    /// (`dbname='app password=x'`).
    pub fn identity(&self) -> String {
        let c = &self.config;
        let user = c.get_user().unwrap_or("");
        let host = first_host(c);
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        redact(&format!(
            "postgres://{user}@{host}:{}/{}",
            c.get_ports().first().copied().unwrap_or(5432),
            c.get_dbname().unwrap_or(user)
        ))
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
        let Some(tls) = &self.tls else {
            let (client, conn) = self.config.connect(NoTls).await.map_err(ctx)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("postgres connection ended: {}", pg_message(&e));
                }
            });
            return Ok(client);
        };
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(ClientConfig::clone(tls));
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
    } else if m.contains("client certificate") || m.contains("certificate authentication failed") {
        "the server wants a client certificate it trusts, issued to this user: set sslcert and \
         sslkey (or PGSSLCERT/PGSSLKEY, or ~/.postgresql/postgresql.crt and .key)"
    } else if mode == SslMode::Disable {
        "check host, port, user and password"
    } else {
        "check host, port, user, password and sslmode"
    }
}

#[cfg(test)]
mod tests;
