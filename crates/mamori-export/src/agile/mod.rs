//! Password-protected Office documents: ECMA-376 **agile encryption** (MS-OFFCRYPTO
//! 2.3.4.10–2.3.4.15), the format Excel writes for "Encrypt with Password" since Office 2010.
//!
//! The parameters are fixed to Excel's own defaults: AES-256 in CBC mode, SHA-512, a spin
//! count of 100,000, 16-byte salts, a password key encryptor, and the data-integrity HMAC
//! (HMAC-SHA-512 over the whole `EncryptedPackage` stream, key and value stored encrypted).
//!
//! File layout, in an OLE compound file (MS-CFB, version 3):
//!
//! - `EncryptionInfo` stream: version 4.4, flags 0x40, then the `<encryption>` XML
//!   (2.3.4.10) with `keyData`, `dataIntegrity` and one `p:encryptedKey`.
//! - `EncryptedPackage` stream (2.3.4.4): the package size as u64 little-endian, then the
//!   package in 4,096-byte segments, each AES-CBC-encrypted under the file's random secret
//!   key with IV = SHA-512(keyData salt ‖ segment index as u32 LE)[..16]; the last segment is
//!   zero-padded to the 16-byte block.
//! - `\x06DataSpaces` storage: the data-space definitions Office expects
//!   (see `dataspaces.rs`).
//!
//! Key derivation (2.3.4.11): H₀ = SHA-512(salt ‖ UTF-16LE(password)),
//! Hᵢ = SHA-512(i as u32 LE ‖ Hᵢ₋₁) for i in 0..100,000, then for each use a key
//! SHA-512(Hₙ ‖ block key)[..32]. The password verifier (2.3.4.13) is a random 16-byte value
//! and its SHA-512, each encrypted under its own derived key; the secret key is encrypted
//! under a third.
//!
//! Only AES / CBC / SHA-512 / 256-bit files are *read* (what this crate and current Excel
//! write); anything else is [`ExportError::UnsupportedEncryption`].

mod dataspaces;

use std::io::{Cursor, Read, Write};

use aes::Aes256;
use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyInit, KeyIvInit};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{ExportError, Result};
use crate::password::SecretPassword;

type CbcEnc = cbc::Encryptor<Aes256>;
type CbcDec = cbc::Decryptor<Aes256>;
type HmacSha512 = Hmac<Sha512>;

/// Spin count (hash iterations of the password key derivation) written; Excel's default.
pub const SPIN_COUNT: u32 = 100_000;
/// The largest spin count [`decrypt_ooxml`] accepts (a hostile file could ask for billions).
const MAX_SPIN_COUNT: u32 = 10_000_000;
/// The largest EncryptionInfo stream read.
const MAX_INFO_LEN: u64 = 1 << 20;

const SEGMENT: usize = 4096;
const BLOCK: usize = 16;
const KEY_LEN: usize = 32;
const HASH_LEN: usize = 64;
const SALT_LEN: usize = 16;

// Block keys of MS-OFFCRYPTO 2.3.4.13 and 2.3.4.14.
const BLOCK_KEY_VERIFIER_INPUT: [u8; 8] = [0xfe, 0xa7, 0xd2, 0x76, 0x3b, 0x4b, 0x9e, 0x79];
const BLOCK_KEY_VERIFIER_VALUE: [u8; 8] = [0xd7, 0xaa, 0x0f, 0x6d, 0x30, 0x61, 0x34, 0x4e];
const BLOCK_KEY_SECRET_KEY: [u8; 8] = [0x14, 0x6e, 0x0b, 0xe7, 0xab, 0xac, 0xd0, 0xd6];
const BLOCK_KEY_HMAC_KEY: [u8; 8] = [0x5f, 0xb2, 0xad, 0x01, 0x0c, 0xb9, 0xe1, 0xf6];
const BLOCK_KEY_HMAC_VALUE: [u8; 8] = [0xa0, 0x67, 0x7f, 0x02, 0xb2, 0x2c, 0x84, 0x33];

const NS_ENCRYPTION: &str = "http://schemas.microsoft.com/office/2006/encryption";
const NS_PASSWORD: &str = "http://schemas.microsoft.com/office/2006/keyEncryptor/password";
const NS_CERTIFICATE: &str = "http://schemas.microsoft.com/office/2006/keyEncryptor/certificate";

const STREAM_INFO: &str = "/EncryptionInfo";
const STREAM_PACKAGE: &str = "/EncryptedPackage";

