//! `st2v`: the command-line shell over the streamingt2v library. Parses arguments, dispatches to
//! one `cmd_*` module per command, prints the error chain and maps it to an exit status.

mod args;
mod args_job;
mod args_serve;
mod checks;
mod cmd_bench;
mod cmd_doctor;
mod cmd_enhance;
mod cmd_eval;
mod cmd_extend;
mod cmd_generate;
mod cmd_models;
mod cmd_resume;
mod cmd_serve;
mod config;
mod job;
mod progress_ui;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use streamingt2v::engine::{classify, ErrorKind};

use args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match dispatch(&cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(exit_status(&err))
        }
    }
}

fn dispatch(command: &Command) -> anyhow::Result<()> {
    match command {
        Command::Generate(args) => cmd_generate::run(args),
        Command::Extend(args) => cmd_extend::run(args),
        Command::Enhance(args) => cmd_enhance::run(args),
        Command::Serve(args) => cmd_serve::run(args),
        Command::Bench(args) => cmd_bench::run(args),
        Command::Eval(args) => cmd_eval::run(args),
        Command::Doctor(args) => cmd_doctor::run(args),
        Command::Models(command) => cmd_models::run(command),
        Command::Resume(args) => cmd_resume::run(args),
    }
}

/// Warnings (provider fallbacks, truncated prompts) go to stderr; `ST2V_LOG` overrides the level.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ST2V_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .init();
}

/// Exit status (documented in `st2v --help`): 1 failure while running, 2 invalid usage or input,
/// 3 ONNX Runtime or execution provider unavailable, 128+N stopped by
/// signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP; the outputs keep the frames finished before). The outermost library error in the
/// chain decides, through the library's one classification.
fn exit_status(err: &anyhow::Error) -> u8 {
    match err.chain().find_map(classify) {
        Some(ErrorKind::InvalidInput) => 2,
        Some(ErrorKind::Unavailable) => 3,
        Some(ErrorKind::Cancelled) => {
            job::stopping_signal().map_or(130, |signal| u8::try_from(128 + signal).unwrap_or(130))
        }
        Some(ErrorKind::Failed) | None => 1,
    }
}
