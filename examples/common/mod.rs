//! What the MNIST examples share: their small command line (`--flag value` or `--flag=value`, `-h`) and how
//! they report errors.
#![allow(dead_code)] // each example uses part of it

use std::error::Error as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the examples write their pictures unless given `--out`: `target/kerust-out/` of this repository,
/// which git ignores, so that running an example never adds files to the checkout.
pub const DEFAULT_OUT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/kerust-out");

/// [`DEFAULT_OUT`] as a path.
pub fn default_out() -> PathBuf {
    PathBuf::from(DEFAULT_OUT)
}

/// The flags of a command line, one at a time, with their values.
pub struct Flags<I: Iterator<Item = String>> {
    args: I,
    inline: Option<String>,
    flag: String,
}

impl<I: Iterator<Item = String>> Flags<I> {
    pub fn new(args: I) -> Self {
        Flags { args, inline: None, flag: String::new() }
    }

    /// The next flag (`--epochs` of `--epochs=3` too), or `None` at the end.
    pub fn next_flag(&mut self) -> Option<String> {
        let flag = self.args.next()?;
        (self.flag, self.inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (flag, None),
        };
        Some(self.flag.clone())
    }

    /// The current flag's value: after `=`, or the next argument.
    pub fn value(&mut self) -> Result<String, String> {
        self.inline.take().or_else(|| self.args.next()).ok_or(format!("{} needs a value", self.flag))
    }

    /// The current flag's value as a number.
    pub fn number<T: std::str::FromStr>(&mut self) -> Result<T, String> {
        let v = self.value()?;
        v.parse().map_err(|_| format!("{}: `{v}` is not a valid number", self.flag))
    }
}

/// Parses the command line with `parse` (`Ok(None)` for `--help`, which prints `usage`), then runs `run`:
/// exit code 2 for a bad command line, 1 for an error, which is printed whole with its causes (kerust's
/// messages say how to fix the problem, e.g. where to put MNIST).
pub fn main_with<A>(
    usage: &str,
    parse: impl FnOnce(Flags<std::iter::Skip<std::env::Args>>) -> Result<Option<A>, String>,
    run: impl FnOnce(&A) -> kerust::Result<ExitCode>,
) -> ExitCode {
    let args = match parse(Flags::new(std::env::args().skip(1))) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{usage}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}\n\n{usage}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}
