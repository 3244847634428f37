//! libpq connection strings, parsed as libpq parses them: `postgres[ql]://` URIs (percent-decoded
//! user, password, hosts, ports, database and `?key=value&...` parameters) and `key = value`
//! strings (blanks around `=`, single-quoted values, backslash escapes). Unknown keywords are
//! refused, as libpq refuses them. Also the one function that hides a password in anything
//! shown to the user: [`redact`].
//!
//! Error messages never contain a password: they name the keyword, not its value.

use crate::error::{Error, Result};

/// Keywords in the order given; a later one replaces an earlier one (as in libpq).
pub type Params = Vec<(String, String)>;

/// The value a keyword was given last, if any.
pub fn get<'a>(params: &'a Params, key: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Keywords ddb2pg understands, with the environment variable libpq reads for each.
pub const KEYWORDS: &[(&str, Option<&str>)] = &[
    ("host", Some("PGHOST")),
    ("hostaddr", Some("PGHOSTADDR")),
    ("port", Some("PGPORT")),
    ("dbname", Some("PGDATABASE")),
    ("user", Some("PGUSER")),
    ("password", Some("PGPASSWORD")),
    ("passfile", Some("PGPASSFILE")),
    ("connect_timeout", Some("PGCONNECT_TIMEOUT")),
    ("options", Some("PGOPTIONS")),
    ("application_name", Some("PGAPPNAME")),
    ("fallback_application_name", None),
    ("client_encoding", Some("PGCLIENTENCODING")),
    ("keepalives", None),
    ("keepalives_idle", None),
    ("keepalives_interval", None),
    ("keepalives_count", None),
    ("tcp_user_timeout", None),
    ("target_session_attrs", Some("PGTARGETSESSIONATTRS")),
    ("load_balance_hosts", Some("PGLOADBALANCEHOSTS")),
    ("channel_binding", Some("PGCHANNELBINDING")),
    ("gssencmode", Some("PGGSSENCMODE")),
    ("sslmode", Some("PGSSLMODE")),
    ("sslnegotiation", Some("PGSSLNEGOTIATION")),
    ("sslrootcert", Some("PGSSLROOTCERT")),
    ("sslcert", Some("PGSSLCERT")),
    ("sslkey", Some("PGSSLKEY")),
    ("sslcompression", Some("PGSSLCOMPRESSION")),
    ("sslsni", Some("PGSSLSNI")),
];

/// libpq keywords that ddb2pg refuses rather than ignores.
const UNSUPPORTED: &[&str] = &[
    "service",
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslcertmode",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "requirepeer",
    "require_auth",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "replication",
    "min_protocol_version",
    "max_protocol_version",
];

/// Parse a URI or a key=value string.
pub fn parse(s: &str) -> Result<Params> {
    let params = if s.starts_with("postgresql://") || s.starts_with("postgres://") {
        parse_uri(s)?
    } else if s.contains("://") {
        return Err(Error::config(
            "the target URL must start with postgres:// or postgresql://",
        ));
    } else {
        parse_kv(s)?
    };
    for (k, _) in &params {
        check_keyword(k)?;
    }
    Ok(params)
}

fn check_keyword(k: &str) -> Result<()> {
    if KEYWORDS.iter().any(|(known, _)| *known == k) {
        return Ok(());
    }
    if UNSUPPORTED.contains(&k) {
        return Err(Error::config(format!(
            "connection option \"{k}\" is a libpq option ddb2pg does not support: remove it from the target"
        )));
    }
    Err(Error::config(format!(
        "invalid connection option \"{k}\" in the target (libpq keywords such as host, port, \
         dbname, user, password, sslmode, sslrootcert, sslcert, sslkey)"
    )))
}

