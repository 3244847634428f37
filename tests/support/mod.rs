//! Helpers of the integration tests: the real services (DynamoDB Local and PostgreSQL, started
//! with `scripts/services.sh` when the environment does not name them), unique names, a fresh
//! database per test (dropped at its end), the DynamoDB client, running the binary (binary.rs),
//! reading checkpoints, and comparing the target with the source through PostgreSQL's own
//! jsonb equality.

#![allow(dead_code)]

mod binary;
pub mod fault_proxy;
pub mod harness;
pub mod json;
pub mod private_pg;
pub mod prometheus;
pub mod stream_double;
pub mod stream_fixture;

pub use binary::*;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use aws_sdk_dynamodb::types::AttributeValue;
use ddb2pg::value::Item;
use tokio_postgres::{Client, NoTls};

/// Where the shared services listen.
#[derive(Debug, Clone)]
pub struct Services {
    /// `http://127.0.0.1:PORT` of DynamoDB Local.
    pub endpoint: String,
    /// `postgres://postgres@127.0.0.1:PORT/postgres`: the admin database.
    pub admin_url: String,
}

const ENDPOINT_VAR: &str = "DDB2PG_TEST_DYNAMODB_ENDPOINT";
const DATABASE_VAR: &str = "DDB2PG_TEST_DATABASE_URL";

/// The services, resolved once per process: from the environment, or by starting them.
pub fn services() -> &'static Services {
    static SERVICES: OnceLock<Services> = OnceLock::new();
    SERVICES.get_or_init(|| {
        let from_env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let (Some(endpoint), Some(admin_url)) = (from_env(ENDPOINT_VAR), from_env(DATABASE_VAR))
        {
            return Services {
                endpoint,
                admin_url,
            };
        }
        start_services()
    })
}

/// `scripts/services.sh start` prints the path of an env file of `export K=V` lines.
fn start_services() -> Services {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/services.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("start")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/services.sh start");
    assert!(
        out.status.success(),
        "scripts/services.sh start failed: {:?}",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let env_file = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .expect("services.sh printed the env file path")
        .to_string();
    let text = std::fs::read_to_string(&env_file).expect("read the services env file");
    let mut endpoint = None;
    let mut admin_url = None;
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
        match k.trim() {
            ENDPOINT_VAR => endpoint = Some(v),
            DATABASE_VAR => admin_url = Some(v),
            _ => {}
        }
    }
    Services {
        endpoint: endpoint.unwrap_or_else(|| panic!("{ENDPOINT_VAR} missing in {env_file}")),
        admin_url: admin_url.unwrap_or_else(|| panic!("{DATABASE_VAR} missing in {env_file}")),
    }
}

/// A name no other test of this or an earlier process uses: `<prefix>_<pid>_<time>_<n>`,
/// lower case, valid as a DynamoDB table name and a PostgreSQL identifier.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 100_000_000)
        .unwrap_or(0);
    format!(
        "{}_{}_{t}_{n}",
        prefix.to_ascii_lowercase(),
        std::process::id()
    )
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(prefix: &str) -> PathBuf {
    let d = std::env::temp_dir()
        .join("ddb2pg-tests")
        .join(unique_name(prefix));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create a temp dir");
    d
}

/// Connect to PostgreSQL; the connection task runs on the test's runtime.
pub async fn pg(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// `url` with its database replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{db}?{q}"),
        None => format!("{host_part}/{db}"),
    }
}

/// Create a fresh PostgreSQL database on the shared server; returns its URL. The database is
/// dropped when the test ends, passing or failing (see [`DropDatabases`]).
pub async fn new_database() -> String {
    let name = unique_name("db");
    let admin = pg(&services().admin_url).await;
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    DROP_AT_EXIT.with(|d| d.0.borrow_mut().push(name.clone()));
    with_database(&services().admin_url, &name)
}

/// The databases `new_database` made on this thread, dropped when the thread ends: libtest runs
/// each test on a thread of its own, and a thread's locals are dropped after its test returned or
/// panicked (the unwinding is done), so a failing test leaves no database behind either.
/// (Tokio's `block_on` runs the test's body on that thread.)
pub struct DropDatabases(RefCell<Vec<String>>);

thread_local! {
    static DROP_AT_EXIT: DropDatabases = const { DropDatabases(RefCell::new(Vec::new())) };
}

