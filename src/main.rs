//! The `ddb2pg` binary: parse, run, map the outcome to an exit code. Nothing else exits.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use ddb2pg::say;

/// mimalloc instead of glibc's malloc: a migration allocates and frees millions of small
/// strings and maps from several threads, where glibc spent a quarter of the CPU (see the
/// benchmark in the README).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    say::on_panic();
    let env = |k: &str| std::env::var(k).ok();
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Before the command line parses, what it says is in the format it asks for.
    say::set_json(say::asks_json(&raw, &env));
    let args = match ddb2pg::config::expand(raw, &env) {
        Ok(e) => {
            say::set_json(say::asks_json(&e.args, &env));
            let quiet = e.args.iter().any(|a| a == "-q" || a == "--quiet");
            if let (Some(note), false) = (&e.note, quiet) {
                ddb2pg::say!("{note}");
            }
            e.args
        }
        Err(err) => {
            say::fatal(&err.to_string(), err.exit_code());
            return ExitCode::from(err.exit_code());
        }
    };
    let cli = match ddb2pg::cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        // --help and --version as clap prints them.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        // Usage errors may quote an argument (an unquoted `password=...`): redacted, by
        // say::usage_error.
        Err(e) => {
            let code = u8::try_from(e.exit_code()).unwrap_or(2);
            say::usage_error(&e.render().to_string(), code);
            return ExitCode::from(code);
        }
    };
    say::set_json(cli.log_format == ddb2pg::cli::LogFormat::Json);
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{level},aws_config=error,aws_smithy_runtime=error"
        ))
    });
    let color = std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
    say::logs::init(filter, color);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say::fatal(&format!("cannot start the async runtime: {e}"), 1);
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(ddb2pg::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            // Every message that may quote a target passes through the one redaction (in say).
            say::fatal(&err.to_string(), err.exit_code());
            ExitCode::from(err.exit_code())
        }
    }
}
