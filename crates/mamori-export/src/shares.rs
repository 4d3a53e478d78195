//! 秘密分散 (secret sharing): a file encrypted under a random key, the key split k-of-n
//! with Shamir's scheme, and n self-contained share files.
//!
//! # Share-file format, version 1
//!
//! All integers are big-endian. `L` is the label length, `C` the ciphertext length.
//!
//! | offset   | size | field |
//! |----------|------|-------|
//! | 0        | 8    | magic `MAMORISS` |
//! | 8        | 1    | format version, `1` |
//! | 9        | 16   | set id: random, the same in every share of one split |
//! | 25       | 1    | k, the threshold (2 ≤ k ≤ n) |
//! | 26       | 1    | n, the number of shares (k ≤ n ≤ 16) |
//! | 27       | 12   | AES-GCM nonce (random) |
//! | 39       | 2    | L |
//! | 41       | L    | label, UTF-8 (the caller's file name; **stored in clear**) |
//! | 41+L     | 1    | share index i, 1 ≤ i ≤ n |
//! | 42+L     | 32   | key share: Shamir share over GF(256) of the 32-byte file key, at x = i |
//! | 74+L     | 8    | C |
//! | 82+L     | C    | AES-256-GCM ciphertext of the file, 16-byte tag at the end |
//! | 82+L+C   | 32   | SHA-256 of bytes 0 .. 82+L+C of this share file |
//!
//! Bytes 0 .. 41+L (everything but the index, key share and ciphertext) are the set's common
//! header, and they are the AES-GCM **associated data**: editing the set id, k, n, nonce or
//! label in every share makes decryption fail.
//!
//! The trailing SHA-256 is a checksum, not a security measure: it lets [`combine`] say
//! *which* input is corrupted, but anyone can recompute it. Security comes from the GCM tag:
//! a key share, header or ciphertext changed consistently with its checksum gives a wrong
//! key or wrong associated data, the tag fails, and nothing is returned.
//!
//! # What fewer than k shares reveal
//!
//! Nothing about the file key (Shamir's scheme is information-theoretically hiding), so
//! nothing about the content beyond what is in every share in clear: the label, the
//! parameters k and n, and the content's **length** (ciphertext = length + 16).

use std::fmt;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use getrandom::SysRng;
use getrandom::rand_core::UnwrapErr;
use sha2::{Digest, Sha256};
use vsss_rs::Gf256;
use zeroize::Zeroizing;

use crate::error::{ExportError, Result};

/// The first bytes of every share file.
pub const SHARE_MAGIC: &[u8; 8] = b"MAMORISS";
/// The share-file format version written (and the only one read).
pub const SHARE_FORMAT_VERSION: u8 = 1;
/// Most shares one split makes.
pub const MAX_SHARES: u8 = 16;
/// Longest label, in bytes of UTF-8.
pub const MAX_LABEL_LEN: usize = 1024;

const SET_ID_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
const CHECKSUM_LEN: usize = 32;
/// Fixed-size bytes of a share file besides the label and the ciphertext.
const FIXED_LEN: usize = 8 + 1 + SET_ID_LEN + 1 + 1 + NONCE_LEN + 2 + 1 + KEY_LEN + 8 + CHECKSUM_LEN;

/// One share file of a split: its index (1-based, `1..=n`) and its bytes, to be written to a
/// file and handed to one custodian. The bytes hold a key share: zeroized on drop, and
/// `Debug` shows only the index and the length.
pub struct ShareFile {
    pub index: u8,
    pub bytes: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for ShareFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareFile").field("index", &self.index).field("len", &self.bytes.len()).finish_non_exhaustive()
    }
}

/// What [`combine`] restores: the label given to [`split`] and the file's content.
pub struct Combined {
    pub label: String,
    pub plain: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Combined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Combined").field("label", &self.label).field("plain", &"[REDACTED]").finish()
    }
}

