//! Protected file formats for mamori's take-out (持ち出し) exports.
//!
//! A pure library: it turns a [`Table`] into file bytes and protects them. Requests,
//! approvals and the export ledger live in the vault, server and CLI; they call this crate.
//! It reads no clock, no configuration and no files.
//!
//! # API
//!
//! ```text
//! Table::new(headers: Vec<String>) -> Result<Table>          // + push_row(Vec<String>) -> Result<()>
//! write_csv(&Table) -> Result<Zeroizing<Vec<u8>>>             // UTF-8 BOM, RFC 4180, formula guard
//! write_xlsx(&Table, sheet_name: &str) -> Result<Zeroizing<Vec<u8>>>
//!
//! generate_password() -> SecretPassword                        // 20 chars, ≈116.7 bits
//! encrypt_ooxml(package: &[u8], &SecretPassword) -> Result<Vec<u8>>               // agile encryption
//! decrypt_ooxml(file: &[u8], &SecretPassword) -> Result<Zeroizing<Vec<u8>>>
//!
//! parse_age_recipient(&str) -> Result<AgeRecipient>
//! age_encrypt(plain: &[u8], recipient: &str) -> Result<Vec<u8>>                   // binary age
//! age_encrypt_to(plain: &[u8], &AgeRecipient) -> Result<Vec<u8>>
//!
//! split(plain: &[u8], threshold: u8, shares: u8, label: &str) -> Result<Vec<ShareFile>>
//! combine(shares: &[&[u8]]) -> Result<Combined>               // Combined { label, plain }
//! ```
//!
//! The three protections, and what a recipient needs:
//!
//! | protection | function | recipient opens it with |
//! |---|---|---|
//! | password-protected XLSX | [`write_xlsx`] → [`encrypt_ooxml`] | Excel (asks for the password); the password travels separately |
//! | age | [`write_csv`] / [`write_xlsx`] → [`age_encrypt`] | `age -d -i key.txt` with their own X25519 identity |
//! | 秘密分散 (k-of-n shares) | [`split`] / [`combine`] | mamori, with any k of the n share files |
//!
//! # Formats
//!
//! - **CSV** ([`write_csv`]): UTF-8 with BOM, CRLF, RFC 4180 quoting; a cell starting with
//!   `= + - @`, TAB or CR (or full-width `＝＋－＠`) gets a leading `'` against formula
//!   injection.
//! - **XLSX** ([`write_xlsx`]): every cell a string (never a formula), bold frozen header,
//!   autofilter, sized columns, fixed creation time.
//! - **Encrypted XLSX** ([`encrypt_ooxml`]): ECMA-376 agile encryption as Excel writes it —
//!   AES-256-CBC, SHA-512, spin count 100,000, password key encryptor, data-integrity HMAC;
//!   see the [`agile`] module.
//! - **Share files** ([`split`]): AES-256-GCM under a random key split with Shamir's scheme;
//!   the byte layout is in the [`shares`] module.
//!
//! # Secrets and personal data
//!
//! - Cell values, plaintext buffers, passwords and keys are zeroized when dropped
//!   ([`zeroize::Zeroizing`], [`Table`]'s and [`SecretPassword`]'s drop) and never appear in
//!   `Debug` output or in an [`ExportError`] message. Copies made inside rust_xlsxwriter and
//!   age are out of our reach and are not zeroized.
//! - Randomness comes from the operating system (`getrandom`).
//! - Cryptographic primitives come from RustCrypto (aes, cbc, aes-gcm, sha2, hmac), age and
//!   vsss-rs; this crate only lays out file formats on top of them.

mod age_encryption;
pub mod agile;
mod bundle;
mod csv;
mod error;
mod password;
pub mod shares;
mod table;
mod xlsx;

pub use crate::age_encryption::{AgeRecipient, age_encrypt, age_encrypt_to, parse_age_recipient};
pub use crate::agile::{decrypt_ooxml, encrypt_ooxml};
pub use crate::bundle::zip_files;
pub use crate::csv::{UTF8_BOM, needs_formula_guard, write_csv};
pub use crate::error::{ExportError, Result};
pub use crate::password::{PASSWORD_ALPHABET, PASSWORD_LENGTH, SecretPassword, generate_password};
pub use crate::shares::{Combined, MAX_SHARES, ShareFile, combine, split};
pub use crate::table::Table;
pub use crate::xlsx::{MAX_XLSX_CELL_CHARS, MAX_XLSX_COLUMNS, MAX_XLSX_ROWS, write_xlsx};
pub use zeroize::Zeroizing;