/// Encrypts an OOXML package (the bytes of an `.xlsx`, `.docx`, … zip) with `password`,
/// giving the bytes of a password-protected Office document that Excel opens after asking
/// for the password. See the module documentation for the exact format.
///
/// # Errors
/// [`ExportError::NotOoxmlPackage`] if `package` does not start like a zip file (a guard
/// against encrypting, say, a CSV file into something Excel cannot open);
/// [`ExportError::PasswordLength`] for an empty password or one longer than 255 UTF-16
/// code units (Office's limit); [`ExportError::Random`] if the OS random source fails;
/// [`ExportError::Container`] if the compound file cannot be built.
pub fn encrypt_ooxml(package: &[u8], password: &SecretPassword) -> Result<Vec<u8>> {
    if !package.starts_with(b"PK\x03\x04") {
        return Err(ExportError::NotOoxmlPackage);
    }
    let pw_units = password.expose().encode_utf16().count();
    if pw_units == 0 || pw_units > 255 {
        return Err(ExportError::PasswordLength);
    }

    let key_data_salt: [u8; SALT_LEN] = random()?;
    let password_salt: [u8; SALT_LEN] = random()?;
    let secret_key = Zeroizing::new(random::<KEY_LEN>()?);
    let verifier_input = Zeroizing::new(random::<SALT_LEN>()?);
    // Excel uses an HMAC key as long as the hash (64 bytes), not the salt size the text of
    // 2.3.4.14 suggests; readers take the key length from the decrypted value.
    let hmac_key = Zeroizing::new(random::<HASH_LEN>()?);

    // EncryptedPackage
    let cipher = Aes256::new((&*secret_key).into());
    let mut encrypted_package = Vec::with_capacity(8 + round_up(package.len()));
    encrypted_package.extend_from_slice(&(package.len() as u64).to_le_bytes());
    for (i, segment) in package.chunks(SEGMENT).enumerate() {
        let iv = segment_iv(&key_data_salt, i)?;
        let start = encrypted_package.len();
        encrypted_package.extend_from_slice(segment);
        encrypted_package.resize(start + round_up(segment.len()), 0);
        CbcEnc::inner_iv_init(cipher.clone(), (&iv).into())
            .encrypt_padded_mut::<NoPadding>(&mut encrypted_package[start..], round_up(segment.len()))
            .map_err(|_| ExportError::Container)?;
    }

    // dataIntegrity
    let mut mac = <HmacSha512 as Mac>::new_from_slice(&hmac_key[..]).map_err(|_| ExportError::Container)?;
    mac.update(&encrypted_package);
    let hmac_value = Zeroizing::new(<[u8; HASH_LEN]>::from(mac.finalize().into_bytes()));
    let encrypted_hmac_key = cbc_encrypt(&secret_key, &salted_iv(&key_data_salt, &BLOCK_KEY_HMAC_KEY), &hmac_key[..])?;
    let encrypted_hmac_value =
        cbc_encrypt(&secret_key, &salted_iv(&key_data_salt, &BLOCK_KEY_HMAC_VALUE), &hmac_value[..])?;

    // Password key encryptor
    let h = password_hash(password, &password_salt, SPIN_COUNT);
    let iv: [u8; BLOCK] = password_salt;
    let verifier_hash = Zeroizing::new(<[u8; HASH_LEN]>::from(Sha512::digest(&verifier_input[..])));
    let encrypted_verifier_input = cbc_encrypt(&derive_key(&h, &BLOCK_KEY_VERIFIER_INPUT), &iv, &verifier_input[..])?;
    let encrypted_verifier_hash = cbc_encrypt(&derive_key(&h, &BLOCK_KEY_VERIFIER_VALUE), &iv, &verifier_hash[..])?;
    let encrypted_key_value = cbc_encrypt(&derive_key(&h, &BLOCK_KEY_SECRET_KEY), &iv, &secret_key[..])?;

    let xml = format!(
        concat!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\r\n",
            "<encryption xmlns=\"{ns}\" xmlns:p=\"{ns_p}\" xmlns:c=\"{ns_c}\">",
            "<keyData saltSize=\"16\" blockSize=\"16\" keyBits=\"256\" hashSize=\"64\" ",
            "cipherAlgorithm=\"AES\" cipherChaining=\"ChainingModeCBC\" hashAlgorithm=\"SHA512\" ",
            "saltValue=\"{kd_salt}\"/>",
            "<dataIntegrity encryptedHmacKey=\"{hmac_key}\" encryptedHmacValue=\"{hmac_value}\"/>",
            "<keyEncryptors><keyEncryptor uri=\"{ns_p}\">",
            "<p:encryptedKey spinCount=\"{spin}\" saltSize=\"16\" blockSize=\"16\" keyBits=\"256\" ",
            "hashSize=\"64\" cipherAlgorithm=\"AES\" cipherChaining=\"ChainingModeCBC\" ",
            "hashAlgorithm=\"SHA512\" saltValue=\"{pw_salt}\" ",
            "encryptedVerifierHashInput=\"{v_input}\" encryptedVerifierHashValue=\"{v_value}\" ",
            "encryptedKeyValue=\"{key_value}\"/>",
            "</keyEncryptor></keyEncryptors></encryption>"
        ),
        ns = NS_ENCRYPTION,
        ns_p = NS_PASSWORD,
        ns_c = NS_CERTIFICATE,
        kd_salt = B64.encode(key_data_salt),
        hmac_key = B64.encode(&encrypted_hmac_key),
        hmac_value = B64.encode(&encrypted_hmac_value),
        spin = SPIN_COUNT,
        pw_salt = B64.encode(password_salt),
        v_input = B64.encode(&encrypted_verifier_input),
        v_value = B64.encode(&encrypted_verifier_hash),
        key_value = B64.encode(&encrypted_key_value),
    );
    let mut info = Vec::with_capacity(8 + xml.len());
    info.extend_from_slice(&4u16.to_le_bytes());
    info.extend_from_slice(&4u16.to_le_bytes());
    info.extend_from_slice(&0x40u32.to_le_bytes());
    info.extend_from_slice(xml.as_bytes());

    write_compound_file(&info, &encrypted_package).map_err(|_| ExportError::Container)
}

