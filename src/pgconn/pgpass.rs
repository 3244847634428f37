//! The password file (`passfile`, `PGPASSFILE` or `~/.pgpass`) as libpq reads it: lines of
//! `host:port:db:user:password`, `*` matching anything, `\:` and `\\` escaped. A file that
//! others can read is ignored with a warning, as libpq does.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio_postgres::config::Host;
use tokio_postgres::Config;

use super::Settings;

/// Print `message` once per process for `key` (targets are resolved again by every worker).
fn warn_once(key: &str, message: &str) {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if seen
        .get_or_insert_with(HashSet::new)
        .insert(key.to_string())
    {
        crate::say!(warn: "{message}");
    }
}

/// The file, when it may be used: a regular file with no access for group or others.
fn usable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    let shown = path.display();
    if !meta.is_file() {
        warn_once(
            &shown.to_string(),
            &format!("password file \"{shown}\" is not a plain file; it is ignored"),
        );
        return false;
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        warn_once(
            &shown.to_string(),
            &format!(
                "password file \"{shown}\" has group or world access ({:o}); it is ignored: \
                 permissions should be u=rw (0600) or less (chmod 600 {shown})",
                mode & 0o777
            ),
        );
        return false;
    }
    true
}

/// The password for the config's first host, port, database and user, if a line matches.
/// The host is the `host` (or the `hostaddr` when no `host` was given), `localhost` for a
/// socket directory.
pub(super) fn lookup(c: &Config, s: &Settings) -> Option<String> {
    let path = s
        .get("passfile")
        .map(PathBuf::from)
        .or_else(|| s.env.get("HOME").map(|h| Path::new(&h).join(".pgpass")))?;
    if !usable(&path) {
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let host = match c.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        _ => "localhost".to_string(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432).to_string();
    let user = c.get_user().unwrap_or("").to_string();
    let db = c.get_dbname().map_or_else(|| user.clone(), str::to_string);
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(fields)
        .find(|f| {
            let ok = |pat: &str, v: &str| pat == "*" || pat == v;
            f.len() == 5
                && (ok(&f[0], &host) || (f[0] == "localhost" && host == "127.0.0.1"))
                && ok(&f[1], &port)
                && ok(&f[2], &db)
                && ok(&f[3], &user)
        })
        .map(|mut f| f.swap_remove(4))
}

fn fields(line: &str) -> Vec<String> {
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
    fields
}
