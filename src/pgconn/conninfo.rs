//! libpq connection strings, parsed as libpq parses them: `postgres[ql]://` URIs (percent-decoded
//! user, password, hosts, ports, database and `?key=value&...` parameters) and `key = value`
//! strings (blanks around `=`, single-quoted values, backslash escapes). Unknown keywords are
//! refused, as libpq refuses them.
//!
//! Error messages never contain a password or a piece of one: they name the keyword, not its
//! value. Where libpq would read part of a password as something else, the target is refused
//! and nothing of it quoted: a URI with an unencoded `@` after its credentials' `@` (libpq ends
//! the password at the first `@`, making the rest a host or port; an `@` in the database name
//! after the credentials is the name's) or a `/` in the password (libpq then finds no
//! credentials at all), and an unknown keyword right after an unquoted password
//! (`password=two words=x`, `password="two words"`: libpq quotes with single quotes only).

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
    if s.starts_with("postgresql://") || s.starts_with("postgres://") {
        let params = parse_uri(s)?;
        for (k, _) in &params {
            check_keyword(k)?;
        }
        Ok(params)
    } else if s.contains("://") {
        Err(Error::config(
            "the target URL must start with postgres:// or postgresql://",
        ))
    } else {
        parse_kv(s)
    }
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

/// An unknown word right after an unquoted password may be the password's next word
/// (`password=two words=x`, or `password="two words"`, libpq quoting with single quotes
/// only): refused without quoting it.
fn check_keyword_after(k: &str, previous: Option<&(String, String, bool)>) -> Result<()> {
    let after_bare_password = previous.is_some_and(|(pk, _, quoted)| {
        !quoted && (pk.eq_ignore_ascii_case("password") || pk.eq_ignore_ascii_case("sslpassword"))
    });
    match check_keyword(k) {
        Err(_) if after_bare_password => Err(Error::config(
            "an invalid connection option follows the password in the target: is the password \
             more than one word? A value with blanks goes in single quotes ('two words', a \
             quote inside as \\'); double quotes are not quotes in a connection string",
        )),
        other => other,
    }
}

/// `key = value ...` as libpq's conninfo_parse reads it; every keyword checked.
fn parse_kv(s: &str) -> Result<Params> {
    // (key, value, whether the value was single-quoted)
    let mut out: Vec<(String, String, bool)> = Vec::new();
    let mut it = s.chars().peekable();
    loop {
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        if it.peek().is_none() {
            return Ok(out.into_iter().map(|(k, v, _)| (k, v)).collect());
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
                 pairs; a value with blanks goes in single quotes, 'two words'; double \
                 quotes are not quotes in a connection string)",
            ));
        }
        check_keyword_after(&key, out.last())?;
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        let quoted = it.next_if_eq(&'\'').is_some();
        if quoted {
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
        out.push((key, value, quoted));
    }
}