fn write_compound_file(info: &[u8], package: &[u8]) -> std::io::Result<Vec<u8>> {
    let capacity = package.len() + info.len() + 64 * 1024;
    let mut cf = cfb::CompoundFile::create_with_version(cfb::Version::V3, Cursor::new(Vec::with_capacity(capacity)))?;
    for storage in
        [dataspaces::STORAGE, dataspaces::STORAGE_INFO, dataspaces::STORAGE_TRANSFORMS, dataspaces::STORAGE_TRANSFORM]
    {
        cf.create_storage(storage)?;
    }
    for (path, data) in [
        (dataspaces::STREAM_VERSION, dataspaces::version()),
        (dataspaces::STREAM_MAP, dataspaces::data_space_map()),
        (dataspaces::STREAM_DEFINITION, dataspaces::data_space_definition()),
        (dataspaces::STREAM_PRIMARY, dataspaces::primary()),
    ] {
        cf.create_stream(path)?.write_all(&data)?;
    }
    cf.create_stream(STREAM_INFO)?.write_all(info)?;
    cf.create_stream(STREAM_PACKAGE)?.write_all(package)?;
    // No wall-clock time in the file: storages get the Unix epoch as their timestamps.
    for storage in [
        "/",
        dataspaces::STORAGE,
        dataspaces::STORAGE_INFO,
        dataspaces::STORAGE_TRANSFORMS,
        dataspaces::STORAGE_TRANSFORM,
    ] {
        cf.set_created_time(storage, std::time::UNIX_EPOCH)?;
        cf.set_modified_time(storage, std::time::UNIX_EPOCH)?;
    }
    cf.flush()?;
    Ok(cf.into_inner().into_inner())
}