/// Encrypts `plain` under a fresh random 256-bit key with AES-256-GCM, splits the key
/// k-of-n (`threshold`-of-`shares`) with Shamir's scheme over GF(256), and returns `shares`
/// share files, index 1 to n. Any `threshold` of them restore the file with [`combine`];
/// fewer reveal nothing about it but its length (see the module documentation for the
/// format). `label` (e.g. the file name) is stored **in clear** in every share: do not put
/// personal data in it.
///
/// Limits: 2 ≤ threshold ≤ shares ≤ 16 (a 1-of-n split would be a copy; more than 16
/// custodians is not a take-out procedure); label at most 1,024 bytes.
///
/// # Errors
/// [`ExportError::ShareParameters`], [`ExportError::LabelTooLong`], [`ExportError::Random`].
///
/// # Panics
/// If the OS random source fails while the key is being split (vsss-rs takes an infallible
/// random generator); the key, set id and nonce are drawn fallibly before that.
pub fn split(plain: &[u8], threshold: u8, shares: u8, label: &str) -> Result<Vec<ShareFile>> {
    if threshold < 2 || threshold > shares || shares > MAX_SHARES {
        return Err(ExportError::ShareParameters { threshold, shares });
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(ExportError::LabelTooLong);
    }
    let mut set_id = [0u8; SET_ID_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    getrandom::fill(&mut set_id).map_err(|_| ExportError::Random)?;
    getrandom::fill(&mut nonce).map_err(|_| ExportError::Random)?;
    getrandom::fill(&mut key[..]).map_err(|_| ExportError::Random)?;

    let header = common_header(&set_id, threshold, shares, &nonce, label)?;

    // Encrypt in a buffer with room for the tag, so it never re-allocates with plaintext in it.
    let mut ciphertext = Vec::with_capacity(plain.len() + TAG_LEN);
    ciphertext.extend_from_slice(plain);
    let cipher = Aes256Gcm::new((&*key).into());
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), &header, &mut ciphertext)
        .map_err(|_| ExportError::Internal("AES-GCM encryption failed"))?;
    ciphertext.extend_from_slice(&tag);

    let key_shares = Gf256::split_bytes(usize::from(threshold), usize::from(shares), &key[..], UnwrapErr(SysRng))
        .map_err(|_| ExportError::Internal("Shamir split failed"))?;
    let key_shares: Vec<Zeroizing<Vec<u8>>> = key_shares.into_iter().map(Zeroizing::new).collect();

    let mut files = Vec::with_capacity(usize::from(shares));
    for (i, share) in key_shares.iter().enumerate() {
        let index = u8::try_from(i + 1).map_err(|_| ExportError::Internal("share index"))?;
        // vsss-rs numbers shares 1, 2, …: byte 0 is the x-coordinate, then one y per key byte.
        if share.len() != 1 + KEY_LEN || share[0] != index {
            return Err(ExportError::Internal("unexpected share layout"));
        }
        let mut bytes =
            Zeroizing::new(Vec::with_capacity(header.len() + 1 + KEY_LEN + 8 + ciphertext.len() + CHECKSUM_LEN));
        bytes.extend_from_slice(&header);
        bytes.push(index);
        bytes.extend_from_slice(&share[1..]);
        bytes.extend_from_slice(&(ciphertext.len() as u64).to_be_bytes());
        bytes.extend_from_slice(&ciphertext);
        let checksum = Sha256::digest(&bytes[..]);
        bytes.extend_from_slice(&checksum);
        files.push(ShareFile { index, bytes });
    }
    Ok(files)
}

/// Restores the file from share files of one split: at least k of them, in any order.
///
/// Every input is checked before anything is decrypted, and errors name the input by its
/// 1-based position: not a share file or an unknown version; a corrupted share (its own
/// checksum fails); shares of different splits; a share index given twice; fewer than k
/// shares ("need 3 shares, got 2"); shares that disagree about the header or ciphertext.
/// All given shares (k or more) go into the interpolation; the restored key must then pass
/// the AES-GCM tag over the ciphertext and the header, or [`ExportError::ShareAuthentication`]
/// is returned. No partial or unauthenticated plaintext is ever returned.
///
/// # Errors
/// See above and [`ExportError`].
pub fn combine(shares: &[&[u8]]) -> Result<Combined> {
    if shares.is_empty() {
        return Err(ExportError::NoShares);
    }
    let parsed =
        shares.iter().enumerate().map(|(i, bytes)| ParsedShare::parse(bytes, i + 1)).collect::<Result<Vec<_>>>()?;
    let first = &parsed[0];
    if parsed.iter().any(|p| p.set_id != first.set_id) {
        return Err(ExportError::MixedShareSets);
    }
    let mut seen = [false; 256];
    for p in &parsed {
        if std::mem::replace(&mut seen[usize::from(p.index)], true) {
            return Err(ExportError::DuplicateShare { index: p.index });
        }
    }
    for (i, p) in parsed.iter().enumerate() {
        if p.header != first.header || p.ciphertext != first.ciphertext {
            return Err(ExportError::InconsistentShares { position: i + 1 });
        }
    }
    if parsed.len() < usize::from(first.threshold) {
        return Err(ExportError::NotEnoughShares { need: first.threshold, got: parsed.len() });
    }

    let points: Vec<Vec<u8>> = parsed
        .iter()
        .map(|p| {
            let mut point = Vec::with_capacity(1 + KEY_LEN);
            point.push(p.index);
            point.extend_from_slice(p.key_share);
            point
        })
        .collect();
    let points = Zeroizing::new(points);
    let key = Zeroizing::new(Gf256::combine_bytes(&*points).map_err(|_| ExportError::ShareAuthentication)?);
    if key.len() != KEY_LEN {
        return Err(ExportError::ShareAuthentication);
    }

    let (body, tag) =
        first.ciphertext.split_at_checked(first.ciphertext.len() - TAG_LEN).ok_or(ExportError::ShareAuthentication)?;
    let mut plain = Zeroizing::new(body.to_vec());
    let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| ExportError::ShareAuthentication)?;
    cipher
        .decrypt_in_place_detached(Nonce::from_slice(first.nonce), first.header, &mut plain, Tag::from_slice(tag))
        .map_err(|_| ExportError::ShareAuthentication)?;
    Ok(Combined { label: first.label.to_owned(), plain })
}

