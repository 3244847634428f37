//! `--config FILE` (or `ddb2pg.toml` in the current directory): settings for the subcommands in
//! TOML, keyed by their long flag names.
//!
//! ```toml
//! [migrate]
//! table = "app"
//! target = "postgres://me@db.internal:5432/app?sslmode=verify-full&sslrootcert=/etc/rds-ca.pem"
//! mapping = "mapping.toml"
//! segments = 64
//! create-tables = true
//! ```
//!
//! The file becomes flags placed before the user's own, so clap validates both alike. Order of
//! precedence: a flag the user gives, then the environment (`DATABASE_URL` for `target`,
//! `AWS_ENDPOINT_URL_DYNAMODB`/`AWS_ENDPOINT_URL` for `endpoint-url`, `AWS_ENDPOINT_URL_S3` for
//! `s3-endpoint-url`, `AWS_REGION`/`AWS_DEFAULT_REGION` for `region`, `AWS_PROFILE` for
//! `profile`, `DDB2PG_LOG_FORMAT` for `log-format`, `DDB2PG_METRICS_ADDR` for `metrics-addr`),
//! then the file. The file used is named on stderr.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::error::{Error, Result};

pub const DEFAULT_FILE: &str = "ddb2pg.toml";

/// The config file named by `--config`, else `ddb2pg.toml` if present.
fn config_path(args: &[OsString]) -> Option<(PathBuf, bool)> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--config" {
            return it.next().map(|p| (PathBuf::from(p), true));
        }
        if let Some(p) = s.strip_prefix("--config=") {
            return Some((PathBuf::from(p), true));
        }
        if s == "--" {
            break;
        }
    }
    let default = PathBuf::from(DEFAULT_FILE);
    default.exists().then_some((default, false))
}

/// Flags whose environment variables beat the settings file (flags > environment > file).
const FLAG_ENV: &[(&str, &[&str])] = &[
    ("--target", &["DATABASE_URL"]),
    (
        "--endpoint-url",
        &["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"],
    ),
    (
        "--s3-endpoint-url",
        &["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"],
    ),
    ("--region", &["AWS_REGION", "AWS_DEFAULT_REGION"]),
    ("--profile", &["AWS_PROFILE"]),
    ("--log-format", &["DDB2PG_LOG_FORMAT"]),
    ("--metrics-addr", &["DDB2PG_METRICS_ADDR"]),
];

/// The command line with the settings file spliced in, and what to tell the user about it.
pub struct Expanded {
    pub args: Vec<OsString>,
    /// `settings file F ([sub])`, plus the file's settings that the environment overrides.
    pub note: Option<String>,
}

/// The command line with the config file's settings for the chosen subcommand spliced in
/// right after the subcommand's name.
pub fn expand_args(args: Vec<OsString>) -> Result<Vec<OsString>> {
    expand(args, &|k| std::env::var(k).ok()).map(|e| e.args)
}

/// [`expand_args`] with the note, against the environment `env`: a file setting whose flag
/// the user gave, or whose environment variable is set, is left out.
pub fn expand(args: Vec<OsString>, env: &dyn Fn(&str) -> Option<String>) -> Result<Expanded> {
    let unchanged = |args| Ok(Expanded { args, note: None });
    let Some((path, explicit)) = config_path(&args) else {
        return unchanged(args);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => return unchanged(args),
        Err(e) => {
            return Err(Error::config(format!(
                "config file {}: {e}",
                path.display()
            )))
        }
    };
    let doc: toml::Table = toml::from_str(&text).map_err(|e| syntax_error(&path, &text, &e))?;
    // The subcommand: the first argument that is not an option (or an option's value).
    let Some(pos) = args
        .iter()
        .enumerate()
        .skip(1)
        .find(|(i, a)| {
            let s = a.to_string_lossy();
            !s.starts_with('-') && args[i - 1] != "--config"
        })
        .map(|(i, _)| i)
    else {
        return unchanged(args);
    };
    let sub = args[pos].to_string_lossy().to_string();
    let Some(section) = doc.get(&sub) else {
        return unchanged(args);
    };
    let table = section.as_table().ok_or_else(|| {
        Error::config(format!(
            "config file {}: [{sub}] must be a table",
            path.display()
        ))
    })?;
    let (extra, overridden) = file_flags(table, &args[pos + 1..], env)
        .map_err(|e| Error::config(format!("config file {}: [{sub}] {e}", path.display())))?;
    let mut note = format!("settings file {} ([{sub}])", path.display());
    if !overridden.is_empty() {
        note.push_str(&format!(
            "; the environment overrides {}",
            overridden.join(", ")
        ));
    }
    let mut out = args[..=pos].to_vec();
    out.extend(extra);
    out.extend_from_slice(&args[pos + 1..]);
    Ok(Expanded {
        args: out,
        note: Some(note),
    })
}