/// Decrypts a password-protected Office document written with agile encryption (by this
/// crate or by Excel with its default settings) and returns the OOXML package (zip bytes).
///
/// The order of checks: the container and its streams; the EncryptionInfo; the password
/// verifier (→ [`ExportError::WrongPassword`]); the data-integrity HMAC over the whole
/// `EncryptedPackage` stream, compared in constant time (→
/// [`ExportError::IntegrityCheckFailed`]); only then is anything decrypted. Nothing is
/// returned from a file that fails a check.
///
/// # Errors
/// [`ExportError::NotEncryptedOffice`], [`ExportError::UnsupportedEncryption`],
/// [`ExportError::MalformedEncryptionInfo`], [`ExportError::WrongPassword`],
/// [`ExportError::IntegrityCheckFailed`].
pub fn decrypt_ooxml(file: &[u8], password: &SecretPassword) -> Result<Zeroizing<Vec<u8>>> {
    let mut cf = cfb::CompoundFile::open(Cursor::new(file))
        .map_err(|_| ExportError::NotEncryptedOffice("not an OLE compound file"))?;
    let info = read_stream(&mut cf, STREAM_INFO, MAX_INFO_LEN)
        .ok_or(ExportError::NotEncryptedOffice("no EncryptionInfo stream"))?;
    let package = read_stream(&mut cf, STREAM_PACKAGE, file.len() as u64)
        .ok_or(ExportError::NotEncryptedOffice("no EncryptedPackage stream"))?;

    let params = AgileInfo::parse(&info)?;

    // Password verifier
    let h = password_hash(password, &params.password_salt, params.spin_count);
    let iv = params.password_salt;
    let verifier_input =
        cbc_decrypt(&derive_key(&h, &BLOCK_KEY_VERIFIER_INPUT), &iv, &params.encrypted_verifier_input, SALT_LEN)?;
    let verifier_hash =
        cbc_decrypt(&derive_key(&h, &BLOCK_KEY_VERIFIER_VALUE), &iv, &params.encrypted_verifier_hash, HASH_LEN)?;
    let expected = Sha512::digest(&verifier_input[..]);
    if !bool::from(expected.as_slice().ct_eq(&verifier_hash[..])) {
        return Err(ExportError::WrongPassword);
    }
    let secret_key = cbc_decrypt(&derive_key(&h, &BLOCK_KEY_SECRET_KEY), &iv, &params.encrypted_key_value, KEY_LEN)?;
    let secret_key: Zeroizing<[u8; KEY_LEN]> = Zeroizing::new(
        secret_key[..].try_into().map_err(|_| ExportError::MalformedEncryptionInfo("encryptedKeyValue"))?,
    );

    // dataIntegrity, before any decryption of content
    let hmac_key_len = if params.encrypted_hmac_key.len() >= HASH_LEN { HASH_LEN } else { SALT_LEN };
    let hmac_key = cbc_decrypt(
        &secret_key,
        &salted_iv(&params.key_data_salt, &BLOCK_KEY_HMAC_KEY),
        &params.encrypted_hmac_key,
        hmac_key_len,
    )?;
    let hmac_value = cbc_decrypt(
        &secret_key,
        &salted_iv(&params.key_data_salt, &BLOCK_KEY_HMAC_VALUE),
        &params.encrypted_hmac_value,
        HASH_LEN,
    )?;
    let mut mac = <HmacSha512 as Mac>::new_from_slice(&hmac_key[..]).map_err(|_| ExportError::IntegrityCheckFailed)?;
    mac.update(&package);
    mac.verify_slice(&hmac_value[..]).map_err(|_| ExportError::IntegrityCheckFailed)?;

    // EncryptedPackage
    let (size, data) = package.split_first_chunk::<8>().ok_or(ExportError::IntegrityCheckFailed)?;
    let size = usize::try_from(u64::from_le_bytes(*size)).map_err(|_| ExportError::IntegrityCheckFailed)?;
    let needed = round_up(size);
    if size > data.len() || needed > data.len() {
        return Err(ExportError::IntegrityCheckFailed);
    }
    let cipher = Aes256::new((&*secret_key).into());
    let mut plain = Zeroizing::new(Vec::with_capacity(needed));
    for (i, segment) in data[..needed].chunks(SEGMENT).enumerate() {
        let iv = segment_iv(&params.key_data_salt, i)?;
        let start = plain.len();
        plain.extend_from_slice(segment);
        CbcDec::inner_iv_init(cipher.clone(), (&iv).into())
            .decrypt_padded_mut::<NoPadding>(&mut plain[start..])
            .map_err(|_| ExportError::IntegrityCheckFailed)?;
    }
    plain.truncate(size);
    Ok(plain)
}

fn read_stream<F: Read + std::io::Seek>(cf: &mut cfb::CompoundFile<F>, path: &str, max: u64) -> Option<Vec<u8>> {
    let mut stream = cf.open_stream(path).ok()?;
    if stream.len() > max {
        return None;
    }
    let mut out = Vec::with_capacity(usize::try_from(stream.len()).ok()?);
    stream.read_to_end(&mut out).ok()?;
    Some(out)
}

/// What [`decrypt_ooxml`] needs from the EncryptionInfo stream.
struct AgileInfo {
    key_data_salt: Vec<u8>,
    encrypted_hmac_key: Vec<u8>,
    encrypted_hmac_value: Vec<u8>,
    spin_count: u32,
    password_salt: [u8; SALT_LEN],
    encrypted_verifier_input: Vec<u8>,
    encrypted_verifier_hash: Vec<u8>,
    encrypted_key_value: Vec<u8>,
}

