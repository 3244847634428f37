//! Resolving targets against a given environment: libpq's parsing, fallbacks and refusals.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;

/// A fresh directory to serve as HOME.
fn home(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ddb2pg-pgconn-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join(".postgresql")).expect("dir");
    dir
}

fn env_of(home: &Path, more: &[(&str, &str)]) -> Env {
    let mut pairs = vec![("HOME".to_string(), home.display().to_string())];
    pairs.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Env::from_pairs(pairs)
}

fn resolve_err(url: &str, env: &Env) -> String {
    resolve_in(Some(url), env).expect_err(url).to_string()
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn sslmode_with_blanks_around_the_equals_sign_is_kept() {
    let env = env_of(&home("blanks"), &[]);
    let t = resolve_in(Some("host=127.0.0.1 port=5433 sslmode = require"), &env).expect("ok");
    assert_eq!(t.sslmode, SslMode::Require);
    assert_eq!(t.identity(), "postgres://postgres@127.0.0.1:5433/postgres");
    let t = resolve_in(Some("host='db one' sslmode= 'disable' user = me"), &env).expect("ok");
    assert_eq!(t.sslmode, SslMode::Disable);
    assert_eq!(t.identity(), "postgres://me@db one:5432/me");
    // The environment fills in what the target leaves out, and only that.
    let env = env_of(
        &home("blanks"),
        &[("PGSSLMODE", "disable"), ("PGPORT", "6000")],
    );
    let t = resolve_in(Some("host=h"), &env).expect("ok");
    assert_eq!(
        (t.sslmode, t.config.get_ports()),
        (SslMode::Disable, &[6000][..])
    );
    let t = resolve_in(Some("postgres://h:7000/db?sslmode=require"), &env).expect("ok");
    assert_eq!(
        (t.sslmode, t.config.get_ports()),
        (SslMode::Require, &[7000][..])
    );
}

#[test]
fn invalid_values_are_refused_with_the_keyword() {
    let env = env_of(&home("invalid"), &[]);
    for (url, want) in [
        ("host=h sslmode=bogus", "sslmode=\"bogus\""),
        ("host=h port=abc", "port \"abc\""),
        ("host=h port=1,2", "port(s)"),
        ("host=h connect_timeout=soon", "connect_timeout"),
        (
            "host=h target_session_attrs=primary",
            "target_session_attrs",
        ),
        ("host=h hostaddr=db.example", "not an IP address"),
        ("host=h client_encoding=LATIN1", "UTF8"),
        ("host=h gssencmode=require", "GSSAPI"),
        ("host=h sslpassword=x", "does not support"),
        ("postgres://h/db?sslrootcert=/x/%aé.pem", "percent-encoding"),
        (
            "postgres://h/db?nonsense=1",
            "invalid connection option \"nonsense\"",
        ),
    ] {
        let e = resolve_err(url, &env);
        assert!(e.contains(want), "{url}: {e}");
    }
}

#[test]
fn verify_modes_without_a_root_certificate_are_refused() {
    let h = home("roots");
    let env = env_of(&h, &[]);
    for mode in ["verify-ca", "verify-full"] {
        let e = resolve_err(&format!("host=h sslmode={mode}"), &env);
        assert!(
            e.contains("root certificate file") && e.contains("does not exist"),
            "{e}"
        );
        assert!(e.contains(".postgresql/root.crt"), "{e}");
    }
    let e = resolve_err(
        "host=h sslmode=verify-ca sslrootcert=/nonexistent/ca.pem",
        &env,
    );
    assert!(e.contains("\"/nonexistent/ca.pem\" does not exist"), "{e}");
    // prefer and require go on unchecked, as in libpq.
    for mode in ["prefer", "require"] {
        resolve_in(Some(&format!("host=h sslmode={mode}")), &env).expect(mode);
    }
    // sslrootcert=system: verify-full by default, weaker modes refused.
    let e = resolve_err("host=h sslmode=verify-ca sslrootcert=system", &env);
    assert!(
        e.contains("sslrootcert=system") && e.contains("verify-full"),
        "{e}"
    );
    let e = resolve_err("host=h sslmode=require sslrootcert=system", &env);
    assert!(e.contains("sslmode=require may not be used"), "{e}");
}

#[test]
fn hostaddr_without_host_is_the_host() {
    let h = home("hostaddr");
    let env = env_of(&h, &[]);
    let t = resolve_in(Some("hostaddr=127.0.0.2 port=5433"), &env).expect("ok");
    assert_eq!(t.identity(), "postgres://postgres@127.0.0.2:5433/postgres");
    let t = resolve_in(Some("host=db.example hostaddr=127.0.0.2"), &env).expect("ok");
    assert_eq!(t.identity(), "postgres://postgres@db.example:5432/postgres");
    assert_eq!(t.config.get_hostaddrs().len(), 1);
    let t = resolve_in(Some("hostaddr=::1"), &env).expect("ok");
    assert_eq!(t.identity(), "postgres://postgres@[::1]:5432/postgres");
    // The pgpass file is matched against the address.
    write(
        &h.join(".pgpass"),
        "127.0.0.2:5433:*:postgres:by-address\n",
        0o600,
    );
    let t = resolve_in(Some("hostaddr=127.0.0.2 port=5433"), &env).expect("ok");
    assert_eq!(t.config.get_password(), Some(&b"by-address"[..]));
}

#[test]
fn pgpass_readable_by_others_is_ignored() {
    let h = home("pgpass");
    let env = env_of(&h, &[]);
    let f = h.join(".pgpass");
    write(
        &f,
        "# comment\nother:5432:*:me:nope\n127.0.0.1:*:db:me:pa\\:ss\n",
        0o600,
    );
    let url = "postgres://me@127.0.0.1:5433/db";
    let t = resolve_in(Some(url), &env).expect("ok");
    assert_eq!(t.config.get_password(), Some(&b"pa:ss"[..]));
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let t = resolve_in(Some(url), &env).expect("ok");
        assert_eq!(t.config.get_password(), None, "mode {mode:o}");
    }
    // passfile= and PGPASSFILE name another file; PGPASSWORD comes first.
    let other = h.join("other-pgpass");
    write(&other, "*:*:*:*:from-passfile\n", 0o600);
    let t = resolve_in(Some(&format!("{url}?passfile={}", other.display())), &env).expect("ok");
    assert_eq!(t.config.get_password(), Some(&b"from-passfile"[..]));
    let env = env_of(
        &h,
        &[
            ("PGPASSFILE", other.to_str().expect("utf8")),
            ("PGPASSWORD", "pw"),
        ],
    );
    let t = resolve_in(Some(url), &env).expect("ok");
    assert_eq!(t.config.get_password(), Some(&b"pw"[..]));
}