/// `postgres://[user[:password]@][host][:port][,...][/dbname][?key=value&...]` as libpq's
/// conninfo_uri_parse reads it.
fn parse_uri(s: &str) -> Result<Params> {
    let mut out = Vec::new();
    let rest = s.split_once("://").map_or("", |(_, r)| r);
    check_at_signs(rest)?;
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
    if !ports
        .split(',')
        .all(|p| p.bytes().all(|b| b.is_ascii_digit()))
    {
        // Not quoted: with a '/' in the password, libpq finds no credentials and reads the
        // user name as the host and the password's start as the port.
        return Err(Error::config(format!(
            "a port of the target URL is not a number (1-65535); {ENCODE_HINT}"
        )));
    }
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

const ENCODE_HINT: &str = "a user name, password or database name holding \"@\", \"/\" or \
     \"%\" must be percent-encoded (@ as %40, / as %2F, % as %25)";

/// libpq ends the credentials at the first `@` before any `/`. An unencoded `@` after that
/// (before the query) means a password (or user name) holding `@` or `/`, whose rest libpq
/// would read as a host, port or database name and show: refused, quoting nothing of it.
/// Except an `@` in the database name of a URI with credentials, when no `/` follows it
/// (`postgres://u@h/db@x`: libpq's database `db@x`; `u@x:5/MARK@h/db` is a password with `/`).
/// Without credentials (`postgres://h:5/db@x`) it cannot be told from a password with a `/`
/// (`postgres://u:5/MARK@h`): refused.
fn check_at_signs(rest: &str) -> Result<()> {
    let (credentials, after) = match rest.find(['@', '/']) {
        Some(at) if rest.as_bytes()[at] == b'@' => (true, &rest[at + 1..]),
        _ => (false, rest),
    };
    let before_query = after.split('?').next().unwrap_or(after);
    let (netloc, path) = before_query.split_once('/').unwrap_or((before_query, ""));
    let in_path = path
        .rfind('@')
        .is_some_and(|at| !credentials || path[at..].contains('/'));
    if netloc.contains('@') || in_path {
        return Err(Error::config(format!(
            "the target URL has an \"@\" in its host, port or database name; {ENCODE_HINT}"
        )));
    }
    Ok(())
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

    #[test]
    fn a_password_libpq_would_split_is_refused_quoting_nothing() {
        for (t, want, secrets) in [
            (
                "postgres://u:S3cr@tPart:Tail99@h/db",
                "%40",
                &["S3cr", "tPart", "Tail99"][..],
            ),
            ("postgres://u:p@ssTAIL@h:5432/db", "%40", &["ssTAIL"]),
            ("postgres://u:S3cr/MARK@h/db", "%2F", &["S3cr", "MARK"]),
            ("postgres://u:5432/MARK@h/db", "%2F", &["MARK"]),
            ("postgres://u:S3cr?x/MARK@h/db", "%2F", &["S3cr", "MARK"]),
            // A user name with an '@' and a password with a '/': libpq would read "5" as the
            // port and "MARK@h/db" as the database.
            ("postgres://u@x:5/MARK@h/db", "%2F", &["MARK"]),
            ("postgres://u:5/MARK@h", "%2F", &["MARK"]),
            ("postgres://u:S3?MARK@h@x/db", "%40", &["MARK"]),
            (
                "host=h password=S3cr3t MARK=1",
                "single quotes",
                &["S3cr3t", "MARK"],
            ),
            (
                "host=h password=\"S3cr3t w=MARK\"",
                "single quotes",
                &["S3cr3t", "MARK"],
            ),
            (
                "host=h password=\"S3cr3t MARK\"",
                "single quotes",
                &["S3cr3t", "MARK"],
            ),
            (
                "host=h sslpassword=S3cr3t MARK=1",
                "does not support",
                &["S3cr3t", "MARK"],
            ),
        ] {
            let e = parse(t).expect_err(t).to_string();
            assert!(e.contains(want), "{t}: {e}");
            for secret in secrets {
                assert!(!e.contains(secret), "{t}: {e}");
            }
        }
        // An '@' of a query value (user@server), an encoded one, and a quoted password
        // followed by a misspelt keyword (named: it cannot be part of the password).
        assert_eq!(
            kv("postgres://h/db?user=me@srv"),
            pairs(&[("host", "h"), ("dbname", "db"), ("user", "me@srv")])
        );
        assert_eq!(
            kv("postgres://u:S3cr%40t%2FPart@h/db"),
            pairs(&[
                ("user", "u"),
                ("password", "S3cr@t/Part"),
                ("host", "h"),
                ("dbname", "db")
            ])
        );
        // An '@' in the database name after the credentials, as libpq reads it.
        assert_eq!(
            kv("postgres://postgres@127.0.0.1:42041/db@x"),
            pairs(&[
                ("user", "postgres"),
                ("host", "127.0.0.1"),
                ("port", "42041"),
                ("dbname", "db@x")
            ])
        );
        assert_eq!(
            kv("postgres://u:pw@h/d@b?user=me@srv"),
            pairs(&[
                ("user", "u"),
                ("password", "pw"),
                ("host", "h"),
                ("dbname", "d@b"),
                ("user", "me@srv")
            ])
        );
        let e = parse("host=h password='two words' sslmdoe=require").expect_err("typo");
        assert!(e.to_string().contains("\"sslmdoe\""), "{e}");
    }
}
