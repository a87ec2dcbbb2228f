//! docker's `--filter KEY=VALUE` flags as its client and daemon read them: a value
//! without `=` is the client's usage error (exit 125, before anything is done); each key is
//! trimmed and lower-cased, each value trimmed; a key the command does not take is the
//! daemon's `Invalid filter 'KEY'` (checked before any value is read).

use std::process::ExitCode;

/// The filters given, as (key, value); a value without `=` is printed as docker's usage
/// error and is `Err` with its exit status. `flag` is the flag as docker's help names it
/// (`-f, --filter`, or `--filter` where `-f` is `--force`), `command` the command's words.
pub fn parse(
    values: &[String],
    flag: &str,
    command: &str,
) -> Result<Vec<(String, String)>, ExitCode> {
    values
        .iter()
        .map(|v| match v.split_once('=') {
            Some((k, val)) => Ok((k.trim().to_ascii_lowercase(), val.trim().to_string())),
            None => {
                eprintln!(
                    "invalid argument {v:?} for \"{flag}\" flag: bad format of filter (expected name=value)\nSee 'lb {command} --help'."
                );
                Err(ExitCode::from(125))
            }
        })
        .collect()
}

/// docker's daemon's refusal of a key the command does not take.
pub fn check_keys(given: &[(String, String)], keys: &[&str]) -> anyhow::Result<()> {
    match given.iter().find(|(k, _)| !keys.contains(&k.as_str())) {
        Some((k, _)) => anyhow::bail!("Invalid filter '{k}'"),
        None => Ok(()),
    }
}