#[test]
fn client_certificate_files_are_checked() {
    let h = home("client");
    let env = env_of(&h, &[]);
    let e = resolve_err(
        "host=h sslcert=/nonexistent/c.crt sslkey=/nonexistent/c.key",
        &env,
    );
    assert!(
        e.contains("\"/nonexistent/c.crt\"") && e.contains("does not exist"),
        "{e}"
    );
    let cert = h.join(".postgresql/postgresql.crt");
    write(&cert, "not a certificate\n", 0o644);
    let e = resolve_err("host=h", &env);
    assert!(
        e.contains("certificate present") && e.contains("postgresql.key"),
        "{e}"
    );
    let key = h.join(".postgresql/postgresql.key");
    write(&key, "not a key\n", 0o644);
    let e = resolve_err("host=h", &env);
    assert!(
        e.contains("group or world access") && e.contains("chmod 600"),
        "{e}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let e = resolve_err("host=h", &env);
    assert!(
        e.contains("postgresql.crt") && e.contains("no PEM certificate"),
        "{e}"
    );
    // sslmode=disable reads no TLS file at all.
    resolve_in(Some("host=h sslmode=disable"), &env).expect("disable");
}

#[test]
fn identity_has_no_password() {
    let env = env_of(&home("identity"), &[]);
    for url in [
        "postgres://me:secret@127.0.0.1:5433/db?sslmode=require",
        "postgres://me@127.0.0.1:5433/db?password=secret",
        "host=127.0.0.1 port=5433 user=me dbname=db password='secret'",
    ] {
        let t = resolve_in(Some(url), &env).expect(url);
        assert_eq!(t.identity(), "postgres://me@127.0.0.1:5433/db");
        assert_eq!(t.config.get_password(), Some(&b"secret"[..]));
        assert!(!format!("{t:?}").contains("secret"));
    }
}
