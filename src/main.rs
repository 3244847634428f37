//! The `ddb2pg` binary: parse, run, map the outcome to an exit code. Nothing else exits.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use ddb2pg::pgconn::redact;

/// mimalloc instead of glibc's malloc: a migration allocates and frees millions of small
/// strings and maps from several threads, where glibc spent a quarter of the CPU (see the
/// benchmark in the README).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The logs' writer: each event is formatted whole into an [`EventText`], which passes it
/// through the one redaction on its way to stderr (a log line may quote an error, a setting, a
/// target).
struct RedactedStderr;

struct EventText(Vec<u8>);

impl tracing_subscriber::fmt::MakeWriter<'_> for RedactedStderr {
    type Writer = EventText;

    fn make_writer(&self) -> EventText {
        EventText(Vec::new())
    }
}

impl std::io::Write for EventText {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventText {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let text = redact(&String::from_utf8_lossy(&self.0));
            let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
        }
    }
}

fn main() -> ExitCode {
    let env = |k: &str| std::env::var(k).ok();
    let args = match ddb2pg::config::expand(std::env::args_os().collect(), &env) {
        Ok(e) => {
            let quiet = e.args.iter().any(|a| a == "-q" || a == "--quiet");
            if let (Some(note), false) = (&e.note, quiet) {
                eprintln!("ddb2pg: {note}");
            }
            e.args
        }
        Err(err) => {
            eprintln!("ddb2pg: error: {}", redact(&err.to_string()));
            return ExitCode::from(err.exit_code());
        }
    };
    let cli = match ddb2pg::cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        // --help and --version as clap prints them; usage errors may quote an argument
        // (an unquoted `password=...`): redacted.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprint!("{}", redact(&e.render().to_string()));
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(color)
        .with_writer(RedactedStderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ddb2pg: error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(ddb2pg::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            // Every message that may quote a target passes through the one redaction.
            eprintln!("ddb2pg: error: {}", redact(&err.to_string()));
            ExitCode::from(err.exit_code())
        }
    }
}
