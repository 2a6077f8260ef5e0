//! The `wsecho-load` binary: parse the command line, run (or merge), print,
//! write the files, and exit 0 (clean), 1 (errors or thresholds) or 2 (usage).

#![allow(clippy::print_stderr)]

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use mimalloc::MiMalloc;
use wsecho_load::cli::{Cli, Command, OutputArgs, Thresholds};
use wsecho_load::report::Report;
use wsecho_load::{merge, output, plan, run};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Report(r)) => {
            return match write_report(&r.files, &r.out) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("wsecho-load: {e:#}");
                    ExitCode::from(1)
                }
            };
        }
        Some(Command::Merge(m)) => merge_files(&m.files).map(|r| (r, m.out, m.thresholds)),
        None => {
            if let Err(msg) = plan::validate(&cli.run) {
                Cli::command()
                    .error(clap::error::ErrorKind::ValueValidation, msg)
                    .exit();
            }
            if let Some(warning) = plan::server_pid_warning(&cli.run) {
                eprintln!("wsecho-load: warning: {warning}");
            }
            let (out, thresholds) = (cli.run.out.clone(), cli.run.thresholds.clone());
            plan::build(cli.run)
                .and_then(run::run)
                .map(|r| (r, out, thresholds))
        }
    };
    match result.and_then(|(report, out, thresholds)| finish(&report, &out, &thresholds)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("wsecho-load: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn merge_files(files: &[std::path::PathBuf]) -> anyhow::Result<Report> {
    let reports = files
        .iter()
        .map(|f| output::read_json(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    merge::merge(reports).map_err(anyhow::Error::msg)
}

/// Draws the files as one HTML page; each run is named after its file.
fn write_report(files: &[std::path::PathBuf], out: &std::path::Path) -> anyhow::Result<()> {
    let runs = files
        .iter()
        .map(|f| {
            let name = f.file_stem().map_or_else(
                || f.display().to_string(),
                |s| s.to_string_lossy().into_owned(),
            );
            output::read_json(f).map(|r| (name, r))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let page = output::html::render(&runs)?;
    std::fs::write(out, page).map_err(|e| anyhow::anyhow!("writing {}: {e}", out.display()))
}

/// Prints and writes the report; true when the run was clean.
fn finish(report: &Report, out: &OutputArgs, thresholds: &Thresholds) -> anyhow::Result<bool> {
    output::text::print(report);
    if let Some(path) = &out.json {
        output::write_json(path, report)?;
    }
    if let Some(path) = &out.csv {
        output::csv::append(path, report)?;
    }
    let reasons = merge::verdict(report, thresholds);
    for reason in &reasons {
        eprintln!("FAIL: {reason}");
    }
    Ok(reasons.is_empty())
}
