//! The examples in `--help` and the manual pages: every example command line in a command's
//! help (its "Examples" after the options) must parse as the command line it shows, so a
//! renamed or removed flag, or a combination clap refuses, breaks this test instead of a user's
//! first try; `ddb2pg man DIR` writes a page per command, examples included.

use clap::{CommandFactory, Parser};
use ddb2pg::cli::Cli;

/// The example command lines of a help text: lines starting with `ddb2pg ` (after the
/// indentation), joined with their `\`-continued lines, cut at a comment, a pipe or a
/// redirection, split into words (double quotes kept together).
fn example_lines(help: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut lines = help.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if !line.starts_with("ddb2pg ") {
            continue;
        }
        let mut text = line.to_string();
        while text.ends_with('\\') {
            text.pop();
            text.push(' ');
            text.push_str(lines.next().unwrap_or(""));
        }
        commands.push(words(&text));
    }
    commands
}

fn words(text: &str) -> Vec<String> {
    let (mut out, mut word, mut quoted) = (Vec::new(), String::new(), false);
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '#' | '|' | '>' if !quoted && word.is_empty() => break,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

#[test]
fn every_example_in_help_parses() {
    let mut root = Cli::command();
    root.build();
    let mut helps = vec![("ddb2pg".to_string(), root.clone())];
    // clap's own `help` command has nothing to show by example.
    for sub in root.get_subcommands().filter(|s| s.get_name() != "help") {
        helps.push((format!("ddb2pg {}", sub.get_name()), sub.clone()));
    }
    let mut checked = 0;
    let mut without = Vec::new();
    for (name, cmd) in helps {
        let help = cmd
            .get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        let examples = example_lines(&help);
        if examples.is_empty() && !cmd.is_hide_set() {
            without.push(name.clone());
        }
        for args in examples {
            if let Err(e) = Cli::try_parse_from(&args) {
                panic!("an example in `{name} --help` does not parse: {args:?}\n{e}");
            }
            checked += 1;
        }
    }
    assert!(without.is_empty(), "commands without examples: {without:?}");
    assert!(
        checked >= 20,
        "only {checked} examples found: is the parsing above still right?"
    );
}

#[test]
fn the_example_parser_sees_a_broken_example() {
    // The check above can fail: a renamed flag in an example is caught.
    let help =
        "Examples:\n  # comment\n  ddb2pg migrate --table app \\\n      --no-such-flag 3 | jq .\n";
    let found = example_lines(help);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].last().map(String::as_str), Some("3"), "{found:?}");
    assert!(Cli::try_parse_from(&found[0]).is_err());
    let quoted = words("ddb2pg completions zsh > \"${fpath[1]}/_ddb2pg\"  # zsh");
    assert_eq!(quoted, ["ddb2pg", "completions", "zsh"]);
}

#[test]
fn man_writes_a_page_per_command_with_its_examples() {
    let dir = crate::support::temp_dir("man");
    let out = crate::support::ddb2pg_command()
        .args(["man"])
        .arg(dir.join("man1"))
        .output()
        .expect("run ddb2pg man");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let main = std::fs::read_to_string(dir.join("man1/ddb2pg.1")).expect("ddb2pg.1");
    let root = Cli::command();
    let visible: Vec<_> = root
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .collect();
    assert!(visible.len() >= 6, "{visible:?}");
    for sub in visible {
        let name = sub.get_name();
        assert!(
            main.contains(&format!("ddb2pg\\-{name}")),
            "ddb2pg.1 names {name}"
        );
        let page = std::fs::read_to_string(dir.join(format!("man1/ddb2pg-{name}.1")))
            .unwrap_or_else(|e| panic!("ddb2pg-{name}.1: {e}"));
        assert!(page.contains(".SH SYNOPSIS"), "{name}: {page}");
        // Every page carries its examples (the help's after-text).
        assert!(page.contains(&format!("ddb2pg {name}")), "{name}: {page}");
    }
    // The man command itself is hidden: no page, not in the listing.
    assert!(!dir.join("man1/ddb2pg-man.1").exists());
    assert!(!main.contains("ddb2pg\\-man"), "{main}");
    let printed = String::from_utf8_lossy(&out.stdout);
    let pages = 1 + root.get_subcommands().filter(|s| !s.is_hide_set()).count();
    assert_eq!(printed.lines().count(), pages, "{printed}");
}
