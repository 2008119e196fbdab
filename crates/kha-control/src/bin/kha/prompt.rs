//! Asking the person at the terminal: a line (a user name, a code) and a
//! secret (a password) typed without echo. When standard input is not a
//! terminal, both are read as lines from it, so scripts and tests pipe
//! them (`printf 'secret\n' | kha login --user alice`).
//!
//! Echo is turned off with termios through nix, which the workspace uses
//! already (rather than a further crate such as rpassword): that keeps the
//! dependency tree as it is, and lets Ctrl-C restore the terminal before
//! the CLI exits instead of leaving it silent.

use crate::Failure;
use nix::sys::termios::{self, LocalFlags, SetArg};
use std::io::{BufRead, IsTerminal, Write};

/// Whether a person is typing (standard input is a terminal).
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// One line from standard input without its line ending, after `prompt`
/// (on stderr, and only for a terminal). End of input is an error naming
/// `what`.
pub fn line(prompt: &str, what: &str) -> Result<String, Failure> {
    if interactive() {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
    }
    read_line(what)
}

fn read_line(what: &str) -> Result<String, Failure> {
    let mut s = String::new();
    let n = std::io::stdin()
        .lock()
        .read_line(&mut s)
        .map_err(|e| Failure(1, format!("reading the {what}: {e}")))?;
    if n == 0 {
        return Err(Failure(2, format!("no {what} given: standard input ended")));
    }
    let trimmed = s.trim_end_matches(['\n', '\r']).len();
    s.truncate(trimmed);
    Ok(s)
}

/// A secret: typed without echo on a terminal, else a line of standard
/// input. With `confirm` a terminal asks twice and the two must match.
pub async fn secret(prompt: &str, what: &str, confirm: bool) -> Result<String, Failure> {
    if !interactive() {
        return read_line(what);
    }
    let first = hidden(prompt, what).await?;
    if confirm {
        let again = hidden("again: ", what).await?;
        if again != first {
            return Err(Failure(2, format!("the two {what}s differ")));
        }
    }
    Ok(first)
}

/// Reads a line from the terminal with echo off. The read runs on a
/// blocking thread while this task waits for Ctrl-C too: on Ctrl-C the
/// terminal gets its echo back before the CLI exits.
async fn hidden(prompt: &str, what: &str) -> Result<String, Failure> {
    let stdin = std::io::stdin();
    let saved = termios::tcgetattr(&stdin)
        .map_err(|e| Failure(1, format!("reading the terminal's settings: {e}")))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    // The Enter key still moves to the next line.
    quiet.local_flags.insert(LocalFlags::ECHONL);
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    termios::tcsetattr(&stdin, SetArg::TCSAFLUSH, &quiet)
        .map_err(|e| Failure(1, format!("turning the terminal's echo off: {e}")))?;
    let what_owned = what.to_string();
    let read = tokio::task::spawn_blocking(move || read_line(&what_owned));
    let got = tokio::select! {
        r = read => r.unwrap_or_else(|e| Err(Failure(1, format!("reading the {what}: {e}")))),
        _ = tokio::signal::ctrl_c() => Err(Failure(130, String::new())),
    };
    if let Err(e) = termios::tcsetattr(&stdin, SetArg::TCSAFLUSH, &saved) {
        eprintln!("kha: cannot turn the terminal's echo back on (run `stty echo`): {e}");
    }
    if let Err(Failure(130, _)) = got {
        eprintln!();
        // The blocking read cannot be interrupted: leave it behind.
        std::process::exit(130);
    }
    got
}
