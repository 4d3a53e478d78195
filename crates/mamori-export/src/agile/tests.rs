use std::io::{Cursor, Read, Seek, SeekFrom, Write};

use super::*;

/// A made-up stand-in for an XLSX package: 3 full segments and a partial one, so segment IVs
/// and the zero padding of the last block are exercised.
fn package() -> Vec<u8> {
    sized_package(3 * SEGMENT + 1234)
}

/// `len` bytes that start like a zip file (the only check `encrypt_ooxml` makes).
fn sized_package(len: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    p[..4].copy_from_slice(b"PK\x03\x04");
    p
}

fn pw(s: &str) -> SecretPassword {
    SecretPassword::new(s)
}

/// Reads a stream of the compound file.
fn stream(file: &[u8], path: &str) -> Vec<u8> {
    let mut cf = cfb::CompoundFile::open(Cursor::new(file)).unwrap();
    let mut s = cf.open_stream(path).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

/// Rewrites a stream of the compound file through `edit`.
fn edit_stream(file: &[u8], path: &str, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut data = stream(file, path);
    edit(&mut data);
    let mut cf = cfb::CompoundFile::open(Cursor::new(file.to_vec())).unwrap();
    {
        let mut s = cf.create_stream(path).unwrap(); // truncates the existing stream
        s.seek(SeekFrom::Start(0)).unwrap();
        s.write_all(&data).unwrap();
    }
    cf.flush().unwrap();
    cf.into_inner().into_inner()
}

#[test]
fn round_trip() {
    let p = package();
    let password = pw("correct horse");
    let file = encrypt_ooxml(&p, &password).unwrap();
    assert!(file.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]));
    let back = decrypt_ooxml(&file, &password).unwrap();
    assert_eq!(&back[..], &p[..]);
}

#[test]
fn round_trip_of_small_and_exact_segment_packages() {
    let password = pw("pw");
    for len in [4, 15, 16, 17, SEGMENT - 1, SEGMENT, SEGMENT + 16, 2 * SEGMENT] {
        let p = sized_package(len);
        let file = encrypt_ooxml(&p, &password).unwrap();
        assert_eq!(&decrypt_ooxml(&file, &password).unwrap()[..], &p[..], "len {len}");
    }
}

#[test]
fn japanese_password_round_trip() {
    let password = pw("持ち出し用パスワード");
    let file = encrypt_ooxml(&package(), &password).unwrap();
    assert_eq!(&decrypt_ooxml(&file, &password).unwrap()[..], &package()[..]);
}

#[test]
fn wrong_password_is_rejected() {
    let file = encrypt_ooxml(&package(), &pw("right")).unwrap();
    assert!(matches!(decrypt_ooxml(&file, &pw("wrong")), Err(ExportError::WrongPassword)));
    assert!(matches!(decrypt_ooxml(&file, &pw("Right")), Err(ExportError::WrongPassword)));
}

#[test]
fn flipped_byte_in_encrypted_package_is_detected() {
    let password = pw("pw");
    let file = encrypt_ooxml(&package(), &password).unwrap();
    for at in [0, 8, 100, 2 * SEGMENT + 8, 3 * SEGMENT + 1240] {
        let tampered = edit_stream(&file, STREAM_PACKAGE, |d| d[at] ^= 0x01);
        assert!(matches!(decrypt_ooxml(&tampered, &password), Err(ExportError::IntegrityCheckFailed)), "flip at {at}");
    }
}

#[test]
fn truncated_encrypted_package_is_detected() {
    let password = pw("pw");
    let file = encrypt_ooxml(&package(), &password).unwrap();
    let tampered = edit_stream(&file, STREAM_PACKAGE, |d| d.truncate(d.len() - 16));
    assert!(matches!(decrypt_ooxml(&tampered, &password), Err(ExportError::IntegrityCheckFailed)));
}

#[test]
fn swapped_segments_are_detected() {
    let password = pw("pw");
    let file = encrypt_ooxml(&package(), &password).unwrap();
    let tampered = edit_stream(&file, STREAM_PACKAGE, |d| {
        let (a, b) = d[8..].split_at_mut(SEGMENT);
        a.swap_with_slice(&mut b[..SEGMENT]);
    });
    assert!(matches!(decrypt_ooxml(&tampered, &password), Err(ExportError::IntegrityCheckFailed)));
}

#[test]
fn edited_integrity_values_are_detected() {
    let password = pw("pw");
    let file = encrypt_ooxml(&package(), &password).unwrap();
    let info = stream(&file, STREAM_INFO);
    let xml = std::str::from_utf8(&info[8..]).unwrap();
    for attr_name in ["encryptedHmacValue", "encryptedHmacKey", "saltValue"] {
        // Replace the first value of the attribute with freshly random bytes of the same size.
        let start = xml.find(&format!("{attr_name}=\"")).unwrap() + attr_name.len() + 2;
        let end = start + xml[start..].find('"').unwrap();
        let len = B64.decode(&xml[start..end]).unwrap().len();
        let mut junk = vec![0u8; len];
        getrandom::fill(&mut junk).unwrap();
        let new_xml = format!("{}{}{}", &xml[..start], B64.encode(&junk), &xml[end..]);
        let tampered = edit_stream(&file, STREAM_INFO, |d| {
            d.truncate(8);
            d.extend_from_slice(new_xml.as_bytes());
        });
        assert!(matches!(decrypt_ooxml(&tampered, &password), Err(ExportError::IntegrityCheckFailed)), "{attr_name}");
    }
}

