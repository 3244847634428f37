//! The documentation's examples are run: a renamed flag or a changed summary line fails the
//! suite instead of misleading a reader.
//!
//! # The convention
//!
//! In `README.md` and `docs/*.md`, a fenced code block whose info string is `console` and whose
//! fence line comes right after a line `<!-- tested -->` is a tested block (HTML comments do not
//! show on a rendered page). In it:
//!
//! - a line starting with `$ ` is a shell command, run with `bash -c`; a command whose line ends
//!   with `\` goes on on the next line;
//! - the lines after it, up to the next `$ ` line or the end of the block, are what it must print,
//!   stdout and stderr together, as a terminal would show them. They are compared with snapbox:
//!   `[..]` in a line stands for any text within that line, a line `...` for any number of lines;
//! - a command must exit 0: to show a failure, print its status (`...; echo "exit $?"`).
//!
//! All the tested blocks of one file run in order in one fresh, empty folder (files made by a
//! command are there for the next, e.g. `checkpoints/`), each command in its own bash (no shell
//! variable or `cd` carries over). The commands get the environment a reader of the quick
//! start has set up, and nothing else of the tester's:
//!
//! | variable | value |
//! | --- | --- |
//! | `PATH` | the folder of the ddb2pg binary under test first |
//! | `AWS_ENDPOINT_URL` | the test DynamoDB Local |
//! | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` | dummies, `us-east-1` |
//! | `DATABASE_URL` | a fresh database on the test PostgreSQL, one per file |
//! | `TABLE` | a table name of its own, one per file |
//!
//! so a tested block uses only those (the services' ports and the names vary: elide them with
//! `[..]`). The table the runner names stands in the output as the documentation's `app`: in
//! the printed text, the value of `TABLE` is replaced by `app` before the comparison.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{clean_env, ddb2pg_exe, new_database, services, temp_dir, unique_name};

/// The marker line before a tested block's fence.
const MARKER: &str = "<!-- tested -->";
/// The name the documentation gives the table.
const DOCS_TABLE: &str = "app";

/// One `$ ` command of a tested block, with what it must print.
#[derive(Debug, PartialEq)]
struct Snippet {
    /// 1-based line of the `$ ` in its file.
    line: usize,
    command: String,
    expected: String,
}

/// The commands of every tested block of a Markdown text, in order.
fn snippets(markdown: &str) -> Vec<Snippet> {
    let mut out: Vec<Snippet> = Vec::new();
    let mut lines = markdown.lines().enumerate().peekable();
    let mut previous = "";
    while let Some((_, line)) = lines.next() {
        let tested = previous.trim() == MARKER && line.trim_end() == "```console";
        previous = line;
        if !tested {
            continue;
        }
        let mut continued = false;
        for (i, line) in lines.by_ref() {
            if line.trim_end() == "```" {
                break;
            }
            if continued {
                let last = out.last_mut().expect("a command before its continuation");
                last.command.push('\n');
                last.command.push_str(line);
                continued = line.ends_with('\\');
            } else if let Some(command) = line.strip_prefix("$ ") {
                continued = command.ends_with('\\');
                out.push(Snippet {
                    line: i + 1,
                    command: command.to_string(),
                    expected: String::new(),
                });
            } else if let Some(last) = out.last_mut() {
                last.expected.push_str(line);
                last.expected.push('\n');
            }
        }
        previous = "```";
    }
    out
}

/// The files whose tested blocks are run: README.md, then docs/*.md in name order.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "md"))
                .collect()
        })
        .unwrap_or_default();
    docs.sort();
    docs.insert(0, root.join("README.md"));
    docs
}

/// The reader's environment (see the module doc) for the commands of one file.
struct Reader {
    dir: PathBuf,
    database_url: String,
    table: String,
}