impl Drop for DropDatabases {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.0.borrow_mut());
        if names.is_empty() {
            return;
        }
        let admin = services().admin_url.clone();
        // Our own runtime on a thread of its own: the test's runtime is gone by now, and a panic
        // in a thread-local destructor would abort the process.
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok((client, conn)) = tokio_postgres::connect(&admin, NoTls).await else {
                    return;
                };
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                for name in names {
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// The names of the databases this thread's test made and has not dropped yet.
pub fn databases_to_drop() -> Vec<String> {
    DROP_AT_EXIT.with(|d| d.0.borrow().clone())
}

/// Drop a database made by `new_database` now (it would be dropped at the test's end anyway).
pub async fn drop_database(url: &str) {
    let Some(name) = url
        .split('?')
        .next()
        .and_then(|u| u.rsplit('/').next())
        .map(str::to_string)
    else {
        return;
    };
    let admin = pg(&services().admin_url).await;
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await;
    let _ = DROP_AT_EXIT.try_with(|d| d.0.borrow_mut().retain(|n| *n != name));
}

/// A DynamoDB client for DynamoDB Local (dummy credentials on loopback).
pub async fn ddb() -> aws_sdk_dynamodb::Client {
    let args = ddb2pg::cli::AwsArgs {
        endpoint_url: Some(services().endpoint.clone()),
        region: None,
        profile: None,
    };
    ddb2pg::source::Source::connect(&args)
        .await
        .expect("DynamoDB client")
        .client
}

/// Create `table` with `count` sample items of `seed`; returns those items.
pub async fn load_sample(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    seed: u64,
    count: u64,
) -> Vec<Item> {
    ddb2pg::sample::load(client, table, seed, count)
        .await
        .unwrap_or_else(|e| panic!("load {count} sample items into {table}: {e}"));
    (0..count).map(|i| ddb2pg::sample::item(seed, i)).collect()
}

/// PutItem one crafted item.
pub async fn put(client: &aws_sdk_dynamodb::Client, table: &str, item: &Item) {
    client
        .put_item()
        .table_name(table)
        .set_item(Some(item.clone()))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PutItem into {table}: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(&e)
            )
        });
}

/// Delete a DynamoDB table (best effort: end of a passing test).
pub async fn delete_table(client: &aws_sdk_dynamodb::Client, table: &str) {
    let _ = client.delete_table().table_name(table).send().await;
}

pub fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

pub fn n(v: &str) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// An item with string keys PK and SK and the given other attributes.
pub fn item(pk: &str, sk: &str, attrs: Vec<(&str, AttributeValue)>) -> Item {
    let mut it = Item::new();
    it.insert("PK".into(), s(pk));
    it.insert("SK".into(), s(sk));
    for (k, v) in attrs {
        it.insert(k.to_string(), v);
    }
    it
}

/// The `item` document the default mapping stores for `item`, as JSON text, built by the
/// suite's own encoder (`json::doc`), not by ddb2pg's.
pub fn expected_json(item: &Item) -> String {
    json::doc(item)
}

fn key_of(it: &Item) -> (String, String) {
    let get = |k: &str| match it.get(k) {
        Some(AttributeValue::S(s)) => s.clone(),
        other => panic!("item key {k} is not a string: {other:?}"),
    };
    (get("PK"), get("SK"))
}

/// Assert that `table` holds exactly `items`: same count, no duplicate key, and every row's
/// `item` equal (jsonb equality, in PostgreSQL) to the item's expected JSON.
pub async fn assert_target_is(pg: &Client, table: &str, items: &[Item]) {
    let (count, distinct): (i64, i64) = {
        let r = pg
            .query_one(
                &format!("SELECT count(*), count(DISTINCT (\"PK\", \"SK\")) FROM {table}"),
                &[],
            )
            .await
            .expect("count rows");
        (r.get(0), r.get(1))
    };
    assert_eq!(count, distinct, "duplicate keys in {table}");
    assert_eq!(count as usize, items.len(), "row count of {table}");
    let mut pks = Vec::with_capacity(items.len());
    let mut sks = Vec::with_capacity(items.len());
    let mut docs = Vec::with_capacity(items.len());
    for it in items {
        let (pk, sk) = key_of(it);
        pks.push(pk);
        sks.push(sk);
        docs.push(expected_json(it));
    }
    let rows = pg
        .query(
            &format!(
                "SELECT e.pk, e.sk, t.item::text, e.doc \
                 FROM unnest($1::text[], $2::text[], $3::text[]) AS e(pk, sk, doc) \
                 LEFT JOIN {table} t ON t.\"PK\" = e.pk AND t.\"SK\" = e.sk \
                 WHERE t.item IS DISTINCT FROM e.doc::jsonb LIMIT 5"
            ),
            &[&pks, &sks, &docs],
        )
        .await
        .expect("compare rows");
    let diffs: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{}/{}:\n    target   {:?}\n    expected {}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, Option<String>>(2),
                r.get::<_, String>(3)
            )
        })
        .collect();
    assert!(
        diffs.is_empty(),
        "rows of {table} differ from the source:\n  {}",
        diffs.join("\n  ")
    );
}

/// Rows of a table (count).
pub async fn count_rows(pg: &Client, table: &str) -> i64 {
    pg.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

/// The guard drops the database of a test that panics: a thread plays the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_of_a_failed_test_is_dropped() {
    let (tx, rx) = std::sync::mpsc::channel();
    let test = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let url = new_database().await;
            let name = databases_to_drop().pop().expect("registered");
            tx.send(name).expect("send");
            // The test holds a connection open when it fails.
            let _c = pg(&url).await;
            panic!("a failing test");
        })
    });
    assert!(test.join().is_err(), "the thread panicked");
    let name = rx.recv().expect("the database's name");
    let left: i64 = pg(&services().admin_url)
        .await
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .expect("pg_database")
        .get(0);
    assert_eq!(left, 0, "database {name} outlived its failed test");
}
