//! The one redaction: every text shown to the user that may hold a target or a settings value
//! passes through [`redact`] (error messages, usage errors, the resume line, logs, the report,
//! `status`, the displayed target). It works on text, not on parsed targets, so it also hides
//! passwords in text that does not parse, and its rules err on the side of hiding more:
//!
//! - a URI's `user:password@` up to the LAST `@` of its authority (and of its path when the
//!   path holds an `@`: a password with an unencoded `/`), so an unencoded `@`, `/`, `?`, blank or
//!   quote in the password hides more than the password, never less;
//! - every `password = value` and `sslpassword = value`, any case, blanks around `=`: a
//!   single-quoted value (backslash escapes) to its closing quote; a value holding a double quote
//!   anywhere but at its end (libpq's quotes are single, so `password="two words"` is two words)
//!   to the end of the line; else to the next blank (in a URI query also `&` or `#`);
//! - URI query parameters whose percent-encoded name is `password` or `sslpassword`.

use super::conninfo::percent_decode;

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
        // This URI: up to the next one or the end of its line.
        let next = rest.find("://").unwrap_or(rest.len());
        let scope_end = rest[..next].find(['\n', '\r']).unwrap_or(next);
        let scope = &rest[..scope_end];
        // The credentials end at the last '@' before the path's '/' (a blank, quote or '?' may
        // be part of the password). A password with a '/' makes that '/' look like the path's:
        // its end is then an '@' of the "path" (before the query, or followed by a host and
        // '/database'), up to a blank or quote. At worst more than the password is hidden.
        let auth_end = scope.find('/').unwrap_or(scope.len());
        let tail = &scope[auth_end..];
        let tail = &tail[..tail
            .find(|c: char| c == '"' || c == '\'' || c.is_whitespace())
            .unwrap_or(tail.len())];
        let path_end = tail.find('?').unwrap_or(tail.len());
        let reach = match tail[..path_end].contains('@') {
            true => Some(path_end),
            false => tail
                .rfind('@')
                .filter(|&at| tail[at..].contains('/'))
                .map(|at| at + 1),
        };
        let region = &scope[..auth_end + reach.unwrap_or(0)];
        if let (Some(at), Some(colon)) = (region.rfind('@'), region.find(':')) {
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

/// Every `password = value` and `sslpassword = value` (any case) -> `password=***`.
fn redact_keyword(s: &str) -> String {
    const KEY: &str = "password";
    // ASCII lower case keeps every byte offset of `s`.
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut pos = 0;
    while let Some(i) = lower[pos..].find(KEY).map(|i| pos + i) {
        // `password` or `sslpassword`, not part of a longer word.
        let before = match lower[..i].ends_with("ssl") {
            true => &s[..i - 3],
            false => &s[..i],
        };
        let before_ok = before
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        let key_end = i + KEY.len();
        out.push_str(&s[pos..key_end]);
        pos = key_end;
        let Some(value) = s[key_end..]
            .trim_start()
            .strip_prefix('=')
            .filter(|_| before_ok)
        else {
            continue;
        };
        let value = value.trim_start();
        out.push_str("=***");
        // In a URI query a value ends at '&' or '#'; in key=value form only at a blank.
        let in_query = before.ends_with(['?', '&']);
        pos = s.len() - value.len() + value_len(value, in_query);
    }
    out.push_str(&s[pos..]);
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
            && percent_decode(key)
                .is_ok_and(|k| k.eq_ignore_ascii_case("password") || k == "sslpassword");
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

/// Length of a value at the start of `v`: single-quoted (with backslash escapes) up to its
/// closing quote; else up to a blank (and, `in_query`, a `&` or `#`). A double quote ends the
/// value when it closes an enclosing string (the value's last character, or before `,;)}]`);
/// anywhere else it is part of a value libpq reads differently than it looks (libpq quotes with
/// single quotes only): the rest of the line is hidden.
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
    let mut end = v.len();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            c if c.is_whitespace() || (in_query && "&#".contains(c)) => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let token = &v[..end];
    match token.find('"') {
        None => end,
        Some(q) if q > 0 && token[q + 1..].chars().all(|c| ",;)}]\"".contains(c)) => q,
        Some(_) => v.find(['\n', '\r']).unwrap_or(v.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

#[cfg(test)]
mod shapes {
    use super::redact;

    /// Text in which none of `secrets` may remain after redaction.
    #[test]
    fn no_piece_of_a_password_remains_whatever_its_shape() {
        for (s, secrets) in [
            // libpq's quotes are single: the double-quoted value is two words.
            (
                "host=h password=\"S3cr3t MARK\" user=u",
                &["S3cr3t", "MARK"][..],
            ),
            ("host=h password=\"S3cr3t MARK=x\"", &["S3cr3t", "MARK"]),
            // A settings file's line, its quotes escaped.
            (
                r#"target = "host=h password=\"S3cr3t MARK\"""#,
                &["S3cr3t", "MARK"],
            ),
            ("host=h PASSWORD=S3cr3tMARK", &["S3cr3tMARK"]),
            ("host=h Password = S3cr3tMARK", &["S3cr3tMARK"]),
            (
                "postgres://u@h/db?password=\"S3cr3t MARK\"",
                &["S3cr3t", "MARK"],
            ),
            ("postgres://u@h/db?PASS%57ORD=S3cr3tMARK", &["S3cr3tMARK"]),
            (
                "unexpected argument 'postgres://u:S3cr@tPart:Tail99@h/db' found",
                &["S3cr", "tPart", "Tail99"],
            ),
            (
                "unexpected argument 'postgres://u:S3cr/MARK@h/db' found",
                &["S3cr", "MARK"],
            ),
            (
                "postgres://u:S3cr/MA?RK@h/db?sslmode=disable",
                &["S3cr", "MA", "RK"],
            ),
            ("postgres://u:p@ssTAIL@h:5432/db", &["ssTAIL"]),
        ] {
            let r = redact(s);
            for secret in secrets {
                assert!(!r.contains(secret), "{s} -> {r}");
            }
        }
    }

    #[test]
    fn what_holds_no_password_is_kept() {
        for s in [
            // A user name with an '@' in the query (Azure's user@server).
            "postgres://h:5432/db?user=me@srv&sslmode=require",
            // An '@' later on the line, after the path.
            "cannot connect (postgres://u@h:5432/db): database \"x@y\" does not exist",
            "postgres://me@srv@host:5432/db",
            "-> postgres://postgres@127.0.0.1:5432/db table t",
        ] {
            assert_eq!(redact(s), s);
        }
        // A string's closing quote stays (JSON, a settings file's line).
        assert_eq!(
            redact(r#""target": "host=h password=x","#),
            r#""target": "host=h password=***","#
        );
        assert_eq!(
            redact("\"postgres://u:pw@h/db\"\nx = \"a@b\""),
            "\"postgres://u:***@h/db\"\nx = \"a@b\""
        );
    }

    /// Many occurrences: each is handled once (no copy of the text so far per occurrence).
    #[test]
    fn long_text_is_redacted_in_one_pass() {
        let s = "password=x ".repeat(200_000);
        let started = std::time::Instant::now();
        let r = redact(&s);
        assert_eq!(r.matches("password=***").count(), 200_000);
        assert!(!r.contains('x'));
        eprintln!("redacted {} bytes in {:?}", s.len(), started.elapsed());
    }
}
