//! `treecast package`: what a packager installs beside the binary (issue 28): shell
//! completions (`clap_complete`), man pages (`clap_mangen`, one for `treecast` and one for each
//! subcommand) and the systemd unit (`packaging/treecast.service`, with its hardening options;
//! CI checks it with `systemd-analyze verify`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{CommandFactory, Subcommand, ValueEnum};

/// The systemd unit of `treecast serve`.
pub(crate) const SYSTEMD_UNIT: &str = include_str!("../../packaging/treecast.service");

/// What to write.
#[derive(Debug, Subcommand)]
pub(crate) enum PackageCommand {
    /// Write the completions of a shell to stdout.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write the man pages (`treecast.1`, `treecast-serve.1`, …) into a directory.
    Man {
        /// The directory (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Write the systemd unit of `treecast serve` to stdout.
    Systemd,
}

/// A shell with completions.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Shell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
    /// Elvish.
    Elvish,
    /// PowerShell.
    Powershell,
}

pub(crate) fn run(cmd: &PackageCommand) -> anyhow::Result<()> {
    match cmd {
        PackageCommand::Completions { shell } => {
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
                Shell::Elvish => clap_complete::Shell::Elvish,
                Shell::Powershell => clap_complete::Shell::PowerShell,
            };
            let mut command = super::Cli::command();
            clap_complete::generate(shell, &mut command, "treecast", &mut std::io::stdout());
            Ok(())
        }
        PackageCommand::Man { out } => man_pages(out),
        PackageCommand::Systemd => {
            print!("{SYSTEMD_UNIT}");
            Ok(())
        }
    }
}

/// `treecast.1` and a page for each subcommand, recursively (`treecast-client-buy.1`).
fn man_pages(out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| out.display().to_string())?;
    let mut command = super::Cli::command();
    command.build();
    write_page(out, &command, "treecast")
}

fn write_page(out: &Path, command: &clap::Command, name: &str) -> anyhow::Result<()> {
    let page = command.clone().name(name.to_owned());
    let mut bytes = Vec::new();
    clap_mangen::Man::new(page).render(&mut bytes)?;
    let file = out.join(format!("{name}.1"));
    std::fs::write(&file, bytes).with_context(|| file.display().to_string())?;
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        write_page(out, sub, &format!("{name}-{}", sub.get_name()))?;
    }
    Ok(())
}
