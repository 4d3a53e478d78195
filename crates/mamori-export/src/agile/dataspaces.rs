//! The `\x06DataSpaces` storage of an encrypted Office document (MS-OFFCRYPTO 2.1, 2.2 and
//! the encryption data space of 2.3.4.x): it tells Office that the `EncryptedPackage` stream
//! goes through the "StrongEncryptionTransform". Readers such as msoffcrypto-tool ignore it;
//! Office expects it, so we write it.

/// Storage and stream paths inside the compound file.
pub(super) const STORAGE: &str = "/\u{6}DataSpaces";
pub(super) const STORAGE_INFO: &str = "/\u{6}DataSpaces/DataSpaceInfo";
pub(super) const STORAGE_TRANSFORMS: &str = "/\u{6}DataSpaces/TransformInfo";
pub(super) const STORAGE_TRANSFORM: &str = "/\u{6}DataSpaces/TransformInfo/StrongEncryptionTransform";
pub(super) const STREAM_VERSION: &str = "/\u{6}DataSpaces/Version";
pub(super) const STREAM_MAP: &str = "/\u{6}DataSpaces/DataSpaceMap";
pub(super) const STREAM_DEFINITION: &str = "/\u{6}DataSpaces/DataSpaceInfo/StrongEncryptionDataSpace";
pub(super) const STREAM_PRIMARY: &str = "/\u{6}DataSpaces/TransformInfo/StrongEncryptionTransform/\u{6}Primary";

const DATA_SPACE_NAME: &str = "StrongEncryptionDataSpace";
const TRANSFORM_NAME: &str = "StrongEncryptionTransform";
const TRANSFORM_ID: &str = "{FF9A3F03-56EF-4613-BDD5-5A41C1D07246}";
const TRANSFORM_FRIENDLY_NAME: &str = "Microsoft.Container.EncryptionTransform";

/// UNICODE-LP-P4 (2.1.2): byte length (u32), UTF-16LE characters, zero padding to 4 bytes.
fn unicode_lp_p4(out: &mut Vec<u8>, s: &str) {
    let bytes: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
    put_u32(out, bytes.len());
    out.extend_from_slice(&bytes);
    out.resize(out.len() + (4 - bytes.len() % 4) % 4, 0);
}

/// All lengths here are of constant strings, far below `u32::MAX`.
fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

/// Version (2.1.4): 1.0, three times (reader, updater, writer).
fn versions_1_0(out: &mut Vec<u8>) {
    for _ in 0..3 {
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
    }
}

/// `\x06DataSpaces\Version`: DataSpaceVersionInfo (2.1.5).
pub(super) fn version() -> Vec<u8> {
    let mut out = Vec::new();
    unicode_lp_p4(&mut out, "Microsoft.Container.DataSpaces");
    versions_1_0(&mut out);
    out
}

/// `\x06DataSpaces\DataSpaceMap`: DataSpaceMap (2.1.6) with one DataSpaceMapEntry mapping
/// the `EncryptedPackage` stream to the strong-encryption data space.
pub(super) fn data_space_map() -> Vec<u8> {
    let mut entry = Vec::new();
    put_u32(&mut entry, 1); // ReferenceComponentCount
    put_u32(&mut entry, 0); // ReferenceComponentType: stream
    unicode_lp_p4(&mut entry, "EncryptedPackage");
    unicode_lp_p4(&mut entry, DATA_SPACE_NAME);

    let mut out = Vec::new();
    put_u32(&mut out, 8); // HeaderLength
    put_u32(&mut out, 1); // EntryCount
    put_u32(&mut out, entry.len() + 4); // Length, including itself
    out.extend_from_slice(&entry);
    out
}

/// `\x06DataSpaces\DataSpaceInfo\StrongEncryptionDataSpace`: DataSpaceDefinition (2.1.7).
pub(super) fn data_space_definition() -> Vec<u8> {
    let mut out = Vec::new();
    put_u32(&mut out, 8); // HeaderLength
    put_u32(&mut out, 1); // TransformReferenceCount
    unicode_lp_p4(&mut out, TRANSFORM_NAME);
    out
}

/// `\x06DataSpaces\TransformInfo\StrongEncryptionTransform\x06Primary`: TransformInfoHeader
/// (2.1.8) followed by EncryptionTransformInfo (2.1.9).
pub(super) fn primary() -> Vec<u8> {
    let mut id = Vec::new();
    unicode_lp_p4(&mut id, TRANSFORM_ID);

    let mut out = Vec::new();
    put_u32(&mut out, 8 + id.len()); // TransformLength: bytes before TransformName
    put_u32(&mut out, 1); // TransformType
    out.extend_from_slice(&id);
    unicode_lp_p4(&mut out, TRANSFORM_FRIENDLY_NAME);
    versions_1_0(&mut out);
    // EncryptionTransformInfo
    put_u32(&mut out, 0); // EncryptionName: empty UTF-8-LP-P4
    put_u32(&mut out, 0); // EncryptionBlockSize
    put_u32(&mut out, 0); // CipherMode
    put_u32(&mut out, 4); // Reserved, MUST be 4
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn strings_are_length_prefixed_utf16_padded_to_four_bytes() {
        let mut out = Vec::new();
        unicode_lp_p4(&mut out, "abc");
        assert_eq!(out, [6, 0, 0, 0, b'a', 0, b'b', 0, b'c', 0, 0, 0]);
    }

    #[test]
    fn structure_lengths_match_the_specification() {
        let v = version();
        assert_eq!(u32_at(&v, 0), 60); // 30 UTF-16 characters
        assert_eq!(v.len(), 4 + 60 + 12);

        let m = data_space_map();
        assert_eq!(u32_at(&m, 0), 8);
        assert_eq!(u32_at(&m, 4), 1);
        // Length + count + type + "EncryptedPackage" (4+32) + name (4+50+2 padding)
        assert_eq!(u32_at(&m, 8), 104);
        assert_eq!(m.len(), 8 + 104);

        let d = data_space_definition();
        assert_eq!(d.len(), 8 + 4 + 50 + 2);

        let p = primary();
        assert_eq!(u32_at(&p, 0), 88); // 4 + 4 + 4 + 76 (a 38-character GUID)
        assert_eq!(u32_at(&p, 4), 1);
        assert_eq!(u32_at(&p, 8), 76);
        assert_eq!(p.len(), 88 + (4 + 78 + 2) + 12 + 16);
        assert_eq!(u32_at(&p, p.len() - 4), 4);
    }
}
