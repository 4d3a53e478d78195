use proptest::prelude::*;

use super::*;

const PLAIN: &[u8] = "氏名,住所\r\n山田太郎,東京都\r\n".as_bytes();

fn refs(files: &[ShareFile]) -> Vec<&[u8]> {
    files.iter().map(|f| &f.bytes[..]).collect()
}

/// Recomputes the trailing checksum after an edit, as an attacker would.
fn fix_checksum(bytes: &mut Vec<u8>) {
    bytes.truncate(bytes.len() - CHECKSUM_LEN);
    let c = Sha256::digest(&bytes[..]);
    bytes.extend_from_slice(&c);
}

fn label_len(bytes: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([bytes[39], bytes[40]]))
}

#[test]
fn every_3_subset_of_a_3_of_5_split_restores() {
    let files = split(PLAIN, 3, 5, "顧客一覧.csv").unwrap();
    assert_eq!(files.len(), 5);
    assert_eq!(files.iter().map(|f| f.index).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    let all = refs(&files);
    let mut subsets = 0;
    for a in 0..5 {
        for b in a + 1..5 {
            for c in b + 1..5 {
                // in a shuffled order, too
                let got = combine(&[all[c], all[a], all[b]]).unwrap();
                assert_eq!(&got.plain[..], PLAIN);
                assert_eq!(got.label, "顧客一覧.csv");
                subsets += 1;
            }
        }
    }
    assert_eq!(subsets, 10);
    // More than k works as well.
    assert_eq!(&combine(&all[..4]).unwrap().plain[..], PLAIN);
    assert_eq!(&combine(&all).unwrap().plain[..], PLAIN);
}

#[test]
fn fewer_than_k_shares_are_refused() {
    let files = split(PLAIN, 3, 5, "x").unwrap();
    let all = refs(&files);
    let e = combine(&all[1..3]).unwrap_err();
    assert_eq!(e.to_string(), "need 3 shares, got 2");
    assert!(matches!(e, ExportError::NotEnoughShares { need: 3, got: 2 }));
    assert!(matches!(combine(&all[..1]), Err(ExportError::NotEnoughShares { .. })));
    assert!(matches!(combine(&[]), Err(ExportError::NoShares)));
}

#[test]
fn shares_of_different_sets_are_refused() {
    let a = split(PLAIN, 2, 3, "x").unwrap();
    let b = split(PLAIN, 2, 3, "x").unwrap();
    let e = combine(&[&a[0].bytes, &b[1].bytes]).unwrap_err();
    assert!(matches!(e, ExportError::MixedShareSets), "{e}");
}

#[test]
fn duplicate_share_index_is_refused() {
    let files = split(PLAIN, 2, 3, "x").unwrap();
    let e = combine(&[&files[1].bytes, &files[1].bytes]).unwrap_err();
    assert!(matches!(e, ExportError::DuplicateShare { index: 2 }), "{e}");
    assert_eq!(e.to_string(), "share 2 was given more than once");
}

#[test]
fn not_a_share_file_or_unknown_version_is_refused() {
    let files = split(PLAIN, 2, 3, "x").unwrap();
    let e = combine(&[&files[0].bytes, b"PK\x03\x04 something else"]).unwrap_err();
    assert!(matches!(e, ExportError::NotAShareFile { position: 2 }), "{e}");
    assert_eq!(e.to_string(), "input #2 is not a mamori share file");
    assert!(matches!(combine(&[b""]), Err(ExportError::NotAShareFile { position: 1 })));

    let mut v2 = files[0].bytes.to_vec();
    v2[8] = 2;
    let e = combine(&[&v2, &files[1].bytes]).unwrap_err();
    assert!(matches!(e, ExportError::UnsupportedShareVersion { position: 1, version: 2 }), "{e}");
}

#[test]
fn corrupted_share_is_named_by_its_checksum() {
    let files = split(PLAIN, 2, 3, "x").unwrap();
    let len = files[1].bytes.len();
    for at in [9, 27, 45, 60, len - 40, len - 1] {
        let mut bad = files[1].bytes.to_vec();
        bad[at] ^= 0x80;
        let e = combine(&[&files[0].bytes, &bad]).unwrap_err();
        assert!(matches!(e, ExportError::CorruptShare { position: 2 }), "byte {at}: {e}");
    }
    let truncated = &files[2].bytes[..len - 10];
    assert!(matches!(combine(&[truncated, &files[0].bytes]), Err(ExportError::CorruptShare { position: 1 })));
}

#[test]
fn tampered_key_share_with_fixed_checksum_fails_authentication() {
    let files = split(PLAIN, 2, 3, "x").unwrap();
    let mut bad = files[1].bytes.to_vec();
    let key_share_at = 41 + label_len(&bad) + 1;
    bad[key_share_at + 5] ^= 0x01;
    fix_checksum(&mut bad);
    let e = combine(&[&files[0].bytes, &bad]).unwrap_err();
    assert!(matches!(e, ExportError::ShareAuthentication), "{e}");
}

#[test]
fn tampered_ciphertext_in_every_share_with_fixed_checksums_fails_authentication() {
    let files = split(PLAIN, 2, 3, "x").unwrap();
    let edit = |f: &ShareFile| {
        let mut b = f.bytes.to_vec();
        let ct_at = 41 + label_len(&b) + 1 + KEY_LEN + 8;
        b[ct_at + 3] ^= 0x01; // flip a plaintext bit under CTR: must not come out flipped
        fix_checksum(&mut b);
        b
    };
    let (a, b) = (edit(&files[0]), edit(&files[2]));
    let e = combine(&[&a, &b]).unwrap_err();
    assert!(matches!(e, ExportError::ShareAuthentication), "{e}");
}

#[test]
fn tampered_ciphertext_in_one_share_with_fixed_checksum_is_inconsistent() {
    let files = split(PLAIN, 2, 3, "x").unwrap();
    let mut b = files[2].bytes.to_vec();
    let ct_at = 41 + label_len(&b) + 1 + KEY_LEN + 8;
    b[ct_at] ^= 0x01;
    fix_checksum(&mut b);
    let e = combine(&[&files[0].bytes, &b]).unwrap_err();
    assert!(matches!(e, ExportError::InconsistentShares { position: 2 }), "{e}");
}

#[test]
fn edited_header_in_every_share_fails_authentication() {
    // Changing the label (or k, n, nonce) consistently in all shares, checksums fixed:
    // the header is AES-GCM associated data.
    let files = split(PLAIN, 2, 3, "report.csv").unwrap();
    let relabel = |f: &ShareFile| {
        let mut b = f.bytes.to_vec();
        b[41] = b'R';
        fix_checksum(&mut b);
        b
    };
    let (a, b) = (relabel(&files[0]), relabel(&files[1]));
    assert!(matches!(combine(&[&a, &b]), Err(ExportError::ShareAuthentication)));

    let raise_n = |f: &ShareFile| {
        let mut b = f.bytes.to_vec();
        b[26] = 4;
        fix_checksum(&mut b);
        b
    };
    let (a, b) = (raise_n(&files[0]), raise_n(&files[1]));
    assert!(matches!(combine(&[&a, &b]), Err(ExportError::ShareAuthentication)));
}

#[test]
fn lowered_threshold_in_one_share_is_inconsistent() {
    let files = split(PLAIN, 3, 3, "x").unwrap();
    let mut b = files[0].bytes.to_vec();
    b[25] = 2;
    fix_checksum(&mut b);
    let e = combine(&[&b, &files[1].bytes]).unwrap_err();
    assert!(matches!(e, ExportError::InconsistentShares { position: 2 }), "{e}");
}

#[test]
fn split_parameters_are_checked() {
    for (k, n) in [(1, 3), (0, 0), (4, 3), (2, 17), (17, 17)] {
        assert!(matches!(split(PLAIN, k, n, "x"), Err(ExportError::ShareParameters { .. })), "{k}-of-{n}");
    }
    assert_eq!(split(PLAIN, 16, 16, "x").unwrap().len(), 16);
    assert_eq!(split(PLAIN, 2, 2, "x").unwrap().len(), 2);
    assert!(matches!(split(PLAIN, 2, 2, &"a".repeat(MAX_LABEL_LEN + 1)), Err(ExportError::LabelTooLong)));
}

#[test]
fn share_layout_matches_the_documented_format() {
    let files = split(PLAIN, 2, 3, "ab").unwrap();
    let b = &files[2].bytes;
    assert_eq!(&b[..8], b"MAMORISS");
    assert_eq!(b[8], 1);
    assert_eq!((b[25], b[26]), (2, 3));
    assert_eq!(label_len(b), 2);
    assert_eq!(&b[41..43], b"ab");
    assert_eq!(b[43], 3, "share index");
    let ct_len = u64::from_be_bytes(b[76..84].try_into().unwrap());
    assert_eq!(ct_len as usize, PLAIN.len() + TAG_LEN);
    assert_eq!(b.len(), 114 + 2 + PLAIN.len() + TAG_LEN);
    // Same set id, nonce and ciphertext in all shares; no plaintext in any.
    assert_eq!(files[0].bytes[9..25], b[9..25]);
    assert!(!b.windows(6).any(|w| w == "山田".as_bytes()));
    assert_eq!(format!("{:?}", files[0]), format!("ShareFile {{ index: 1, len: {}, .. }}", b.len()));
}

#[test]
fn empty_file_round_trips() {
    let files = split(b"", 2, 2, "").unwrap();
    let got = combine(&refs(&files)).unwrap();
    assert!(got.plain.is_empty());
    assert_eq!(got.label, "");
    assert!(format!("{got:?}").contains("[REDACTED]"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn split_then_any_k_shares_restore(
        plain in proptest::collection::vec(any::<u8>(), 0..512),
        n in 2u8..=8,
        k_off in 0u8..8,
        start in 0usize..8,
        label in "[a-zA-Z0-9._ 一-龥]{0,20}",
    ) {
        let k = 2 + k_off % (n - 1);
        let files = split(&plain, k, n, &label).unwrap();
        let all = refs(&files);
        // k consecutive shares (wrapping), starting anywhere
        let chosen: Vec<&[u8]> = (0..usize::from(k)).map(|i| all[(start + i) % usize::from(n)]).collect();
        let got = combine(&chosen).unwrap();
        prop_assert_eq!(&got.plain[..], &plain[..]);
        prop_assert_eq!(got.label, label);
        let too_few = combine(&chosen[..usize::from(k) - 1]);
        let too_few_is_refused = matches!(too_few, Err(ExportError::NotEnoughShares { .. }));
        prop_assert!(too_few_is_refused);
    }
}
