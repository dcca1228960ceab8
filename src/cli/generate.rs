//! `queuectl completions SHELL` and `queuectl man`: shell completion scripts and
//! roff manual pages, generated from the same clap description that parses the
//! command line, so they can never disagree with it.
//!
//! Both write to stdout (or, for `man --dir`, one file per command into a
//! directory the user names) and never open the store.

use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::Shell;

use super::{Cli, printed};
use crate::error::Failure;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write one page per command (queuectl.1, queuectl-enqueue.1, ...) into DIR
    /// instead of printing the main page
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Prints the completion script for `args.shell` on stdout.
pub fn completions(args: CompletionsArgs) -> Result<(), Failure> {
    let mut command = Cli::command();
    // Rendered in memory first: clap_complete panics when its writer fails, and a
    // closed pipe (`| head`) must end quietly.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "queuectl", &mut script);
    printed(std::io::Write::write_all(
        &mut std::io::stdout().lock(),
        &script,
    ))
}

/// Prints `queuectl(1)`, or writes every command's page into `--dir`.
pub fn man(args: ManArgs) -> Result<(), Failure> {
    let command = Cli::command();
    match args.dir {
        None => {
            let mut out = std::io::stdout().lock();
            printed(clap_mangen::Man::new(command).render(&mut out))
        }
        Some(dir) => {
            if !dir.is_dir() {
                return Err(Failure::usage(format!(
                    "{} is not a directory; create it first or name another with --dir",
                    dir.display()
                )));
            }
            clap_mangen::generate_to(command, &dir).map_err(|e| {
                Failure::runtime(format!(
                    "cannot write manual pages to {}: {e}; check that the directory is writable",
                    dir.display()
                ))
            })?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option and argument of every command says what it is for: `--help`,
    /// the man pages and the completions' descriptions all show it.
    #[test]
    fn every_argument_has_a_description() {
        let mut command = Cli::command();
        command.build();
        let mut missing = Vec::new();
        let mut stack = vec![(String::from("queuectl"), command)];
        while let Some((path, command)) = stack.pop() {
            for arg in command.get_arguments() {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                stack.push((format!("{path} {}", sub.get_name()), sub.clone()));
            }
        }
        assert!(missing.is_empty(), "without a description: {missing:?}");
    }

    /// The options every command takes are listed once, under their own heading.
    #[test]
    fn global_options_have_their_own_heading() {
        let command = Cli::command();
        for arg in command.get_arguments().filter(|a| a.is_global_set()) {
            assert_eq!(
                arg.get_help_heading(),
                Some(super::super::GLOBAL),
                "{}",
                arg.get_id()
            );
        }
    }
}