impl Reader {
    /// Run one command; returns what it printed, the table shown as the documentation's.
    fn run(&self, command: &str) -> std::result::Result<String, String> {
        let bin_dir = Path::new(ddb2pg_exe())
            .parent()
            .expect("the binary's folder");
        let path = std::env::var("PATH").unwrap_or_default();
        let mut c = Command::new("timeout");
        clean_env(&mut c);
        c.args(["300", "bash", "-c"])
            .arg(format!("exec 2>&1\n{command}"))
            .current_dir(&self.dir)
            .env("PATH", format!("{}:{path}", bin_dir.display()))
            .env("AWS_ENDPOINT_URL", &services().endpoint)
            .env("AWS_ACCESS_KEY_ID", "ddb2pglocal")
            .env("AWS_SECRET_ACCESS_KEY", "ddb2pglocal")
            .env("AWS_REGION", "us-east-1")
            .env("DATABASE_URL", &self.database_url)
            .env("TABLE", &self.table)
            .env("PSQLRC", "/dev/null")
            .stdout(Stdio::piped());
        let out = c.output().map_err(|e| format!("cannot run bash: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout).replace(&self.table, DOCS_TABLE);
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("exited with {:?}; it printed:\n{text}", out.status))
        }
    }
}

/// Run the snippets of one file in order, up to the first that fails (the later ones build on
/// it); returns that failure, if any.
fn check(file: &str, snippets: &[Snippet], reader: &Reader) -> Option<String> {
    for (n, s) in snippets.iter().enumerate() {
        let at = format!("{file}:{}: $ {}", s.line, s.command);
        let failure = match reader.run(&s.command) {
            Err(e) => format!("{at}\n{e}"),
            Ok(actual) => {
                let result = snapbox::Assert::new().try_eq(
                    Some(&at),
                    snapbox::Data::text(actual),
                    snapbox::Data::text(s.expected.clone()),
                );
                match result {
                    Ok(()) => continue,
                    Err(e) => e.to_string(),
                }
            }
        };
        let left = snippets.len() - n - 1;
        return Some(format!(
            "{failure}\n({left} later command(s) of {file} not run)"
        ));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documentations_tested_examples_print_what_they_show() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut failures = Vec::new();
    let mut ran = Vec::new();
    for doc in documents(root) {
        let Ok(text) = std::fs::read_to_string(&doc) else {
            continue;
        };
        let found = snippets(&text);
        if found.is_empty() {
            continue;
        }
        let name = doc.strip_prefix(root).unwrap_or(&doc).display().to_string();
        let reader = Reader {
            dir: temp_dir("docs"),
            database_url: new_database().await,
            table: unique_name("docs"),
        };
        failures.extend(check(&name, &found, &reader));
        ran.push(format!("{name}: {} commands", found.len()));
    }
    assert!(
        ran.iter().any(|r| r.starts_with("docs/quickstart.md")),
        "the quick start has tested blocks: {ran:?}"
    );
    assert!(
        failures.is_empty(),
        "{} documentation file(s) show what their commands no longer print (ran {ran:?}):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The runner itself: only marked `console` blocks count, continuation lines join their
/// command, elisions match, and a changed output is reported with its file and line.
#[test]
fn the_runner_finds_marked_blocks_and_reports_a_difference() {
    let doc = "\
# Title

```console
$ echo not run
```

<!-- tested -->
```console
$ echo one \\
  two
one two
$ printf 'a\\nb\\nc\\nd\\n'
a
...
d
$ echo took 1.5 s
took [..] s
$ echo changed
unchanged
```
";
    let found = snippets(doc);
    let commands: Vec<_> = found.iter().map(|s| (s.line, s.command.as_str())).collect();
    assert_eq!(
        commands,
        [
            (9, "echo one \\\n  two"),
            (12, "printf 'a\\nb\\nc\\nd\\n'"),
            (16, "echo took 1.5 s"),
            (18, "echo changed"),
        ]
    );
    let reader = Reader {
        dir: temp_dir("docs-self"),
        database_url: String::new(),
        table: unique_name("docs"),
    };
    let failure = check("doc.md", &found, &reader).expect("the changed output is reported");
    assert!(failure.contains("doc.md:18: $ echo changed"), "{failure}");
    // A failing command stops its file: the later ones build on it.
    let failing = snippets("<!-- tested -->\n```console\n$ false\n$ echo after\nafter\n```\n");
    let failure = check("doc.md", &failing, &reader).expect("a failing command is reported");
    assert!(
        failure.contains("doc.md:3: $ false") && failure.contains("1 later command(s)"),
        "{failure}"
    );
}