impl AgileInfo {
    fn parse(info: &[u8]) -> Result<Self> {
        let (header, xml) = info.split_first_chunk::<8>().ok_or(ExportError::MalformedEncryptionInfo("too short"))?;
        let major = u16::from_le_bytes([header[0], header[1]]);
        let minor = u16::from_le_bytes([header[2], header[3]]);
        let flags = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        match (major, minor) {
            (4, 4) => {}
            (2..=4, 2) => {
                return Err(ExportError::UnsupportedEncryption(
                    "standard encryption (Office 2007); only agile encryption is read",
                ));
            }
            (3 | 4, 3) => {
                return Err(ExportError::UnsupportedEncryption("extensible encryption"));
            }
            _ => return Err(ExportError::UnsupportedEncryption("unknown EncryptionInfo version")),
        }
        if flags != 0x40 {
            return Err(ExportError::MalformedEncryptionInfo("agile flags must be 0x40"));
        }
        let xml = std::str::from_utf8(xml).map_err(|_| ExportError::MalformedEncryptionInfo("XML is not UTF-8"))?;
        // Some writers leave NULs or whitespace after the XML.
        let xml = xml.trim_end_matches(['\0', '\r', '\n', ' ']);
        let doc =
            roxmltree::Document::parse(xml).map_err(|_| ExportError::MalformedEncryptionInfo("XML does not parse"))?;
        let root = doc.root_element();
        if !root.has_tag_name((NS_ENCRYPTION, "encryption")) {
            return Err(ExportError::MalformedEncryptionInfo("no <encryption> element"));
        }
        let key_data =
            child(root, NS_ENCRYPTION, "keyData").ok_or(ExportError::MalformedEncryptionInfo("no <keyData>"))?;
        check_cipher_params(key_data)?;
        let integrity = child(root, NS_ENCRYPTION, "dataIntegrity")
            .ok_or(ExportError::UnsupportedEncryption("no <dataIntegrity>: the file cannot be verified"))?;
        let encrypted_key = child(root, NS_ENCRYPTION, "keyEncryptors")
            .into_iter()
            .flat_map(|k| k.children())
            .filter(|k| k.has_tag_name((NS_ENCRYPTION, "keyEncryptor")))
            .filter(|k| k.attribute("uri") == Some(NS_PASSWORD))
            .find_map(|k| child(k, NS_PASSWORD, "encryptedKey"))
            .ok_or(ExportError::UnsupportedEncryption("no password key encryptor (certificate-only protection)"))?;
        check_cipher_params(encrypted_key)?;

        let spin_count: u32 =
            attr(encrypted_key, "spinCount")?.parse().map_err(|_| ExportError::MalformedEncryptionInfo("spinCount"))?;
        if spin_count > MAX_SPIN_COUNT {
            return Err(ExportError::UnsupportedEncryption("spinCount above 10,000,000"));
        }
        let key_data_salt = b64(key_data, "saltValue")?;
        if key_data_salt.len() != SALT_LEN {
            return Err(ExportError::UnsupportedEncryption("keyData salt is not 16 bytes"));
        }
        let password_salt: [u8; SALT_LEN] = b64(encrypted_key, "saltValue")?
            .try_into()
            .map_err(|_| ExportError::UnsupportedEncryption("password salt is not 16 bytes"))?;
        Ok(Self {
            key_data_salt,
            encrypted_hmac_key: b64(integrity, "encryptedHmacKey")?,
            encrypted_hmac_value: b64(integrity, "encryptedHmacValue")?,
            spin_count,
            password_salt,
            encrypted_verifier_input: b64(encrypted_key, "encryptedVerifierHashInput")?,
            encrypted_verifier_hash: b64(encrypted_key, "encryptedVerifierHashValue")?,
            encrypted_key_value: b64(encrypted_key, "encryptedKeyValue")?,
        })
    }
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, ns: &str, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|n| n.has_tag_name((ns, name)))
}

fn attr<'a>(node: roxmltree::Node<'a, '_>, name: &'static str) -> Result<&'a str> {
    node.attribute(name).ok_or(ExportError::MalformedEncryptionInfo(name))
}

fn b64(node: roxmltree::Node<'_, '_>, name: &'static str) -> Result<Vec<u8>> {
    B64.decode(attr(node, name)?.trim()).map_err(|_| ExportError::MalformedEncryptionInfo(name))
}

