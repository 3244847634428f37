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
//! - URI query parameters whose percent-encoded name is `password` or `sslpassword`;
//! - a `postgres[ql]://` URI whose line or word runs on past 4 kB: all that follows it (so
//!   that a long line of many URIs costs linear time).

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
        let scheme = rest[..i].to_ascii_lowercase();
        let postgres = scheme.ends_with("postgres") || scheme.ends_with("postgresql");
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        // What the rules read: a prefix of `rest`, so their offsets are `rest`'s.
        let text = match postgres {
            false => rest,
            true => match reach(rest) {
                Some(text) => text,
                None => {
                    out.push_str("***");
                    return out;
                }
            },
        };
        if let Some((colon, at)) = postgres.then(|| across_lines(text)).flatten() {
            out.push_str(&rest[..colon + 1]);
            out.push_str("***");
            rest = &rest[at..];
            continue;
        }
        let scope = &text[..scope_end(text, postgres)];
        if let Some((colon, at)) = credentials(scope) {
            out.push_str(&rest[..colon + 1]);
            out.push_str("***");
            rest = &rest[at..];
        }
    }
    out.push_str(rest);
    out
}

/// How far past its `://` a `postgres[ql]://` URI is read (see [`reach`]).
const REACH: usize = 4096;

/// The text in which the rules read the `postgres[ql]://` URI at the start of `rest` (after
/// its `://`): `rest` when short; else its first [`REACH`] bytes when the URI's word, line and
/// scope ([`across_lines`], [`scope_end`]) end within them, so that the rules read there what
/// they would read in the whole; else None, and the caller hides all the rest (a line or word
/// that long is not a target's: hide more). So each URI costs at most `REACH`, and a long line
/// of many URIs (text quoted from the source's data) is redacted in linear time, not in the
/// square of its length.
fn reach(rest: &str) -> Option<&str> {
    if rest.len() <= REACH {
        return Some(rest);
    }
    let mut end = REACH;
    while !rest.is_char_boundary(end) {
        end -= 1;
    }
    let text = &rest[..end];
    text.find([' ', '\t', '\'', '"', '`'])?;
    let first = text.find(['\n', '\r'])?;
    if !text[..first].contains(['@', '/']) {
        let at = text.find(['@', '/'])?;
        text[at..].find(['\n', '\r'])?;
    }
    Some(text)
}

/// A `postgres[ql]://` argument spanning line breaks (a quoted argument may hold them, and a
/// password with one is echoed whole by a usage error): its word runs to the first blank or
/// quote, and its credentials from the first `:` to the word's LAST `@`, wherever the lines
/// break. None when the word has no line break (the line rules apply) or no credentials.
fn across_lines(rest: &str) -> Option<(usize, usize)> {
    let word = &rest[..rest.find([' ', '\t', '\'', '"', '`']).unwrap_or(rest.len())];
    if !word.contains(['\n', '\r']) {
        return None;
    }
    let (colon, at) = (word.find(':')?, word.rfind('@')?);
    (colon < at).then_some((colon, at))
}

/// Where the URI at the start of `rest` (after its `://`) may end. Another scheme's URI: at the
/// next `://` or line end. A `postgres[ql]://` URI's password may hold `://` (libpq reads it as
/// part of the password) and, in a quoted argument, line breaks: its scope is its line, and
/// when that line holds neither `@` nor `/` (the credentials are not closed on it), up to the
/// end of the line holding the next `@` or `/`.
fn scope_end(rest: &str, postgres: bool) -> usize {
    let line_end = |from: usize| {
        rest[from..]
            .find(['\n', '\r'])
            .map_or(rest.len(), |e| from + e)
    };
    if !postgres {
        let next = rest.find("://").unwrap_or(rest.len());
        return rest[..next].find(['\n', '\r']).unwrap_or(next);
    }
    let first = line_end(0);
    if rest[..first].contains(['@', '/']) {
        return first;
    }
    rest.find(['@', '/']).map_or(first, line_end)
}

