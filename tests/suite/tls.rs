//! TLS to PostgreSQL: sslmode and sslrootcert against a real server started with ssl=on and a CA
//! and server certificate generated here with openssl; client certificates against a server
//! whose pg_hba.conf requires them (clientcert=verify-full); the pgpass file against a server
//! that requires a password.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ddb2pg::pgconn::Env;

use crate::support::private_pg::PrivatePg;

fn openssl(dir: &Path, args: &[&str]) {
    let ok = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        ok.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

/// A CA, a server certificate for "localhost" signed by it, and an unrelated CA.
pub(crate) fn make_certs(dir: &Path) {
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ext");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=ddb2pg test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "other.key",
            "-out",
            "other.crt",
            "-days",
            "2",
            "-subj",
            "/CN=another CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    let ok = Command::new("chmod")
        .arg("600")
        .arg(dir.join("server.key"))
        .status()
        .expect("chmod");
    assert!(ok.success());
}

/// A client certificate for the user `postgres`, signed by the CA of `make_certs`.
fn make_client_cert(dir: &Path) {
    std::fs::write(
        dir.join("client-ext.cnf"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .expect("ext");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
            "-subj",
            "/CN=postgres",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "client.crt",
            "-days",
            "2",
            "-extfile",
            "client-ext.cnf",
        ],
    );
    chmod(&dir.join("client.key"), 0o600);
}

pub(crate) fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// An empty directory to serve as HOME (no ~/.postgresql, no ~/.pgpass).
pub(crate) fn fake_home(pg: &PrivatePg, name: &str) -> PathBuf {
    let home = pg.dir.join(name);
    std::fs::create_dir_all(home.join(".postgresql")).expect("home");
    home
}

fn env_with_home(home: &Path, more: &[(&str, String)]) -> Env {
    let mut pairs = vec![("HOME".to_string(), home.display().to_string())];
    pairs.extend(more.iter().map(|(k, v)| (k.to_string(), v.clone())));
    Env::from_pairs(pairs)
}

/// Replace the server's pg_hba.conf with `lines` and reload it.
pub(crate) async fn set_hba(pg: &PrivatePg, lines: &str) {
    let (client, conn) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
        .await
        .expect("connect to the private server");
    tokio::spawn(conn);
    client
        .batch_execute("ALTER USER postgres PASSWORD 'from-pgpass'")
        .await
        .expect("set a password");
    std::fs::write(pg.dir.join("data/pg_hba.conf"), lines).expect("pg_hba.conf");
    client
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .expect("reload");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
}

async fn try_connect(url: &str) -> Result<i32, String> {
    try_connect_in(url, &Env::from_pairs([("HOME", "/nonexistent")])).await
}

async fn try_connect_in(url: &str, env: &Env) -> Result<i32, String> {
    let target = ddb2pg::pgconn::resolve_in(Some(url), env).map_err(|e| e.to_string())?;
    let client = target.connect().await.map_err(|e| e.to_string())?;
    let row = client
        .query_one("SELECT 1", &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_against_a_real_server() {
    let pg = PrivatePg::start_with(|dir| {
        make_certs(dir);
        format!(
            "-c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key",
            dir.display()
        )
    });
    let ca = pg.dir.join("ca.crt");
    let other = pg.dir.join("other.crt");
    let by_name = format!("postgres://postgres@localhost:{}/postgres", pg.port);
    let by_ip = format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port);

    // verify-full with the right CA and the name the certificate holds.
    let ok = try_connect(&format!(
        "{by_name}?sslmode=verify-full&sslrootcert={}",
        ca.display()
    ))
    .await;
    assert_eq!(ok, Ok(1));
    // require: encrypted, certificate not checked.
    assert_eq!(
        try_connect(&format!("{by_ip}?sslmode=require")).await,
        Ok(1)
    );
    // verify-ca: chain checked, host name not.
    assert_eq!(
        try_connect(&format!(
            "{by_ip}?sslmode=verify-ca&sslrootcert={}",
            ca.display()
        ))
        .await,
        Ok(1)
    );

    // A wrong host name fails verify-full clearly.
    let e = try_connect(&format!(
        "{by_ip}?sslmode=verify-full&sslrootcert={}",
        ca.display()
    ))
    .await
    .expect_err("wrong host name");
    assert!(e.contains("does not name this host"), "{e}");
    // A wrong CA fails clearly.
    let e = try_connect(&format!(
        "{by_name}?sslmode=verify-full&sslrootcert={}",
        other.display()
    ))
    .await
    .expect_err("wrong CA");
    assert!(e.contains("not signed by a trusted CA"), "{e}");
    // A missing CA file is named.
    let e = try_connect(&format!(
        "{by_name}?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"
    ))
    .await
    .expect_err("missing file");
    assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    // verify-ca and verify-full without any root certificate are refused, as libpq does,
    // instead of trusting every public CA.
    let home = fake_home(&pg, "home-without-root");
    let env = env_with_home(&home, &[]);
    for mode in ["verify-ca", "verify-full"] {
        let e = try_connect_in(&format!("{by_name}?sslmode={mode}"), &env)
            .await
            .expect_err("no root certificate");
        assert!(
            e.contains("root certificate file") && e.contains("does not exist"),
            "{e}"
        );
    }
    let e = try_connect_in(
        &format!("{by_name}?sslmode=verify-ca&sslrootcert=system"),
        &env,
    )
    .await
    .expect_err("system roots need verify-full");
    assert!(e.contains("sslrootcert=system"), "{e}");
    // ~/.postgresql/root.crt is the default root certificate.
    std::fs::copy(&ca, home.join(".postgresql/root.crt")).expect("root.crt");
    assert_eq!(
        try_connect_in(&format!("{by_ip}?sslmode=verify-ca"), &env).await,
        Ok(1)
    );
    assert_eq!(
        try_connect_in(&format!("{by_name}?sslmode=verify-full"), &env).await,
        Ok(1)
    );
    // hostaddr without host: the certificate is checked against the address (it names only
    // localhost), not against "localhost".
    let e = try_connect(&format!(
        "hostaddr=127.0.0.1 port={} user=postgres sslmode=verify-full sslrootcert='{}'",
        pg.port,
        ca.display()
    ))
    .await
    .expect_err("the certificate does not name 127.0.0.1");
    assert!(
        e.contains("does not name this host") && e.contains("@127.0.0.1:"),
        "{e}"
    );
    assert_eq!(
        try_connect(&format!(
            "host=localhost hostaddr=127.0.0.1 port={} user=postgres sslmode=verify-full sslrootcert='{}'",
            pg.port,
            ca.display()
        ))
        .await,
        Ok(1)
    );
    // A percent sign before a non-ASCII character is refused, not a panic.
    let e = try_connect(&format!(
        "{by_name}?sslmode=verify-full&sslrootcert=/x/%aé.pem"
    ))
    .await
    .expect_err("bad percent-encoding");
    assert!(e.contains("percent-encoding"), "{e}");
    // Passwords never show in what we print about a target.
    let t = ddb2pg::pgconn::resolve(Some(&format!(
        "postgres://postgres:hunter2@localhost:{}/postgres",
        pg.port
    )))
    .expect("resolve");
    assert!(!t.identity().contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_against_a_server_without_tls_fails_clearly() {
    let pg = PrivatePg::start();
    let e = try_connect(&format!("{}?sslmode=require", pg.url))
        .await
        .expect_err("no TLS");
    assert!(e.contains("does not offer TLS"), "{e}");
    // libpq's key = value syntax allows blanks around '=' and quotes: still require.
    for kv in [
        "sslmode = require",
        "sslmode= 'require'",
        "sslmode =require",
    ] {
        let e = try_connect(&format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres {kv}",
            pg.port
        ))
        .await
        .expect_err("no TLS: never plaintext");
        assert!(e.contains("does not offer TLS"), "{kv}: {e}");
    }
    assert_eq!(
        try_connect(&format!("{}?sslmode=prefer", pg.url)).await,
        Ok(1)
    );
    assert_eq!(
        try_connect(&format!("{}?sslmode=disable", pg.url)).await,
        Ok(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_against_a_server_that_requires_them() {
    let pg = PrivatePg::start_with(|dir| {
        make_certs(dir);
        make_client_cert(dir);
        format!(
            "-c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key -c ssl_ca_file={0}/ca.crt",
            dir.display()
        )
    });
    set_hba(
        &pg,
        "local all all trust\nhostssl all all 127.0.0.1/32 trust clientcert=verify-full\n\
         hostnossl all all 127.0.0.1/32 scram-sha-256\n",
    )
    .await;
    let (cert, key) = (pg.dir.join("client.crt"), pg.dir.join("client.key"));
    let base = format!("postgres://postgres@localhost:{}/postgres", pg.port);
    let home = fake_home(&pg, "home-client");
    let env = env_with_home(&home, &[]);

    // No client certificate: the server refuses, and the message says what to set.
    let e = try_connect_in(&format!("{base}?sslmode=require"), &env)
        .await
        .expect_err("no client certificate");
    assert!(e.contains("sslcert"), "{e}");
    // sslcert/sslkey in the target (URI or key = value), with verify-full on top.
    let q = format!("sslcert={}&sslkey={}", cert.display(), key.display());
    assert_eq!(
        try_connect_in(&format!("{base}?sslmode=require&{q}"), &env).await,
        Ok(1)
    );
    let full = format!(
        "host=localhost port={} user=postgres sslmode=verify-full sslrootcert='{}' sslcert='{}' sslkey='{}'",
        pg.port,
        pg.dir.join("ca.crt").display(),
        cert.display(),
        key.display()
    );
    assert_eq!(try_connect_in(&full, &env).await, Ok(1));
    // PGSSLCERT / PGSSLKEY.
    let by_env = env_with_home(
        &home,
        &[
            ("PGSSLCERT", cert.display().to_string()),
            ("PGSSLKEY", key.display().to_string()),
        ],
    );
    assert_eq!(
        try_connect_in(&format!("{base}?sslmode=require"), &by_env).await,
        Ok(1)
    );
    // ~/.postgresql/postgresql.crt and .key, libpq's defaults.
    let (hc, hk) = (
        home.join(".postgresql/postgresql.crt"),
        home.join(".postgresql/postgresql.key"),
    );
    std::fs::copy(&cert, &hc).expect("crt");
    std::fs::copy(&key, &hk).expect("key");
    chmod(&hk, 0o600);
    assert_eq!(
        try_connect_in(&format!("{base}?sslmode=require"), &env).await,
        Ok(1)
    );
    // A key others can read is refused, as libpq refuses it.
    chmod(&hk, 0o644);
    let e = try_connect_in(&format!("{base}?sslmode=require"), &env)
        .await
        .expect_err("key readable by others");
    assert!(
        e.contains("group or world access") && e.contains("postgresql.key"),
        "{e}"
    );
    // sslmode=disable sends no certificate: the password rule of hostnossl applies.
    let e = try_connect_in(&format!("{base}?sslmode=disable"), &env)
        .await
        .expect_err("no password");
    assert!(e.contains("password"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgpass_is_used_only_when_private_and_matched_by_the_address() {
    let pg = PrivatePg::start();
    set_hba(
        &pg,
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
    )
    .await;
    let home = fake_home(&pg, "home-pgpass");
    let env = env_with_home(&home, &[]);
    let pgpass = home.join(".pgpass");
    std::fs::write(
        &pgpass,
        format!("127.0.0.1:{}:*:postgres:from-pgpass\n", pg.port),
    )
    .expect("pgpass");
    let by_ip = format!(
        "host=127.0.0.1 port={} user=postgres sslmode=disable",
        pg.port
    );
    let by_addr = format!(
        "hostaddr=127.0.0.1 port={} user=postgres sslmode=disable",
        pg.port
    );
    // Readable by others: ignored (with a warning), so the server asks in vain.
    chmod(&pgpass, 0o644);
    let e = try_connect_in(&by_ip, &env)
        .await
        .expect_err("pgpass ignored");
    assert!(e.contains("password"), "{e}");
    // 0600: used; with hostaddr alone the line for the address matches.
    chmod(&pgpass, 0o600);
    assert_eq!(try_connect_in(&by_ip, &env).await, Ok(1));
    assert_eq!(try_connect_in(&by_addr, &env).await, Ok(1));
    let t = ddb2pg::pgconn::resolve_in(Some(&by_addr), &env).expect("resolve");
    assert_eq!(
        t.identity(),
        format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port)
    );
}
