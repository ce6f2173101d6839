//! The `treecast` command-line tool.

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    let args = cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("treecast: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
