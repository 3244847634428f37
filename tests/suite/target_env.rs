//! Where the target comes from and how it is reached, end to end through the binary: libpq's
//! PG* variables with the password from ~/.pgpass, DATABASE_URL with PGPASSFILE, and TLS,
//! where PostgreSQL's own pg_stat_ssl shows that every connection that wrote a row was encrypted.

use std::path::Path;

use crate::support::harness::{
    default_mapping_differences, new_database_on, sample_table, services, tempdir,
};
use crate::support::private_pg::PrivatePg;
use crate::support::{ddb2pg_command, pg, Outcome};
use crate::tls::{chmod, fake_home, make_certs, set_hba};

/// `ddb2pg migrate --table T` without --target, with `env` on top of the clean environment.
fn migrate_without_target(table: &str, cp: &Path, env: &[(&str, String)]) -> Outcome {
    let stderr = cp.with_extension("stderr");
    let status = ddb2pg_command()
        .args(["migrate", "--table", table, "--progress", "none"])
        .args(["--endpoint-url", &services().endpoint])
        .arg("--checkpoint-dir")
        .arg(cp)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .status()
        .expect("run ddb2pg");
    Outcome {
        code: status.code(),
        signal: std::os::unix::process::ExitStatusExt::signal(&status),
        stderr: std::fs::read_to_string(&stderr).unwrap_or_default(),
        report: None,
    }
}

fn db_name(url: &str) -> String {
    url.rsplit('/')
        .next()
        .expect("a database in the URL")
        .to_string()
}

/// A server that wants a password over TCP: PGHOST/PGPORT/PGUSER/PGDATABASE name the target and
/// ~/.pgpass gives the password; then DATABASE_URL names it and PGPASSFILE gives the password;
/// without either file the server's refusal is the error (exit 2), without the password in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_from_pg_variables_pgpass_and_database_url_through_the_binary() {
    let n = 300;
    let table = sample_table(n).await;
    let server = PrivatePg::start();
    let (a, b) = (
        new_database_on(&server.url).await,
        new_database_on(&server.url).await,
    );
    set_hba(
        &server,
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
    )
    .await;
    let with_password = |url: &str| url.replacen("postgres@", "postgres:from-pgpass@", 1);
    let home = fake_home(&server, "home-e2e");
    let pgpass = home.join(".pgpass");
    std::fs::write(
        &pgpass,
        format!("127.0.0.1:{}:*:postgres:from-pgpass\n", server.port),
    )
    .expect("pgpass");
    chmod(&pgpass, 0o600);
    let home_s = home.display().to_string();

    let pg_vars = [
        ("HOME", home_s.clone()),
        ("PGHOST", "127.0.0.1".to_string()),
        ("PGPORT", server.port.to_string()),
        ("PGUSER", "postgres".to_string()),
        ("PGDATABASE", db_name(&a)),
    ];
    let out = migrate_without_target(&table, &tempdir("pgvars"), &pg_vars);
    out.expect_code(0);
    assert_eq!(
        default_mapping_differences(&with_password(&a), &table, n).await,
        (0, 0)
    );

    // DATABASE_URL without a password; the password file named by PGPASSFILE, not in HOME.
    let elsewhere = server.dir.join("passfile");
    std::fs::rename(&pgpass, &elsewhere).expect("move the pgpass file");
    let url_env = [
        ("HOME", home_s.clone()),
        ("DATABASE_URL", b.clone()),
        ("PGPASSFILE", elsewhere.display().to_string()),
    ];
    let out = migrate_without_target(&table, &tempdir("dburl"), &url_env);
    out.expect_code(0);
    assert_eq!(
        default_mapping_differences(&with_password(&b), &table, n).await,
        (0, 0)
    );

    // No password anywhere: the server refuses; the message says so and shows no password.
    let out = migrate_without_target(&table, &tempdir("nopass"), &pg_vars);
    out.expect_code(2);
    assert!(out.stderr.contains("password"), "{}", out.stderr);
    assert!(!out.stderr.contains("from-pgpass"), "{}", out.stderr);
}

/// TLS through the binary: the server accepts TCP only over TLS (hostssl, no plain line), the
/// target says verify-full with the test CA, and a column default records, for every row, what
/// pg_stat_ssl says about the connection that wrote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_through_the_binary_encrypts_every_connection_that_writes() {
    let n = 2000;
    let table = sample_table(n).await;
    let server = PrivatePg::start_with(|dir| {
        make_certs(dir);
        format!(
            "-c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key",
            dir.display()
        )
    });
    let db = new_database_on(&server.url).await;
    let t = ddb2pg::plan::default_table_name(&table);
    pg(&db)
        .await
        .batch_execute(&format!(
            "CREATE FUNCTION written_over() RETURNS text LANGUAGE sql AS \
             $$ SELECT CASE WHEN ssl THEN 'tls ' || version ELSE 'plain' END \
                FROM pg_stat_ssl WHERE pid = pg_backend_pid() $$; \
             CREATE TABLE \"{t}\" (\"PK\" text NOT NULL, \"SK\" text NOT NULL, item jsonb, \
             written_over text DEFAULT written_over(), PRIMARY KEY (\"PK\", \"SK\"))"
        ))
        .await
        .expect("the target table with its pg_stat_ssl column");
    // From here on TCP connections must use TLS; the test reads over the Unix socket.
    std::fs::write(
        server.dir.join("data/pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
    )
    .expect("pg_hba.conf");
    pg(&db)
        .await
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .expect("reload");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let by_socket = format!(
        "host={} port={} user=postgres dbname={}",
        server.dir.display(),
        server.port,
        db_name(&db)
    );
    let plain = tokio_postgres::connect(&db, tokio_postgres::NoTls).await;
    assert!(plain.is_err(), "a plain TCP connection is refused");

    let target = format!(
        "postgres://postgres@localhost:{}/{}?sslmode=verify-full&sslrootcert={}",
        server.port,
        db_name(&db),
        server.dir.join("ca.crt").display()
    );
    let cp = tempdir("tls-e2e");
    let r =
        crate::support::harness::run(&crate::support::harness::migrate_args(&table, &target, &cp));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let by: Vec<(Option<String>, i64)> = pg(&by_socket)
        .await
        .query(
            &format!("SELECT written_over, count(*) FROM \"{t}\" GROUP BY 1 ORDER BY 1"),
            &[],
        )
        .await
        .expect("rows by connection")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(by.len(), 1, "{by:?}");
    let (how, rows) = &by[0];
    assert!(
        how.as_deref().is_some_and(|h| h.starts_with("tls TLSv1.")),
        "{by:?}"
    );
    assert_eq!(*rows, n as i64);
    assert_eq!(
        default_mapping_differences(&by_socket, &table, n).await,
        (0, 0)
    );
}
