//! A password never shows, whatever the shape of the input that carries it. Each form (one line
//! of `FORMS`) gives a target, a settings file or an environment to the binary, with the
//! password's distinctive pieces as the secrets to look for; every output the form reaches is
//! searched for them: stderr of a `-vv` run (the `->` line, errors, logs), the `--report` JSON
//! (its `target` and `error`), and for a target that connects, a second run that fails (a trigger
//! refuses its writes: the resume line, the report's `error`) and `status` (text and JSON).
//! Forms that cannot be honoured are refused at start (exit 2) with a message naming the problem.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::process::Stdio;

use crate::support::harness::*;
use crate::support::{ddb2pg_command, with_database};

/// How a form's text reaches the binary.
#[derive(Clone, Copy)]
enum Via {
    /// `--target TEXT`.
    Arg,
    /// `DATABASE_URL=TEXT`.
    DatabaseUrl,
    /// Lines of the `[migrate]` section of `--config FILE` (the table and endpoint are added).
    Toml,
    /// `PGPASSWORD=TEXT`, the target a plain URI of the test database.
    PgPassword,
    /// An argument the command does not take (clap's usage error quotes it), after `--target`
    /// with a plain URI of the test database.
    Stray,
}

/// What the run does with the form.
#[derive(Clone, Copy)]
enum Then {
    /// Migrates (exit 0); then a run that fails, and `status`.
    Connects,
    /// Exit 2 at start, with this text on stderr.
    Refused(&'static str),
}

struct Form {
    name: &'static str,
    via: Via,
    /// `{host}`, `{port}`, `{db}` are the test database's; `{long}` is 50 KB of the password
    /// marker; `{ff}` a byte that is not UTF-8.
    text: &'static str,
    /// Every piece of the password: none may appear in any output.
    secrets: &'static [&'static str],
    then: Then,
}

const fn form(
    name: &'static str,
    via: Via,
    text: &'static str,
    secrets: &'static [&'static str],
    then: Then,
) -> Form {
    Form {
        name,
        via,
        text,
        secrets,
        then,
    }
}

use Then::{Connects, Refused};
use Via::{Arg, DatabaseUrl, PgPassword, Stray, Toml};

/// A database whose name holds words that look like a password setting: the name is shown
/// (the `->` line, errors, the report's target, status) and must be redacted everywhere alike.
const ODD_DB: &str = " password=S3cr3tDBMARK";