/// The section's settings as flags, without those the user gave (clap refuses a flag given
/// twice) or whose environment variable is set; and the names of the latter (`key (VAR)`).
fn file_flags(
    table: &toml::Table,
    user_args: &[OsString],
    env: &dyn Fn(&str) -> Option<String>,
) -> std::result::Result<(Vec<OsString>, Vec<String>), String> {
    let given: Vec<String> = user_args
        .iter()
        .map(|a| {
            a.to_string_lossy()
                .split('=')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let (mut extra, mut overridden): (Vec<OsString>, Vec<String>) = (Vec::new(), Vec::new());
    for (key, value) in table {
        let flag = format!("--{}", key.replace('_', "-"));
        if given.contains(&flag) {
            continue;
        }
        let set_var = FLAG_ENV
            .iter()
            .filter(|(f, _)| *f == flag)
            .flat_map(|(_, vars)| vars.iter())
            .find(|v| env(v).is_some_and(|x| !x.is_empty()));
        if let Some(var) = set_var {
            overridden.push(format!("{key} ({var})"));
            continue;
        }
        match value {
            toml::Value::Boolean(true) => extra.push(flag.into()),
            toml::Value::Boolean(false) => {}
            toml::Value::String(s) => extra.extend([flag.into(), s.into()]),
            toml::Value::Integer(i) => extra.extend([flag.into(), i.to_string().into()]),
            toml::Value::Float(f) => extra.extend([flag.into(), f.to_string().into()]),
            // The value is not quoted: a table or array may hold a password in any shape.
            other if key == "target" => {
                return Err(format!(
                    "target must be a string (a postgres:// URI or key=value conninfo), not {} {}",
                    article(other.type_str()),
                    other.type_str()
                ))
            }
            other => {
                return Err(format!(
                    "{key} must be a string, number or boolean, not {} {}",
                    article(other.type_str()),
                    other.type_str()
                ))
            }
        }
    }
    Ok((extra, overridden))
}

fn article(word: &str) -> &'static str {
    match word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        true => "an",
        false => "a",
    }
}

