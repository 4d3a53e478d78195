//! Values that must not appear on the command line: passwords, one-time codes, searched
//! values and break-glass reasons. `ps` and the shell history show argv to others, so these
//! come from the environment, stdin, a file or a prompt instead.

use anyhow::Context;
use mamori_crypto::SecretString;
use std::io::{IsTerminal, Read};
use std::path::Path;

/// Longest free text read from stdin or a file (the vault applies its own, lower limits).
const MAX_TEXT_BYTES: u64 = 64 * 1024;

/// A secret from the environment variable `var`, if it is set.
pub fn env_secret(var: &str) -> Option<SecretString> {
    std::env::var(var).ok().map(SecretString::new)
}

/// A secret from the environment variable `var`, else a hidden prompt on the terminal.
pub fn secret(var: &str, prompt: &str) -> anyhow::Result<SecretString> {
    match env_secret(var) {
        Some(value) => Ok(value),
        None => Ok(SecretString::new(
            rpassword::prompt_password(prompt).with_context(|| format!("no terminal to ask on; set {var}"))?,
        )),
    }
}

/// One line from stdin, or from a hidden prompt when stdin is a terminal.
pub fn line(prompt: &str) -> anyhow::Result<SecretString> {
    let value = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt)?
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).context("reading stdin")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    Ok(SecretString::new(value))
}

/// Free text from `file`, else all of stdin (on a terminal: typed, ended with Ctrl-D).
pub fn text(file: Option<&Path>, what: &str) -> anyhow::Result<String> {
    let mut text = String::new();
    match file {
        Some(path) => {
            let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            file.take(MAX_TEXT_BYTES)
                .read_to_string(&mut text)
                .with_context(|| format!("reading {} (UTF-8 text)", path.display()))?;
        }
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("{what} (end with Ctrl-D on a line of its own):");
            }
            stdin.lock().take(MAX_TEXT_BYTES).read_to_string(&mut text).context("reading stdin (UTF-8 text)")?;
        }
    }
    let text = text.trim();
    anyhow::ensure!(!text.is_empty(), "no {what} given (pipe it to stdin or name a file)");
    Ok(text.to_owned())
}
