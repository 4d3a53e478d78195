//! The crate's error type.
//!
//! **Invariant:** no message carries a cell value, a label, a password or any other content:
//! only counts, positions, indices and the name of what went wrong. Errors reach logs and the
//! audit trail, and the content is personal data.

/// `Result` with [`ExportError`].
pub type Result<T> = std::result::Result<T, ExportError>;

/// Everything that can go wrong while writing or reading a take-out file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    // ---- tables, CSV, XLSX ----
    /// A row does not have one cell per header.
    #[error("row {row} has {got} cells, the table has {expected} columns")]
    RowWidth {
        /// 1-based data row number (the header is row 0).
        row: usize,
        expected: usize,
        got: usize,
    },
    /// The table has no columns.
    #[error("the table has no columns")]
    NoColumns,
    /// The table does not fit a worksheet (1,048,575 data rows, 16,384 columns) or a cell is
    /// longer than Excel allows (32,767 characters).
    #[error("the table does not fit an XLSX worksheet: {0}")]
    XlsxLimit(&'static str),
    /// The worksheet name is not allowed by Excel (1–31 characters, none of `[]:*?/\`, not
    /// beginning or ending with an apostrophe, not "History").
    #[error("invalid worksheet name (1-31 characters, none of []:*?/\\)")]
    SheetName,
    /// rust_xlsxwriter failed for another reason.
    #[error("the XLSX file could not be written")]
    Xlsx,
    /// The CSV writer failed.
    #[error("the CSV file could not be written")]
    Csv,

    // ---- ECMA-376 agile encryption ----
    /// The input is not an OLE compound file, or lacks the streams of an encrypted Office
    /// document.
    #[error("not an encrypted Office document: {0}")]
    NotEncryptedOffice(&'static str),
    /// An encrypted Office document that uses an encryption this crate does not read.
    #[error("unsupported Office encryption: {0}")]
    UnsupportedEncryption(&'static str),
    /// The EncryptionInfo stream is malformed.
    #[error("malformed EncryptionInfo: {0}")]
    MalformedEncryptionInfo(&'static str),
    /// The password does not open the document (its password verifier does not match).
    #[error("wrong password")]
    WrongPassword,
    /// The document was altered: the data-integrity HMAC over the EncryptedPackage stream
    /// does not match, or the stream is truncated.
    #[error("integrity check failed: the encrypted document was altered or is corrupted")]
    IntegrityCheckFailed,
    /// [`crate::encrypt_ooxml`] was given something that is not an OOXML package (a zip).
    #[error("not an OOXML package (an .xlsx/.docx zip file) to encrypt")]
    NotOoxmlPackage,
    /// The password is empty or longer than Office accepts (255 UTF-16 code units).
    #[error("the password must be 1-255 characters")]
    PasswordLength,
    /// Writing the compound file failed.
    #[error("the compound file could not be written")]
    Container,

    // ---- age ----
    /// The string is not an age X25519 recipient.
    #[error("not an age X25519 recipient (expected \"age1...\")")]
    AgeRecipient,
    /// age encryption failed.
    #[error("age encryption failed")]
    Age,

    // ---- secret sharing ----
    /// `split` was called with a threshold and share count outside 2 ≤ k ≤ n ≤ 16.
    #[error("invalid share parameters: need 2 <= threshold <= shares <= 16, got {threshold}-of-{shares}")]
    ShareParameters { threshold: u8, shares: u8 },
    /// The label is longer than 1,024 bytes.
    #[error("the label is too long (at most 1024 bytes)")]
    LabelTooLong,
    /// `combine` was given no input at all.
    #[error("no share files given")]
    NoShares,
    /// An input is not a mamori share file (wrong magic or truncated header).
    #[error("input #{position} is not a mamori share file")]
    NotAShareFile {
        /// 1-based position in the input list.
        position: usize,
    },
    /// An input is a mamori share file of a format version this crate does not read.
    #[error("input #{position} is a mamori share file of unsupported version {version}")]
    UnsupportedShareVersion { position: usize, version: u8 },
    /// An input's own checksum does not match: that share file was corrupted or edited.
    #[error("share file #{position} is corrupted (its checksum does not match)")]
    CorruptShare {
        /// 1-based position in the input list.
        position: usize,
    },
    /// The share files come from different splits.
    #[error("the share files belong to different sets (different set ids)")]
    MixedShareSets,
    /// Two inputs carry the same share index.
    #[error("share {index} was given more than once")]
    DuplicateShare { index: u8 },
    /// Fewer share files than the threshold.
    #[error("need {need} shares, got {got}")]
    NotEnoughShares { need: u8, got: usize },
    /// Share files of one set disagree about the header or the ciphertext although each
    /// one's checksum matches: at least one was edited deliberately.
    #[error("share file #{position} disagrees with share file #1 about the set's header or ciphertext")]
    InconsistentShares { position: usize },
    /// The key restored from the shares does not decrypt the ciphertext (the AES-GCM tag
    /// fails): a key share, the header or the ciphertext was altered.
    #[error("the shares do not restore the file: a key share, header or ciphertext was altered")]
    ShareAuthentication,

    // ---- common ----
    /// A dependency behaved unexpectedly (a bug, not bad input).
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// The operating system's random source failed.
    #[error("the operating system's random number generator failed")]
    Random,
    /// The ZIP bundle of share files could not be written.
    #[error("the ZIP bundle could not be written")]
    Bundle,
}