fn common_header(
    set_id: &[u8; SET_ID_LEN],
    threshold: u8,
    shares: u8,
    nonce: &[u8; NONCE_LEN],
    label: &str,
) -> Result<Vec<u8>> {
    let label_len = u16::try_from(label.len()).map_err(|_| ExportError::LabelTooLong)?;
    let mut h = Vec::with_capacity(41 + label.len());
    h.extend_from_slice(SHARE_MAGIC);
    h.push(SHARE_FORMAT_VERSION);
    h.extend_from_slice(set_id);
    h.push(threshold);
    h.push(shares);
    h.extend_from_slice(nonce);
    h.extend_from_slice(&label_len.to_be_bytes());
    h.extend_from_slice(label.as_bytes());
    Ok(h)
}

/// A share file's fields, borrowed from its bytes.
struct ParsedShare<'a> {
    /// The common header (associated data).
    header: &'a [u8],
    set_id: &'a [u8],
    threshold: u8,
    nonce: &'a [u8],
    label: &'a str,
    index: u8,
    key_share: &'a [u8],
    ciphertext: &'a [u8],
}

impl<'a> ParsedShare<'a> {
    fn parse(bytes: &'a [u8], position: usize) -> Result<Self> {
        if bytes.len() < SHARE_MAGIC.len() + 1 || !bytes.starts_with(SHARE_MAGIC) {
            return Err(ExportError::NotAShareFile { position });
        }
        let version = bytes[SHARE_MAGIC.len()];
        if version != SHARE_FORMAT_VERSION {
            return Err(ExportError::UnsupportedShareVersion { position, version });
        }
        let corrupt = ExportError::CorruptShare { position };
        if bytes.len() < FIXED_LEN + TAG_LEN {
            return Err(corrupt);
        }
        let (content, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if Sha256::digest(content).as_slice() != checksum {
            return Err(corrupt);
        }

        let mut r = Reader { bytes: content, at: SHARE_MAGIC.len() + 1 };
        let set_id = r.take(SET_ID_LEN).ok_or(ExportError::CorruptShare { position })?;
        let threshold = r.byte().ok_or(ExportError::CorruptShare { position })?;
        let shares = r.byte().ok_or(ExportError::CorruptShare { position })?;
        let nonce = r.take(NONCE_LEN).ok_or(ExportError::CorruptShare { position })?;
        let label_len = r.take(2).ok_or(ExportError::CorruptShare { position })?;
        let label_len = usize::from(u16::from_be_bytes([label_len[0], label_len[1]]));
        let label = r.take(label_len).ok_or(ExportError::CorruptShare { position })?;
        let header = &content[..r.at];
        let index = r.byte().ok_or(ExportError::CorruptShare { position })?;
        let key_share = r.take(KEY_LEN).ok_or(ExportError::CorruptShare { position })?;
        let ct_len = r.take(8).ok_or(ExportError::CorruptShare { position })?;
        let ct_len = u64::from_be_bytes(ct_len.try_into().map_err(|_| ExportError::CorruptShare { position })?);
        let ct_len = usize::try_from(ct_len).map_err(|_| ExportError::CorruptShare { position })?;
        let ciphertext = r.take(ct_len).ok_or(ExportError::CorruptShare { position })?;

        let well_formed = r.at == content.len()
            && (2..=shares).contains(&threshold)
            && shares <= MAX_SHARES
            && (1..=shares).contains(&index)
            && label_len <= MAX_LABEL_LEN
            && ciphertext.len() >= TAG_LEN;
        if !well_formed {
            return Err(ExportError::CorruptShare { position });
        }
        let label = std::str::from_utf8(label).map_err(|_| ExportError::CorruptShare { position })?;
        Ok(Self { header, set_id, threshold, nonce, label, index, key_share, ciphertext })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(out)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
}

#[cfg(test)]
mod tests;
