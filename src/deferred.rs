//! A subcommand's arguments (or its own subcommands), defined only when the command line
//! names it (clap's `Command::defer`). lb has some 60 subcommands and hundreds of flags;
//! clap built them all on every start, which cost ~0.7 ms of a ~14 ms `lb run` (measured
//! with `lb --version`: 3.2 ms against 2.5 ms before the last wave of flags). Help and
//! errors are unchanged: clap builds a deferred command whenever it shows or parses it.

use clap::{ArgMatches, Args, Command, Error, FromArgMatches, Subcommand};

pub struct Deferred<T>(pub T);

impl<T: FromArgMatches> FromArgMatches for Deferred<T> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, Error> {
        T::from_arg_matches(matches).map(Deferred)
    }

    fn from_arg_matches_mut(matches: &mut ArgMatches) -> Result<Self, Error> {
        T::from_arg_matches_mut(matches).map(Deferred)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), Error> {
        self.0.update_from_arg_matches(matches)
    }

    fn update_from_arg_matches_mut(&mut self, matches: &mut ArgMatches) -> Result<(), Error> {
        self.0.update_from_arg_matches_mut(matches)
    }
}

impl<T: Args> Args for Deferred<T> {
    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }

    fn augment_args(cmd: Command) -> Command {
        cmd.defer(T::augment_args)
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        cmd.defer(T::augment_args_for_update)
    }
}

impl<T: Subcommand> Subcommand for Deferred<T> {
    fn augment_subcommands(cmd: Command) -> Command {
        cmd.defer(T::augment_subcommands)
    }

    fn augment_subcommands_for_update(cmd: Command) -> Command {
        cmd.defer(T::augment_subcommands_for_update)
    }

    fn has_subcommand(name: &str) -> bool {
        T::has_subcommand(name)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every deferred command, built, is a valid clap command (clap's own checks, which
    /// `debug_assert` runs only on commands it builds).
    #[test]
    fn every_command_builds_and_checks() {
        let mut cmd = crate::Cli::command();
        cmd.build();
        fn walk(c: &mut clap::Command) {
            c.build();
            for s in c.get_subcommands_mut() {
                walk(s);
            }
        }
        walk(&mut cmd);
        assert!(cmd.find_subcommand("run").unwrap().get_arguments().count() > 40);
    }
}
