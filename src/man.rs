//! The manual pages, generated from the command-line definition (src/cli.rs) by clap_mangen,
//! so they say what `--help` says and cannot drift from it: `ddb2pg man DIR` (a hidden
//! command, for packagers and `make install`-style scripts) writes `ddb2pg.1` and one
//! `ddb2pg-<command>.1` per visible command, their examples included. A page is generated from
//! the binary that will be installed, which is why this is a command and not a build step.

use std::path::{Path, PathBuf};

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{Error, Result};

/// Write every page into `dir` (created if missing); returns the files written, the main
/// page first.
pub fn write_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    let failed = |e: std::io::Error| {
        Error::config(format!(
            "cannot write the manual pages into {}: {e}",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let source = format!("ddb2pg {}", env!("CARGO_PKG_VERSION"));
    let page = |c: &clap::Command| clap_mangen::Man::new(c.clone()).source(source.clone());
    let mut written = vec![page(&cmd).generate_to(dir).map_err(failed)?];
    // Once built, a command's display name is `ddb2pg-migrate`: the page's name and title.
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        written.push(page(sub).generate_to(dir).map_err(failed)?);
    }
    Ok(written)
}
