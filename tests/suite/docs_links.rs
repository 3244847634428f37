//! The manual cannot rot: every relative link in README.md and docs/*.md leads to a file that
//! exists, every `#anchor` to a heading of its target (GitHub's slugs), and every flag of
//! every subcommand (as its `--help` snapshot lists them) is in that subcommand's flag table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Which manual page holds each subcommand's flag table (tests/snapshots/<name>-help.txt).
const FLAG_TABLES: &[(&str, &str)] = &[
    ("migrate", "docs/migrating.md"),
    ("verify", "docs/checking.md"),
    ("status", "docs/operating.md"),
    ("schema", "docs/operating.md"),
    ("sample", "docs/operating.md"),
    ("completions", "docs/operating.md"),
    ("finish", "docs/cutover.md"),
    ("", "docs/operating.md"),
];

/// Where the flags every subcommand takes (`--config`, `--verbose`, ...) are documented.
const COMMON_FLAGS: &str = "docs/operating.md";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and docs/*.md, as paths relative to the repository.
fn manual(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("read docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| p.strip_prefix(root).expect("under the root").to_path_buf())
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The text of a Markdown file outside fenced code blocks, line by line, with inline code
/// spans blanked out (links and headings inside code are not links or headings); headings
/// keep their code spans' text, as GitHub's slugs do.
fn prose_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match fence {
            Some(f) if trimmed.starts_with(f) => fence = None,
            Some(_) => {}
            None if trimmed.starts_with("```") => fence = Some("```"),
            None if trimmed.starts_with("~~~") => fence = Some("~~~"),
            None => out.push((n + 1, line.to_string())),
        }
    }
    out
}

fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
            out.push(' ');
        } else if !in_code {
            out.push(c);
        } else {
            out.push(' ');
        }
    }
    out
}

/// GitHub's anchor for a heading: lower-case, punctuation other than `-` and `_` dropped,
/// spaces turned into `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// Every anchor of a Markdown text; a repeated heading gets `-1`, `-2` ... as on GitHub.
fn anchors(text: &str) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let n = seen.entry(base.clone()).or_insert(0);
        out.push(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// The `(target)` of every inline link `[text](target)` in the prose, with its line number.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose_lines(text) {
        let line = without_code_spans(&line);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].split_whitespace().next().unwrap_or("");
            out.push((n, target.to_string()));
            rest = &after[end..];
        }
    }
    out
}

/// The broken links of the manual under `root`: one line each, `file:line: target: why`.
fn broken_links(root: &Path, files: &[PathBuf], allowed_missing: &[&str]) -> Vec<String> {
    let mut broken = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(root.join(file)).expect("read a manual page");
        let dir = file.parent().unwrap_or(Path::new(""));
        for (n, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let at = format!("{}:{n}: {target}", file.display());
            let linked = if path.is_empty() {
                file.clone()
            } else {
                normalize(&dir.join(path))
            };
            let full = root.join(&linked);
            if !full.exists() {
                let name = linked.to_string_lossy().replace('\\', "/");
                if !allowed_missing.contains(&name.as_str()) {
                    broken.push(format!("{at}: no file {}", linked.display()));
                }
                continue;
            }
            let Some(anchor) = anchor else { continue };
            let is_md = full.extension().is_some_and(|e| e == "md");
            let have = if is_md {
                anchors(&std::fs::read_to_string(&full).expect("read a linked page"))
            } else {
                Vec::new()
            };
            if !have.iter().any(|a| a == anchor) {
                broken.push(format!(
                    "{at}: no heading #{anchor} in {}",
                    linked.display()
                ));
            }
        }
    }
    broken
}

/// `docs/../README.md` as `README.md` (without touching the file system).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

#[test]
fn docs_links_lead_to_files_and_headings() {
    let root = root();
    let files = manual(&root);
    assert!(files.len() > 5, "the manual: {files:?}");
    let broken = broken_links(&root, &files, &[]);
    assert!(
        broken.is_empty(),
        "broken links in the manual:\n{}",
        broken.join("\n")
    );
}

#[test]
fn docs_links_checker_finds_broken_links() {
    let dir = std::env::temp_dir().join(format!("ddb2pg-docs-links-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("docs")).expect("temp docs/");
    std::fs::write(
        dir.join("README.md"),
        "# Top\n\nSee [a](docs/a.md#the-part-_one), [b](docs/b.md), [c](docs/a.md#nowhere), \
         [d](#top), [e](https://example.com/x.md) and [f](docs/gone.md).\n\
         `[code](docs/nothing.md)`\n```\n[fenced](docs/nothing.md)\n```\n",
    )
    .expect("write README");
    std::fs::write(
        dir.join("docs/a.md"),
        "# A\n\n## The part: `_one`!\n\n[up](../README.md#top) [dup](#a-1)\n\n# A\n",
    )
    .expect("write a.md");
    let files = manual(&dir);
    let broken = broken_links(&dir, &files, &["docs/gone.md"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        broken,
        [
            "README.md:3: docs/b.md: no file docs/b.md",
            "README.md:3: docs/a.md#nowhere: no heading #nowhere in docs/a.md",
        ],
        "{broken:#?}"
    );
}

/// The long flags a `--help` snapshot lists (in its options, not in its examples).
fn flags_of(help: &str) -> Vec<String> {
    help.lines()
        .take_while(|l| !l.starts_with("Examples"))
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix('-')
                .filter(|r| r.chars().next().is_some_and(|c| c.is_ascii_alphabetic()))
                .and_then(|r| r.get(3..))
                .unwrap_or(l);
            let name: String = l
                .strip_prefix("--")?
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            (!name.is_empty()).then(|| format!("--{name}"))
        })
        .collect()
}

/// Whether a table row of `text` names `flag` in code (`--flag`, not `--flag-more`).
fn in_a_table(text: &str, flag: &str) -> bool {
    let quoted = format!("`{flag}");
    text.lines()
        .filter(|l| l.trim_start().starts_with('|'))
        .any(|l| {
            l.match_indices(&quoted).any(|(at, _)| {
                l[at + quoted.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| !(c.is_ascii_alphanumeric() || c == '-'))
            })
        })
}

#[test]
fn docs_flag_tables_list_every_flag() {
    let root = root();
    let common = std::fs::read_to_string(root.join(COMMON_FLAGS)).expect("read common page");
    let mut missing = Vec::new();
    for (sub, page) in FLAG_TABLES {
        let snapshot = if sub.is_empty() {
            "help".to_string()
        } else {
            format!("{sub}-help")
        };
        let help = std::fs::read_to_string(root.join(format!("tests/snapshots/{snapshot}.txt")))
            .expect("read a help snapshot");
        let text = std::fs::read_to_string(root.join(page)).expect("read a manual page");
        let flags = flags_of(&help);
        assert!(!flags.is_empty() || sub.is_empty(), "{snapshot}: no flags?");
        for flag in flags {
            if !in_a_table(&text, &flag) && !in_a_table(&common, &flag) {
                missing.push(format!("ddb2pg {sub} {flag}: not in a table of {page}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "flags missing from the manual:\n{}",
        missing.join("\n")
    );
}
