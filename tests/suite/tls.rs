//! TLS to PostgreSQL: sslmode and sslrootcert against a real server started with ssl=on and a CA
//! and server certificate generated here with openssl.

use std::path::Path;
use std::process::Command;

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
fn make_certs(dir: &Path) {
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

async fn try_connect(url: &str) -> Result<i32, String> {
    let target = ddb2pg::pgconn::resolve(Some(url)).map_err(|e| e.to_string())?;
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
    assert_eq!(
        try_connect(&format!("{}?sslmode=prefer", pg.url)).await,
        Ok(1)
    );
    assert_eq!(
        try_connect(&format!("{}?sslmode=disable", pg.url)).await,
        Ok(1)
    );
}
