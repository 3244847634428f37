//! `--config FILE` (or `ddb2pg.toml` in the current directory): settings for the subcommands in
//! TOML, keyed by their long flag names. Flags on the command line override the file.
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
//! The file becomes flags placed before the user's own, so clap validates both alike; a flag
//! the user gives replaces the file's value.

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

/// The command line with the config file's settings for the chosen subcommand spliced in
/// right after the subcommand's name.
pub fn expand_args(args: Vec<OsString>) -> Result<Vec<OsString>> {
    let Some((path, explicit)) = config_path(&args) else {
        return Ok(args);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => return Ok(args),
        Err(e) => {
            return Err(Error::config(format!(
                "config file {}: {e}",
                path.display()
            )))
        }
    };
    let doc: toml::Table = toml::from_str(&text)
        .map_err(|e| Error::config(format!("config file {}: invalid TOML: {e}", path.display())))?;
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
        return Ok(args);
    };
    let sub = args[pos].to_string_lossy().to_string();
    let Some(section) = doc.get(&sub) else {
        return Ok(args);
    };
    let table = section.as_table().ok_or_else(|| {
        Error::config(format!(
            "config file {}: [{sub}] must be a table",
            path.display()
        ))
    })?;
    // Flags the user gave win: the file's value for them is left out (clap refuses a flag
    // given twice).
    let given: Vec<String> = args[pos + 1..]
        .iter()
        .map(|a| {
            a.to_string_lossy()
                .split('=')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let mut extra: Vec<OsString> = Vec::new();
    for (key, value) in table {
        let flag = format!("--{}", key.replace('_', "-"));
        if given.contains(&flag) {
            continue;
        }
        match value {
            toml::Value::Boolean(true) => extra.push(flag.into()),
            toml::Value::Boolean(false) => {}
            toml::Value::String(s) => {
                extra.push(flag.into());
                extra.push(s.into());
            }
            toml::Value::Integer(i) => {
                extra.push(flag.into());
                extra.push(i.to_string().into());
            }
            toml::Value::Float(f) => {
                extra.push(flag.into());
                extra.push(f.to_string().into());
            }
            other => {
                return Err(Error::config(format!(
                "config file {}: [{sub}] {key} = {other:?}: expected a string, number or boolean",
                path.display()
            )))
            }
        }
    }
    let mut out = args[..=pos].to_vec();
    out.extend(extra);
    out.extend_from_slice(&args[pos + 1..]);
    Ok(out)
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
}