#[test]
fn not_a_compound_file_is_a_clear_error() {
    let err = decrypt_ooxml(b"PK\x03\x04 a plain zip", &pw("pw")).unwrap_err();
    assert!(matches!(err, ExportError::NotEncryptedOffice(_)));
    assert_eq!(err.to_string(), "not an encrypted Office document: not an OLE compound file");
    assert!(matches!(decrypt_ooxml(b"", &pw("pw")), Err(ExportError::NotEncryptedOffice(_))));
}

#[test]
fn compound_file_without_the_streams_is_a_clear_error() {
    let mut cf = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
    cf.create_stream("/WordDocument").unwrap().write_all(b"x").unwrap();
    cf.flush().unwrap();
    let file = cf.into_inner().into_inner();
    let err = decrypt_ooxml(&file, &pw("pw")).unwrap_err();
    assert_eq!(err.to_string(), "not an encrypted Office document: no EncryptionInfo stream");
}

#[test]
fn standard_encryption_is_reported_as_unsupported() {
    let file = encrypt_ooxml(&package(), &pw("pw")).unwrap();
    let tampered = edit_stream(&file, STREAM_INFO, |d| d[..4].copy_from_slice(&[3, 0, 2, 0]));
    assert!(matches!(decrypt_ooxml(&tampered, &pw("pw")), Err(ExportError::UnsupportedEncryption(_))));
}

#[test]
fn huge_spin_count_is_refused() {
    let file = encrypt_ooxml(&package(), &pw("pw")).unwrap();
    let tampered = edit_stream(&file, STREAM_INFO, |d| {
        let s = String::from_utf8(d.clone()[8..].to_vec()).unwrap();
        let s = s.replace("spinCount=\"100000\"", "spinCount=\"4000000000\"");
        d.truncate(8);
        d.extend_from_slice(s.as_bytes());
    });
    assert!(matches!(decrypt_ooxml(&tampered, &pw("pw")), Err(ExportError::UnsupportedEncryption(_))));
}

#[test]
fn empty_or_overlong_password_is_refused() {
    let p = sized_package(100);
    assert!(matches!(encrypt_ooxml(&p, &pw("")), Err(ExportError::PasswordLength)));
    assert!(matches!(encrypt_ooxml(&p, &pw(&"a".repeat(256))), Err(ExportError::PasswordLength)));
    assert!(encrypt_ooxml(&p, &pw(&"a".repeat(255))).is_ok());
}

#[test]
fn something_other_than_a_zip_is_not_encrypted() {
    for not_zip in [&b""[..], b"PK", "氏名,住所\r\n".as_bytes(), b"\xD0\xCF\x11\xE0"] {
        assert!(matches!(encrypt_ooxml(not_zip, &pw("pw")), Err(ExportError::NotOoxmlPackage)));
    }
}

#[test]
fn encryption_info_header_and_parameters() {
    let file = encrypt_ooxml(&package(), &pw("pw")).unwrap();
    let info = stream(&file, STREAM_INFO);
    assert_eq!(&info[..8], &[4, 0, 4, 0, 0x40, 0, 0, 0]);
    let xml = std::str::from_utf8(&info[8..]).unwrap();
    for expected in [
        "spinCount=\"100000\"",
        "cipherAlgorithm=\"AES\"",
        "cipherChaining=\"ChainingModeCBC\"",
        "hashAlgorithm=\"SHA512\"",
        "keyBits=\"256\"",
        "<dataIntegrity ",
    ] {
        assert!(xml.contains(expected), "{expected}");
    }
    let pkg = stream(&file, STREAM_PACKAGE);
    assert_eq!(u64::from_le_bytes(pkg[..8].try_into().unwrap()), package().len() as u64);
    assert_eq!(pkg.len(), 8 + round_up(package().len()));
    // The data spaces Office expects are there.
    assert_eq!(stream(&file, dataspaces::STREAM_PRIMARY), dataspaces::primary());
}

#[test]
fn two_encryptions_of_one_package_share_nothing() {
    let p = package();
    let a = encrypt_ooxml(&p, &pw("pw")).unwrap();
    let b = encrypt_ooxml(&p, &pw("pw")).unwrap();
    let pa = stream(&a, STREAM_PACKAGE);
    let pb = stream(&b, STREAM_PACKAGE);
    assert_ne!(pa[8..24], pb[8..24], "fresh key and salt each time");
}

#[test]
fn key_derivation_matches_a_hand_computed_chain() {
    // Spin count 2 written out with the primitives: H0 = H(salt‖pw), H1 = H(0‖H0),
    // H2 = H(1‖H1); key = H(H2‖block key)[..32].
    let salt = [7u8; 16];
    let pw_bytes: Vec<u8> = "ab".encode_utf16().flat_map(u16::to_le_bytes).collect();
    let h0 = Sha512::new().chain_update(salt).chain_update(&pw_bytes).finalize();
    let h1 = Sha512::new().chain_update(0u32.to_le_bytes()).chain_update(h0).finalize();
    let h2 = Sha512::new().chain_update(1u32.to_le_bytes()).chain_update(h1).finalize();
    let h = password_hash(&pw("ab"), &salt, 2);
    assert_eq!(&h[..], &h2[..]);
    let k = Sha512::new().chain_update(h2).chain_update(BLOCK_KEY_SECRET_KEY).finalize();
    assert_eq!(&derive_key(&h, &BLOCK_KEY_SECRET_KEY)[..], &k[..32]);
}
