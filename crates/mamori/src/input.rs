//! Values that must not appear on the command line: passwords, one-time codes and searched
//! values. `ps` and the shell history show argv to others, so these
//! come from the environment, stdin, a file or a prompt instead.

use anyhow::Context;
use mamori_crypto::SecretString;
use std::io::IsTerminal;

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