/// In a URI's scope (the text after `://`): the byte offsets of the `:` that starts a password
/// and of the `@` that ends it, if the URI has one.
///
/// The credentials end at the last `@` before the path's `/` (a blank, quote or `?` may be part
/// of the password). A password with a `/` makes that `/` look like the path's: its end is then
/// an `@` of the "path" (before the query, or followed by a host and `/database`), up to a blank
/// or quote. An `@` in a path followed by no `/`, after an authority holding the credentials'
/// `@`, is the database name's (libpq reads it so). At worst more than the password is hidden.
fn credentials(scope: &str) -> Option<(usize, usize)> {
    let auth_end = scope.find('/').unwrap_or(scope.len());
    let tail = &scope[auth_end..];
    let tail = &tail[..tail
        .find(|c: char| c == '"' || c == '\'' || c.is_whitespace())
        .unwrap_or(tail.len())];
    let path_end = tail.find('?').unwrap_or(tail.len());
    let path = &tail[..path_end];
    let reach = match path.rfind('@') {
        Some(at) if scope[..auth_end].contains('@') && !path[at..].contains('/') => None,
        Some(_) => Some(path_end),
        None => tail
            .rfind('@')
            .filter(|&at| tail[at..].contains('/'))
            .map(|at| at + 1),
    };
    let region = &scope[..auth_end + reach.unwrap_or(0)];
    let (at, colon) = (region.rfind('@')?, region.find(':')?);
    (colon < at).then_some((colon, at))
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

/// Length of a value at the start of `v`: single-quoted up to its closing quote
/// ([`quoted_len`]); else up to a blank (and, `in_query`, a `&` or `#`) that no backslash
/// escapes ([`unquoted_len`]). A double quote ends the value when it closes an enclosing string
/// (the value's last character, or before `,;)}]`); anywhere else it is part of a value libpq
/// reads differently than it looks (libpq quotes with single quotes only): the rest of the line
/// is hidden.
fn value_len(v: &str, in_query: bool) -> usize {
    if let Some(quoted) = v.strip_prefix('\'') {
        return 1 + quoted_len(quoted);
    }
    let end = unquoted_len(v, in_query);
    let token = &v[..end];
    match token.find('"') {
        None => end,
        Some(q) if q > 0 && token[q + 1..].chars().all(|c| ",;)}]\"".contains(c)) => q,
        Some(_) => v.find(['\n', '\r']).unwrap_or(v.len()),
    }
}

/// Backslashes may be libpq's escapes (`\'` a quote, `\\` a backslash) or doubled by the
/// formatting around the value (`{:?}`, JSON: a raw `\'` shows as `\\'`). After an odd run of
/// backslashes a character is escaped either way. After an even run it is not in raw text but
/// may be in formatted text: there a value does not end (hide more).
///
/// The rest of a single-quoted value (after its opening quote), up to and with its closing
/// quote. A quote after an even run of backslashes leaves the end unsure: the value then ends
/// at the next quote after no backslash, or where a formatted string would end (a double quote
/// after no odd run, a line break), or at the end of the text.
fn quoted_len(v: &str) -> usize {
    let (mut run, mut unsure) = (0, false);
    for (i, c) in v.char_indices() {
        match c {
            '\\' => {
                run += 1;
                continue;
            }
            _ if run % 2 == 1 => {}
            '\'' if run > 0 => unsure = true,
            '\'' => return i + 1,
            '"' | '\n' | '\r' if unsure => return i,
            _ => {}
        }
        run = 0;
    }
    v.len()
}

/// An unquoted value's length: up to a line break, or a blank (`in_query`: also `&`, `#`) after
/// no backslash (after an even run it may be an escaped blank of formatted text: hide more).
fn unquoted_len(v: &str, in_query: bool) -> usize {
    let mut run = 0;
    for (i, c) in v.char_indices() {
        match c {
            '\\' => {
                run += 1;
                continue;
            }
            _ if run % 2 == 1 => {}
            '\n' | '\r' => return i,
            c if c.is_whitespace() && run == 0 => return i,
            '&' | '#' if in_query => return i,
            _ => {}
        }
        run = 0;
    }
    v.len()
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
            // A "://" in the password does not start another URI; a quoted argument may hold
            // a line break.
            (
                "error: unexpected argument 'postgres://u:a://bS3cr3t@h/db' found",
                &["bS3cr3t"],
            ),
            ("postgresql://u:x://y://S3cr3tZ@h/db", &["y:", "S3cr3tZ"]),
            ("postgres://u:aS3C\nR3Tb@h/db", &["aS3C", "R3Tb"]),
            (
                "postgres://u:aS3C\r\nMA\nR3Tb@h/db",
                &["aS3C", "MA", "R3Tb"],
            ),
            // A line break after a `/` or `@` of the password: the word's last `@` ends it.
            ("postgres://u:a/bS3\ncr9@h/db", &["bS3", "cr9"]),
            ("postgres://u:a@bS3\ncr9@h/db", &["bS3", "cr9"]),
            (
                "error: unexpected argument 'postgres://u:a/bS3\ncr9@h/db' found",
                &["bS3", "cr9"],
            ),
            // Backslashes doubled by JSON or `{:?}`: `\\ ` may be an escaped blank.
            (r"host=h password=SE\\ CRET", &["SE", "CRET"]),
            (
                r#""target": "host=h password='a\\' bS3cr3t'""#,
                &["bS3cr3t"],
            ),
            (r"host=h password='a\\' bS3cr3t", &["bS3cr3t"]),
        ] {
            let r = redact(s);
            for secret in secrets {
                assert!(!r.contains(secret), "{s} -> {r}");
            }
        }
    }

    /// Targets as `{:?}` and JSON show them (backslashes doubled, quotes escaped): the
    /// password is hidden in the escaped text as in the raw one.
    #[test]
    fn escaped_text_hides_the_password_too() {
        for (raw, secrets) in [
            (r"host=h password='a\' bS3cr3t' user=u", &["bS3cr3t"][..]),
            (r"host=h password=SE\ CR3T user=u", &["SE", "CR3T"]),
            (r"host=h password='a\\\' S3c\\' MARK'", &["S3c", "MARK"]),
            (r"host=h password=a\\\ S3c\ MARK", &["S3c", "MARK"]),
            ("host=h password='S3c\nMARK'", &["S3c", "MARK"]),
            ("postgres://u:S3c\nMARK@h/db", &["S3c", "MARK"]),
        ] {
            let debug = format!("{raw:?}");
            let json = serde_json::json!({ "target": raw, "n": 1 }).to_string();
            for s in [raw.to_string(), debug, json] {
                let r = redact(&s);
                for secret in secrets {
                    assert!(!r.contains(secret), "{s} -> {r}");
                }
            }
        }
        // What follows the escaped string is kept.
        assert_eq!(
            redact(&serde_json::json!({ "target": r"password='a\' b'", "n": 1 }).to_string()),
            r#"{"n":1,"target":"password=***"}"#
        );
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
            // An '@' in the database name of a URI whose credentials hold no password.
            "postgres://postgres@127.0.0.1:42041/db@x",
            "postgres://postgres@127.0.0.1:42041/db@x?user=me@srv",
            // Other URIs on the line, on the next line.
            "see postgres://u@h/db and https://me@example.com/a:b",
            "postgres://h:5432\nnext line",
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

    /// Many URIs on one long line (text quoted from the source's data): each is read within a
    /// bounded reach, not to the end of the line (which took minutes for 100 kB); a URI whose
    /// line or word is longer than that reach hides all that follows.
    #[test]
    fn many_uris_on_one_long_line_are_redacted_in_linear_time() {
        for s in [
            "postgres://u:p@h/@".repeat(6_000),
            "postgres://u:p@h/@ x".repeat(5_000),
            "postgres://u:p@h/@ x\n".repeat(5_000),
        ] {
            let started = std::time::Instant::now();
            let r = redact(&s);
            let took = started.elapsed();
            assert!(!r.contains(":p@"), "{}", &r[..200]);
            assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
            eprintln!("redacted {} bytes of URIs in {took:?}", s.len());
        }
        for s in [
            format!("postgres://u:{}S3cr3tMARK@h/db", "a".repeat(5_000)),
            format!("postgres://u:a b{}S3cr3tMARK@h/db x", "a".repeat(5_000)),
            format!("postgres://u:a\nb{}S3cr3tMARK@h/db x", "a".repeat(5_000)),
            format!(
                "x postgres://u@h/db?x={} S3cr3tMARK@h/db",
                "a".repeat(5_000)
            ),
        ] {
            assert!(!redact(&s).contains("S3cr3tMARK"));
        }
        // A long line after a URI whose line ends within the reach is kept.
        let s = format!("postgres://u:pw@h/db x\n{}", "b ".repeat(5_000));
        assert_eq!(
            redact(&s),
            format!("postgres://u:***@h/db x\n{}", "b ".repeat(5_000))
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