/// `key = value ...` as libpq's conninfo_parse reads it.
fn parse_kv(s: &str) -> Result<Params> {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    loop {
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        if it.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = it.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        if it.next() != Some('=') {
            // The word is not quoted: it may be part of an unquoted password.
            return Err(Error::config(
                "missing \"=\" after a word of the target's connection string (key = value \
                 pairs; a value with blanks goes in single quotes)",
            ));
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if it.next_if_eq(&'\'').is_some() {
            loop {
                match it.next() {
                    None => {
                        return Err(Error::config(format!(
                            "unterminated quoted string (the value of \"{key}\") in the target's connection string"
                        )))
                    }
                    Some('\\') => value.extend(it.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = it.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(it.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

/// `postgres://[user[:password]@][host][:port][,...][/dbname][?key=value&...]` as libpq's
/// conninfo_uri_parse reads it.
fn parse_uri(s: &str) -> Result<Params> {
    let mut out = Vec::new();
    let rest = s.split_once("://").map_or("", |(_, r)| r);
    // Credentials: up to an '@' met before any '/'.
    let rest = match rest.find(['@', '/']) {
        Some(at) if rest.as_bytes()[at] == b'@' => {
            let (cred, after) = (&rest[..at], &rest[at + 1..]);
            let (user, password) = match cred.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (cred, None),
            };
            push_decoded(&mut out, "user", user)?;
            if let Some(p) = password {
                push_decoded(&mut out, "password", p)?;
            }
            after
        }
        _ => rest,
    };
    let (hosts, ports, after) = netloc(rest)?;
    push_decoded(&mut out, "host", &hosts)?;
    push_decoded(&mut out, "port", &ports)?;
    let (path, query) = match after.strip_prefix('/') {
        Some(p) => p.split_once('?').map_or((p, None), |(d, q)| (d, Some(q))),
        None => ("", after.strip_prefix('?')),
    };
    push_decoded(&mut out, "dbname", path)?;
    if let Some(q) = query {
        uri_params(q, &mut out)?;
    }
    Ok(out)
}

/// Hosts and ports (comma-separated lists, `[v6]` addresses) and what follows them.
fn netloc(mut rest: &str) -> Result<(String, String, &str)> {
    let (mut hosts, mut ports) = (String::new(), String::new());
    loop {
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(|| {
                Error::config("no matching \"]\" for an IPv6 host address in the target URL")
            })?;
            if end == 0 {
                return Err(Error::config(
                    "an IPv6 host address may not be empty in the target URL",
                ));
            }
            hosts.push_str(&r[..end]);
            rest = &r[end + 1..];
            if !(rest.is_empty() || rest.starts_with([':', '/', '?', ','])) {
                return Err(Error::config(
                    "unexpected character after \"]\" in the target URL (expected \":\" or \"/\")",
                ));
            }
        } else {
            let end = rest.find([':', '/', '?', ',']).unwrap_or(rest.len());
            hosts.push_str(&rest[..end]);
            rest = &rest[end..];
        }
        if let Some(r) = rest.strip_prefix(':') {
            let end = r.find(['/', '?', ',']).unwrap_or(r.len());
            ports.push_str(&r[..end]);
            rest = &r[end..];
        }
        match rest.strip_prefix(',') {
            Some(r) => {
                hosts.push(',');
                ports.push(',');
                rest = r;
            }
            None => return Ok((hosts, ports, rest)),
        }
    }
}

fn uri_params(query: &str, out: &mut Params) -> Result<()> {
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(Error::config(
                "a query parameter of the target URL has no \"=\" (a percent-encoded %3D does \
                 not count)",
            ));
        };
        let key = percent_decode(k).map_err(|e| Error::config(format!("the target URL: {e}")))?;
        if v.contains('=') {
            return Err(Error::config(format!(
                "extra \"=\" in the target URL's query parameter \"{key}\" (percent-encode it as %3D)"
            )));
        }
        let (key, value) = match (key.as_str(), v) {
            // libpq's JDBC compatibility.
            ("ssl", "true") => ("sslmode".to_string(), "require"),
            _ => (key, v),
        };
        push_decoded(out, &key, value)?;
    }
    Ok(())
}

fn push_decoded(out: &mut Params, key: &str, raw: &str) -> Result<()> {
    if raw.is_empty() {
        return Ok(());
    }
    let value = percent_decode(raw).map_err(|e| {
        if key == "password" {
            Error::config("the target URL's password is not valid percent-encoding: write % as %25")
        } else {
            Error::config(format!("the target URL's {key}: {e}"))
        }
    })?;
    out.push((key.to_string(), value));
    Ok(())
}

/// `%XX` decoded byte by byte; a `%` not followed by two hex digits, `%00` and a result that
/// is not UTF-8 are refused (libpq refuses the first two).
pub fn percent_decode(s: &str) -> std::result::Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        match (hex(i + 1), hex(i + 2)) {
            (Some(0), Some(0)) => return Err(format!("%00 is not allowed in {s:?}")),
            (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
            _ => {
                return Err(format!(
                    "invalid percent-encoding in {s:?} (a % must be followed by two hex digits; write % as %25)"
                ))
            }
        }
        i += 3;
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} does not decode to UTF-8"))
}

/// Hide passwords in anything that may hold a target: a URI's `user:password@` and every
/// `password=...` (URI query parameter, key=value keyword, quoted or not, blanks around `=`)
/// become `***`. Works on text that does not parse, and on longer text holding targets (a
/// command line, an error message, a line of a settings file).
pub fn redact(s: &str) -> String {
    let s = redact_userinfo(s);
    redact_keyword(&s)
}

/// `scheme://user:secret@host` -> `scheme://user:***@host`, for every URI in `s`.
fn redact_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        // The credentials end at the last '@' before the path's '/' (a blank, quote or '?' may
        // be part of the password): at worst more than the password is hidden.
        let end = rest.find('/').unwrap_or(rest.len());
        // A '?' may be part of the password (libpq reads the userinfo up to the last '@'):
        // the whole authority is searched, at worst hiding more than the password.
        let auth = &rest[..end];
        if let (Some(at), Some(colon)) = (auth.rfind('@'), auth.find(':')) {
            if colon < at {
                out.push_str(&rest[..colon + 1]);
                out.push_str("***");
                rest = &rest[at..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every `password = value` and `sslpassword = value` -> `password=***`.
fn redact_keyword(s: &str) -> String {
    const KEY: &str = "password";
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(KEY) {
        // `password` or `sslpassword`, not part of a longer word.
        let prefix = format!("{out}{}", &rest[..i]);
        let prefix = prefix.strip_suffix("ssl").unwrap_or(&prefix);
        let before_ok = prefix
            .chars()
            .last()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        out.push_str(&rest[..i + KEY.len()]);
        rest = &rest[i + KEY.len()..];
        let after = rest.trim_start();
        let Some(value) = after.strip_prefix('=').filter(|_| before_ok) else {
            continue;
        };
        let value = value.trim_start();
        out.push_str("=***");
        // In a URI query a value ends at '&' or '#'; in key=value form only at a blank.
        let in_query = prefix.ends_with(['?', '&']);
        rest = &value[value_len(value, in_query)..];
    }
    out.push_str(rest);
    redact_encoded_keys(&out)
}

/// URI query parameters whose percent-encoded name is `password` or `sslpassword`
/// (`?pass%77ord=x`): their values become `***`.
fn redact_encoded_keys(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(['?', '&']) {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let key_end = rest
            .find(|c: char| c == '=' || c == '&' || c == '#' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        let secret = key.contains('%')
            && percent_decode(key).is_ok_and(|k| k == "password" || k == "sslpassword");
        if secret && rest[key_end..].starts_with('=') {
            out.push_str(key);
            out.push_str("=***");
            let value = &rest[key_end + 1..];
            rest = &value[value_len(value, true)..];
        }
    }
    out.push_str(rest);
    out
}

/// Length of a value at the start of `v`: quoted (with backslash escapes) up to its closing
/// quote, else up to a blank (and, `in_query`, a `&`, `#` or `"`).
fn value_len(v: &str, in_query: bool) -> usize {
    let mut chars = v.char_indices();
    if v.starts_with('\'') {
        chars.next();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '\'' => return i + 1,
                _ => {}
            }
        }
        return v.len();
    }
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            c if c.is_whitespace() || (in_query && "&#\"".contains(c)) => return i,
            _ => {}
        }
    }
    v.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(s: &str) -> Vec<(String, String)> {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn key_value_strings_parse_as_libpq_parses_them() {
        assert_eq!(
            kv("host=h  sslmode = require port= 5433 user =me"),
            pairs(&[
                ("host", "h"),
                ("sslmode", "require"),
                ("port", "5433"),
                ("user", "me")
            ])
        );
        assert_eq!(
            kv(r"password='it\'s' dbname='my db' options='-c x=\'y\'' application_name=a\ b"),
            pairs(&[
                ("password", "it's"),
                ("dbname", "my db"),
                ("options", "-c x='y'"),
                ("application_name", "a b")
            ])
        );
        assert_eq!(kv(r"password='a\\b\'c'"), pairs(&[("password", r"a\b'c")]));
        assert_eq!(kv("  "), pairs(&[]));
        for (bad, want) in [
            ("host=h sslmode", "missing \"=\" after a word"),
            ("host=h password='hunter2", "unterminated quoted string"),
            ("host=h bogus=1", "invalid connection option \"bogus\""),
            ("host=h sslcrl=x", "does not support"),
            ("mysql://h/db", "postgres://"),
        ] {
            let e = parse(bad).expect_err(bad).to_string();
            assert!(e.contains(want), "{bad}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn uris_parse_as_libpq_parses_them() {
        assert_eq!(
            kv("postgresql://me:p%40ss@db.example:5433/app%20db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem"),
            pairs(&[
                ("user", "me"),
                ("password", "p@ss"),
                ("host", "db.example"),
                ("port", "5433"),
                ("dbname", "app db"),
                ("sslmode", "verify-full"),
                ("sslrootcert", "/tmp/ca.pem")
            ])
        );
        assert_eq!(
            kv("postgres://[::1]:5432,h2/db?ssl=true&password=x"),
            pairs(&[
                ("host", "::1,h2"),
                ("port", "5432,"),
                ("dbname", "db"),
                ("sslmode", "require"),
                ("password", "x")
            ])
        );
        assert_eq!(kv("postgres://"), pairs(&[]));
        assert_eq!(
            kv("postgres://%2Fvar%2Frun?user=u"),
            pairs(&[("host", "/var/run"), ("user", "u")])
        );
    }

    #[test]
    fn bad_percent_encoding_is_refused_not_a_panic() {
        for bad in [
            "postgres://h/db?sslrootcert=/x/%aé.pem",
            "postgres://h/db?sslrootcert=/x/%é.pem",
            "postgres://h/db?sslrootcert=%",
            "postgres://h/db?sslrootcert=%2",
            "postgres://h/%00",
            "postgres://h/%ff",
        ] {
            let e = parse(bad).expect_err(bad).to_string();
            assert!(e.contains("the target URL"), "{bad}: {e}");
        }
        let e = parse("postgres://u:hunter2%zz@h/db")
            .expect_err("bad password")
            .to_string();
        assert!(e.contains("password") && !e.contains("hunter2"), "{e}");
        let e = parse("postgres://h/db?password=a=hunter2")
            .expect_err("extra =")
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn redact_hides_passwords_in_every_form() {
        for (s, want) in [
            ("postgres://me:hunter2@h/db", "postgres://me:***@h/db"),
            ("postgres://me@h/db", "postgres://me@h/db"),
            (
                "postgres://me@h/db?sslmode=require&password=hunter2&x=1",
                "postgres://me@h/db?sslmode=require&password=***&x=1",
            ),
            (
                "host=h password=hunter2 user=u",
                "host=h password=*** user=u",
            ),
            (
                "host=h password = 'hun ter2' user=u",
                "host=h password=*** user=u",
            ),
            (r"password='a\'b hunter2'", "password=***"),
            (
                "--target=host=h password=hunter2",
                "--target=host=h password=***",
            ),
            ("postgres://me:hun@ter2@h/db", "postgres://me:***@h/db"),
            (
                "2 | target = \"postgres://u:hunter2@h/db",
                "2 | target = \"postgres://u:***@h/db",
            ),
            (
                "passwordless=1 sslpassword=x",
                "passwordless=1 sslpassword=***",
            ),
            ("xpassword=x", "xpassword=x"),
            ("password", "password"),
            ("é password=é", "é password=***"),
        ] {
            assert_eq!(redact(s), want, "{s}");
        }
    }

    #[test]
    fn redact_hides_what_the_review_found() {
        for (s, secret) in [
            ("postgres://postgres:hun?ter2@127.0.0.1:5432/db", "ter2"),
            ("postgres://u:pa'ss ter2@h/db", "ter2"),
            ("postgres://u:pa\"ter2@h/db", "ter2"),
            ("postgres://u@h/db?pass%77ord=hunter2&x=1", "hunter2"),
            ("postgres://u@h/db?sslpass%77ord=hunter2", "hunter2"),
            ("host=h password=hun&ter2 user=u", "ter2"),
            ("host=h password=hun#ter2", "ter2"),
            ("target = \"postgres://u:hun?ter2@h/db", "ter2"),
        ] {
            let r = redact(s);
            assert!(!r.contains(secret), "{s} -> {r}");
            assert!(r.contains("***"), "{s} -> {r}");
        }
        // What follows a query password is kept.
        assert_eq!(
            redact("postgres://u@h/db?pass%77ord=x&sslmode=require"),
            "postgres://u@h/db?pass%77ord=***&sslmode=require"
        );
    }

    #[test]
    fn parse_errors_quote_no_word_of_a_password() {
        for t in [
            "host=h password=correct horse battery",
            "postgres://u@h/db?password%3Dhunter2",
        ] {
            let e = parse(t).expect_err("refused").to_string();
            for w in ["horse", "battery", "hunter2"] {
                assert!(!e.contains(w), "{t}: {e}");
            }
        }
    }
}