/// A TOML syntax error by line and column, with the parser's message: not the parser's own
/// rendering, which quotes the offending line (a password may be on it, in any shape, or on a
/// line of a multi-line string that no pattern recognises).
fn syntax_error(path: &std::path::Path, text: &str, e: &toml::de::Error) -> Error {
    let at = e.span().map_or(String::new(), |span| {
        let before = text.get(..span.start).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!(" at line {line}, column {column}")
    });
    let message = e.message().replace(['\n', '\r'], " ");
    Error::config(format!(
        "config file {}: invalid TOML{at}: {}",
        path.display(),
        crate::pgconn::redact(message.trim())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_settings_come_before_the_users_flags() {
        let dir = std::env::temp_dir().join(format!("ddb2pg-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("c.toml");
        std::fs::write(
            &f,
            "[migrate]\ntable = \"app\"\nsegments = 8\nrestart = true\ncreate_tables = false\n",
        )
        .expect("write");
        let args: Vec<OsString> = [
            "ddb2pg",
            "--config",
            f.to_str().expect("utf8"),
            "migrate",
            "--segments",
            "4",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let out: Vec<String> = expand_args(args)
            .expect("expands")
            .iter()
            .map(|a| a.to_string_lossy().to_string())
            .collect();
        let at = out.iter().position(|a| a == "migrate").expect("subcommand");
        assert_eq!(
            &out[at..],
            ["migrate", "--table", "app", "--restart", "--segments", "4"]
        );
        std::fs::write(&f, "[migrate]\nsegments = [1]\n").expect("write");
        let args: Vec<OsString> = ["ddb2pg", "--config", f.to_str().expect("utf8"), "migrate"]
            .iter()
            .map(OsString::from)
            .collect();
        assert!(expand_args(args).is_err());
    }

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().to_string())
            .collect()
    }

    #[test]
    fn the_environment_beats_the_file_and_the_file_is_named() {
        let dir = std::env::temp_dir().join(format!("ddb2pg-config-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("c.toml");
        std::fs::write(
            &f,
            "[migrate]\ntable = \"app\"\ntarget = \"postgres://file@h/db\"\nregion = \"eu-west-1\"\n",
        )
        .expect("write");
        let args: Vec<OsString> = ["ddb2pg", "--config", f.to_str().expect("utf8"), "migrate"]
            .iter()
            .map(OsString::from)
            .collect();
        let env = |k: &str| (k == "DATABASE_URL").then(|| "postgres://env@h/db".to_string());
        let e = expand(args.clone(), &env).expect("expands");
        let out = strings(&e.args);
        assert!(!out.contains(&"--target".to_string()), "{out:?}");
        assert!(out.contains(&"--region".to_string()), "{out:?}");
        let note = e.note.expect("a note");
        assert!(
            note.contains("c.toml") && note.contains("target (DATABASE_URL)"),
            "{note}"
        );
        // Without the variable the file's target is used.
        let e = expand(args, &|_| None).expect("expands");
        assert!(strings(&e.args).contains(&"postgres://file@h/db".to_string()));
    }

    /// `DDB2PG_LOG_FORMAT` and `DDB2PG_METRICS_ADDR` beat the file's `log-format` and
    /// `metrics-addr`, like every other variable of a flag.
    #[test]
    fn the_log_format_and_metrics_variables_beat_the_file() {
        let dir =
            std::env::temp_dir().join(format!("ddb2pg-config-ddb2pg-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("c.toml");
        std::fs::write(
            &f,
            "[migrate]\nlog-format = \"json\"\nmetrics_addr = \"127.0.0.1:9185\"\n",
        )
        .expect("write");
        let args: Vec<OsString> = ["ddb2pg", "--config", f.to_str().expect("utf8"), "migrate"]
            .iter()
            .map(OsString::from)
            .collect();
        let env = |k: &str| match k {
            "DDB2PG_LOG_FORMAT" => Some("text".to_string()),
            "DDB2PG_METRICS_ADDR" => Some("127.0.0.1:0".to_string()),
            _ => None,
        };
        let e = expand(args.clone(), &env).expect("expands");
        let out = strings(&e.args);
        assert!(!out.contains(&"--log-format".to_string()), "{out:?}");
        assert!(!out.contains(&"--metrics-addr".to_string()), "{out:?}");
        let note = e.note.expect("a note");
        assert!(
            note.contains("log-format (DDB2PG_LOG_FORMAT)")
                && note.contains("metrics_addr (DDB2PG_METRICS_ADDR)"),
            "{note}"
        );
        // Without the variables the file's settings are used.
        let out = strings(&expand(args, &|_| None).expect("expands").args);
        assert!(out.contains(&"json".to_string()), "{out:?}");
        assert!(out.contains(&"127.0.0.1:9185".to_string()), "{out:?}");
    }

    /// The error `ddb2pg --config f migrate` gives with `text` in `f`.
    fn refusal(f: &std::path::Path, text: &str) -> String {
        std::fs::write(f, text).expect("write");
        let args: Vec<OsString> = ["ddb2pg", "--config", f.to_str().expect("utf8"), "migrate"]
            .iter()
            .map(OsString::from)
            .collect();
        expand_args(args).expect_err(text).to_string()
    }

    #[test]
    fn a_toml_syntax_error_does_not_show_the_password() {
        let dir = std::env::temp_dir().join(format!("ddb2pg-config-syntax-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("c.toml");
        for text in [
            "[migrate]\ntarget = \"postgres://me:hunter2@h/db\n",
            "[migrate]\ntarget = \"host=h password=hunter2\n",
            "[migrate]\ntarget = \"host=h password=hunter2\" x\n",
            "[migrate]\ntarget = [\"postgres://me:hunter2@h/db\"]\n",
        ] {
            let e = refusal(&f, text);
            assert!(e.contains("c.toml") && !e.contains("hunter2"), "{e}");
        }
    }

    /// Type errors name the key and the type wanted, never the value; syntax errors give the
    /// line and column, never the line (a password may be on it in any shape).
    #[test]
    fn config_errors_name_the_key_not_the_value() {
        let dir = std::env::temp_dir().join(format!("ddb2pg-config-types-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("c.toml");
        for (text, want) in [
            (
                "[migrate]\ntarget = { host = \"db\", password = \"S3cr3tMARK\" }\n",
                "target must be a string (a postgres:// URI or key=value conninfo), not a table",
            ),
            (
                "[migrate]\ntarget = [\"postgres://u:S3cr3tMARK@h/db\"]\n",
                "target must be a string",
            ),
            (
                "[migrate]\nmapping = { password = \"S3cr3tMARK\" }\n",
                "mapping must be a string, number or boolean, not a table",
            ),
            (
                "[migrate]\ntarget = '''host=h password='x\nS3cr3tMARK' ''' junk\n",
                "invalid TOML at line 3, column",
            ),
        ] {
            let e = refusal(&f, text);
            assert!(e.contains(want) && !e.contains("S3cr3tMARK"), "{e}");
        }
    }
}