fn check_cipher_params(node: roxmltree::Node<'_, '_>) -> Result<()> {
    let expect = |name: &'static str, value: &str, what: &'static str| -> Result<()> {
        if attr(node, name)? == value { Ok(()) } else { Err(ExportError::UnsupportedEncryption(what)) }
    };
    expect("cipherAlgorithm", "AES", "cipher other than AES")?;
    expect("cipherChaining", "ChainingModeCBC", "chaining other than CBC")?;
    expect("hashAlgorithm", "SHA512", "hash other than SHA-512")?;
    expect("keyBits", "256", "key size other than 256 bits")?;
    expect("blockSize", "16", "block size other than 16")?;
    expect("hashSize", "64", "hash size other than 64")?;
    Ok(())
}

/// H₀ = SHA-512(salt ‖ UTF-16LE(password)); Hᵢ₊₁ = SHA-512(i as u32 LE ‖ Hᵢ).
fn password_hash(password: &SecretPassword, salt: &[u8], spin_count: u32) -> Zeroizing<[u8; HASH_LEN]> {
    let utf16: Zeroizing<Vec<u8>> =
        Zeroizing::new(password.expose().encode_utf16().flat_map(u16::to_le_bytes).collect());
    let mut h = Zeroizing::new([0u8; HASH_LEN]);
    let mut hasher = Sha512::new();
    hasher.update(salt);
    hasher.update(&utf16[..]);
    hasher.finalize_into_reset((&mut *h).into());
    for i in 0..spin_count {
        hasher.update(i.to_le_bytes());
        hasher.update(&h[..]);
        hasher.finalize_into_reset((&mut *h).into());
    }
    h
}

/// SHA-512(H ‖ block key), truncated to the key size (2.3.4.11).
fn derive_key(h: &[u8; HASH_LEN], block_key: &[u8; 8]) -> Zeroizing<[u8; KEY_LEN]> {
    let mut full = Zeroizing::new([0u8; HASH_LEN]);
    let mut hasher = Sha512::new();
    hasher.update(h);
    hasher.update(block_key);
    hasher.finalize_into((&mut *full).into());
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&full[..KEY_LEN]);
    key
}

/// SHA-512(keyData salt ‖ block key)[..16] (2.3.4.12).
fn salted_iv(salt: &[u8], block_key: &[u8]) -> [u8; BLOCK] {
    let digest = Sha512::new().chain_update(salt).chain_update(block_key).finalize();
    let mut iv = [0u8; BLOCK];
    iv.copy_from_slice(&digest[..BLOCK]);
    iv
}

fn segment_iv(salt: &[u8], index: usize) -> Result<[u8; BLOCK]> {
    let index = u32::try_from(index).map_err(|_| ExportError::Container)?;
    Ok(salted_iv(salt, &index.to_le_bytes()))
}

fn round_up(n: usize) -> usize {
    n.div_ceil(BLOCK) * BLOCK
}

/// AES-256-CBC over `data` zero-padded to the block size.
fn cbc_encrypt(key: &[u8; KEY_LEN], iv: &[u8; BLOCK], data: &[u8]) -> Result<Vec<u8>> {
    let mut buf = Zeroizing::new(vec![0u8; round_up(data.len())]);
    buf[..data.len()].copy_from_slice(data);
    let len = buf.len();
    CbcEnc::new(key.into(), iv.into())
        .encrypt_padded_mut::<NoPadding>(&mut buf, len)
        .map_err(|_| ExportError::Container)?;
    Ok(buf.to_vec())
}

/// AES-256-CBC decryption of a whole number of blocks; the first `keep` bytes are returned.
fn cbc_decrypt(key: &[u8; KEY_LEN], iv: &[u8; BLOCK], data: &[u8], keep: usize) -> Result<Zeroizing<Vec<u8>>> {
    if !data.len().is_multiple_of(BLOCK) || data.len() < keep {
        return Err(ExportError::MalformedEncryptionInfo("encrypted value has a bad length"));
    }
    let mut buf = Zeroizing::new(data.to_vec());
    CbcDec::new(key.into(), iv.into())
        .decrypt_padded_mut::<NoPadding>(&mut buf)
        .map_err(|_| ExportError::MalformedEncryptionInfo("encrypted value has a bad length"))?;
    buf.truncate(keep);
    Ok(buf)
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| ExportError::Random)?;
    Ok(out)
}

#[cfg(test)]
mod tests;