#[rustfmt::skip]
const FORMS: &[Form] = &[
    // What the review found.
    form("toml_inline_table", Toml, r#"target = { host = "{host}", port = {port}, password = "S3cr3tMARK" }"#, &["S3cr3tMARK"], Refused("target must be a string")),
    form("uri_unencoded_at", Arg, "postgres://postgres:S3cr@tPart:Tail99@{host}:{port}/{db}", &["S3cr", "tPart", "Tail99"], Refused("%40")),
    form("uri_unencoded_at_host_only", Arg, "postgres://postgres:p@ssTAIL@{host}:{port}/{db}", &["ssTAIL"], Refused("%40")),
    form("toml_double_quoted_conninfo", Toml, r#"target = "host={host} port={port} dbname={db} user=postgres password=\"S3cr3t MARK=x\"""#, &["S3cr3t", "MARK"], Refused("single quotes")),
    form("report_error_and_status_db_name", Arg, "host={host} port={port} user=postgres dbname='{db}'", &["S3cr3tDBMARK"], Connects),
    // Invented.
    form("uri_password_with_slash", Arg, "postgres://postgres:S3cr/MARK@{host}:{port}/{db}", &["S3cr", "MARK"], Refused("%2F")),
    form("uri_password_with_slash_and_digits", Arg, "postgres://postgres:5432/MARK@{host}:{port}/{db}", &["MARK"], Refused("%2F")),
    form("database_url_unencoded_at", DatabaseUrl, "postgres://postgres:S3cr@tPart:Tail99@{host}:{port}/{db}", &["S3cr", "tPart", "Tail99"], Refused("%40")),
    form("toml_unencoded_at", Toml, r#"target = "postgres://postgres:S3cr@tPart:Tail99@{host}:{port}/{db}""#, &["S3cr", "tPart", "Tail99"], Refused("%40")),
    form("uri_query_password_encoded_blank", Arg, "postgres://postgres@{host}:{port}/{db}?password=S3cr3t%20MARK&sslmode=disable", &["S3cr3t", "MARK"], Connects),
    form("uri_percent_encoded_specials", Arg, "postgres://postgres:S3cr%40t%2FPart%3ATail99%25@{host}:{port}/{db}", &["S3cr", "Part", "Tail99"], Connects),
    form("uri_question_mark_and_quotes", Arg, "postgres://postgres:S3cr?t'MARK\"Tail99@{host}:{port}/{db}", &["S3cr", "MARK", "Tail99"], Connects),
    form("kv_single_quoted_escapes", Arg, r"host={host} port={port} dbname={db} user=postgres password='S3cr\'t MARK=\\Tail99'", &["S3cr", "MARK", "Tail99"], Connects),
    form("kv_unquoted_words_with_equals", Arg, "host={host} port={port} dbname={db} user=postgres password=S3cr3t MARK=1", &["S3cr3t", "MARK"], Refused("single quotes")),
    form("kv_double_quoted_arg", Arg, r#"host={host} port={port} dbname={db} user=postgres password="S3cr3t w=MARK""#, &["S3cr3t", "MARK"], Refused("single quotes")),
    form("kv_uppercase_keyword", Arg, "host={host} port={port} dbname={db} user=postgres PASSWORD=S3cr3tMARK", &["S3cr3tMARK"], Refused("PASSWORD")),
    form("pgpassword_env", PgPassword, "S3cr3t MARK'\"=Tail99", &["S3cr3t", "MARK", "Tail99"], Connects),
    form("toml_newline_in_quoted_password", Toml, r#"target = "host={host} port={port} dbname={db} user=postgres password='S3cr3t\nMARK'""#, &["S3cr3t", "MARK"], Connects),
    form("toml_newline_unquoted", Toml, r#"target = "host={host} port={port} dbname={db} user=postgres password=S3cr3t\nMARK=1""#, &["S3cr3t", "MARK"], Refused("single quotes")),
    form("toml_syntax_error_on_a_password_line", Toml, "target = '''host={host} password='S3cr3t\nMARK' ''' junk", &["S3cr3t", "MARK"], Refused("invalid TOML")),
    form("toml_other_key_inline_table", Toml, r#"mapping = { password = "S3cr3tMARK" }"#, &["S3cr3tMARK"], Refused("mapping must be")),
    form("toml_array_target", Toml, r#"target = ["postgres://postgres:S3cr3tMARK@{host}:{port}/{db}", "x"]"#, &["S3cr3tMARK"], Refused("target must be a string")),
    form("uri_not_utf8", Arg, "postgres://postgres:S3cr{ff}MARK@{host}:{port}/{db}", &["S3cr", "MARK"], Refused("UTF-8")),
    form("uri_very_long_password", Arg, "postgres://postgres:{long}@{host}:{port}/{db}", &["S3cr3tMARK"], Connects),
    form("uri_nonexistent_db_with_words", Arg, "postgres://postgres@{host}:{port}/{db}_missing password=S3cr3tMARK", &["S3cr3tMARK"], Refused("does not exist")),
    // What the second review found.
    form("stray_uri_with_scheme_in_password", Stray, "postgres://postgres:a://bS3cr3tMARK@{host}:{port}/{db}", &["S3cr3tMARK"], Refused("unexpected argument")),
    form("stray_uri_with_newline_in_password", Stray, "postgres://postgres:S3cr3t\nMARK@{host}:{port}/{db}", &["S3cr3t", "MARK"], Refused("unexpected argument")),
    form("stray_uri_with_slash_then_newline", Stray, "postgres://postgres:a/bS3cr3t\nMARK@{host}:{port}/{db}", &["S3cr3t", "MARK"], Refused("unexpected argument")),
    form("stray_uri_with_at_then_newline", Stray, "postgres://postgres:a@bS3cr3t\nMARK@{host}:{port}/{db}", &["S3cr3t", "MARK"], Refused("unexpected argument")),
    form("uri_at_in_database_name", Arg, "postgres://postgres:S3cr3tMARK@{host}:{port}/{db}@x", &["S3cr3tMARK"], Refused("\"{db}@x\" does not exist")),
];

/// Where the test database is: `{host}`, `{port}`, `{db}`.
struct Place {
    host: String,
    port: String,
    db: String,
}

fn expand(text: &str, at: &Place) -> OsString {
    let s = text
        .replace("{host}", &at.host)
        .replace("{port}", &at.port)
        .replace("{db}", &at.db)
        .replace("{long}", &"S3cr3tMARK".repeat(5000));
    let mut bytes = Vec::new();
    let mut parts = s.split("{ff}");
    bytes.extend_from_slice(parts.next().unwrap_or("").as_bytes());
    for p in parts {
        bytes.push(0xff);
        bytes.extend_from_slice(p.as_bytes());
    }
    OsString::from_vec(bytes)
}

/// Everything one form's runs printed or wrote, by where it came from.
#[derive(Default)]
struct Seen {
    outputs: Vec<(String, String)>,
    /// What went otherwise than the form expects.
    problems: Vec<String>,
}

impl Seen {
    fn add(&mut self, what: &str, text: String) {
        self.outputs.push((what.to_string(), text));
    }

    fn want(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.problems.push(problem());
        }
    }

    /// `form: where: secret` for every secret found.
    fn leaks(&self, f: &Form) -> Vec<String> {
        let mut out = self.problems.clone();
        for (what, text) in &self.outputs {
            for s in f.secrets {
                if text.contains(s) {
                    let at = text.find(s).unwrap_or(0);
                    let from = text[..at]
                        .char_indices()
                        .rev()
                        .nth(60)
                        .map_or(0, |(i, _)| i);
                    let shown: String = text[from..].chars().take(140).collect();
                    out.push(format!("{}: {what} shows {s:?}: …{shown}…", f.name));
                }
            }
        }
        out
    }
}

/// One run of the binary: (exit code, stderr, stdout, report text).
fn run(dir: &Path, args: &[OsString], env: &[(&str, OsString)]) -> (i32, String, String, String) {
    let report = dir.join("report.json");
    let _ = std::fs::remove_file(&report);
    let out = ddb2pg_command()
        .current_dir(dir)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run ddb2pg");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        std::fs::read_to_string(&report).unwrap_or_default(),
    )
}

/// A trigger on every table of the database that refuses writes, naming the database.
async fn refuse_writes(db_url: &str) {
    pg(db_url)
        .await
        .batch_execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               RAISE EXCEPTION 'writes refused in database %', current_database(); END $$;
             DO $$ DECLARE t text; BEGIN
               FOR t IN SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
                        WHERE schemaname = 'public' LOOP
                 EXECUTE format('CREATE TRIGGER refuse BEFORE INSERT OR UPDATE OR DELETE ON %s \
                                 FOR EACH ROW EXECUTE FUNCTION refuse()', t);
               END LOOP; END $$;",
        )
        .await
        .expect("create the trigger");
}

/// A database of its own for the form; the odd-named one for the form that tests names.
async fn database_for(f: &Form) -> (String, String) {
    let url = new_database().await;
    let base = url.rsplit('/').next().unwrap_or("").to_string();
    if f.name != "report_error_and_status_db_name" {
        return (url, base);
    }
    let odd = format!("{base}{ODD_DB}");
    pg(&url)
        .await
        .batch_execute(&format!("CREATE DATABASE \"{odd}\""))
        .await
        .expect("create the odd database");
    let odd_url = with_database(&services().admin_url, &odd.replace(' ', "%20"));
    (odd_url, odd)
}

/// Run one form through every output it reaches; returns what was seen.
async fn exercise(f: &Form, table: &str, n: u64) -> Seen {
    let (db_url, db) = database_for(f).await;
    let port = db_url
        .split(':')
        .nth(2)
        .and_then(|p| p.split('/').next())
        .unwrap_or("5432")
        .to_string();
    let at = Place {
        host: "127.0.0.1".into(),
        port,
        db,
    };
    let dir = tempdir(&format!("redact-{}", f.name));
    let cp = dir.join("checkpoints");
    let text = expand(f.text, &at);
    let mut args: Vec<OsString> = [
        "migrate",
        "-vv",
        "--progress",
        "none",
        "--report",
        "report.json",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.extend(["--checkpoint-dir".into(), cp.clone().into_os_string()]);
    let mut env: Vec<(&str, OsString)> = Vec::new();
    let plain = format!("postgres://postgres@{}:{}/{}", at.host, at.port, at.db);
    match f.via {
        Via::Arg => args.extend(["--target".into(), text]),
        Via::DatabaseUrl => env.push(("DATABASE_URL", text)),
        Via::PgPassword => {
            env.push(("PGPASSWORD", text));
            args.extend(["--target".into(), plain.into()]);
        }
        Via::Stray => args.extend(["--target".into(), plain.into(), text]),
        Via::Toml => {
            let file = dir.join("ddb2pg.toml");
            let mut toml = format!(
                "[migrate]\ntable = \"{table}\"\nendpoint-url = \"{}\"\n",
                services().endpoint
            )
            .into_bytes();
            toml.extend(text.into_vec());
            toml.push(b'\n');
            std::fs::write(&file, toml).expect("write the settings file");
            args.extend(["--config".into(), file.into_os_string()]);
        }
    }
    if !matches!(f.via, Via::Toml) {
        args.extend(["--table".into(), table.into()]);
        args.extend(["--endpoint-url".into(), services().endpoint.clone().into()]);
    }
    let mut seen = Seen::default();
    let (code, stderr, stdout, report) = run(&dir, &args, &env);
    seen.add("stderr", stderr.clone());
    seen.add("stdout", stdout);
    seen.add("report", report);
    match f.then {
        Then::Refused(why) => {
            let why = expand(why, &at).to_string_lossy().into_owned();
            seen.want(code == 2 && stderr.contains(&why), || {
                format!(
                    "{}: wanted exit 2 and {why:?}, got {code}:\n{stderr}",
                    f.name
                )
            });
            return seen;
        }
        Then::Connects => seen.want(code == 0, || format!("{}: exit {code}:\n{stderr}", f.name)),
    }
    if code == 0 {
        failed_run_and_status(
            f,
            &mut seen,
            (&db_url, table, n),
            (&dir, &cp),
            (&args, &env),
        )
        .await;
    }
    if f.name == "report_error_and_status_db_name" {
        pg(&services().admin_url)
            .await
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                at.db
            ))
            .await
            .expect("drop the odd database");
    }
    seen
}

/// The connecting form's second run, whose writes a trigger refuses (exit 1, the resume line,
/// the report's error), then `status` and `status --json`.
async fn failed_run_and_status(
    f: &Form,
    seen: &mut Seen,
    (db_url, table, n): (&str, &str, u64),
    (dir, cp): (&Path, &Path),
    (args, env): (&[OsString], &[(&str, OsString)]),
) {
    let rows: i64 = pg(db_url)
        .await
        .query_one(&format!("SELECT count(*) FROM \"{table}\""), &[])
        .await
        .expect("count rows")
        .get(0);
    seen.want(rows as u64 == n, || format!("{}: {rows} rows", f.name));
    refuse_writes(db_url).await;
    let mut args = args.to_vec();
    args.push("--restart".into());
    let (code, stderr, stdout, report) = run(dir, &args, env);
    seen.want(
        code == 1 && stderr.contains("to resume") && report.contains("writes refused in"),
        || {
            format!(
                "{}: the refused run: exit {code}:\n{stderr}\n{report}",
                f.name
            )
        },
    );
    seen.add("failed run's stderr", stderr);
    seen.add("failed run's stdout", stdout);
    seen.add("failed run's report", report);
    for extra in [&[][..], &["--json"][..]] {
        let mut status: Vec<OsString> = vec!["status".into(), "--checkpoint-dir".into()];
        status.push(cp.as_os_str().to_owned());
        status.extend(extra.iter().map(OsString::from));
        let (code, stderr, stdout, _) = run(dir, &status, env);
        seen.want(code == 0 && stdout.contains("postgres://"), || {
            format!(
                "{}: status {extra:?}: exit {code}: {stdout}\n{stderr}",
                f.name
            )
        });
        seen.add(&format!("status {extra:?} stdout"), stdout);
        seen.add(&format!("status {extra:?} stderr"), stderr);
    }
}

async fn check(refused: bool) {
    let n = 20;
    let table = sample_table(n).await;
    let mut leaks = Vec::new();
    for f in FORMS
        .iter()
        .filter(|f| matches!(f.then, Then::Refused(_)) == refused)
    {
        let seen = exercise(f, &table, n).await;
        leaks.extend(seen.leaks(f));
    }
    assert!(leaks.is_empty(), "problems:\n{}", leaks.join("\n\n"));
}

/// The forms ddb2pg refuses: exit 2 at start, the reason named, nothing of the password shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_forms_show_no_piece_of_the_password() {
    check(true).await;
}

/// The forms that connect: a run, a failed run (resume line, report error) and status show
/// nothing of the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_forms_show_no_piece_of_the_password_anywhere() {
    check(false).await;
}
