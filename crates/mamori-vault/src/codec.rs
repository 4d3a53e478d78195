//! Encoding of a record's encrypted fields into the one blob the store keeps.
//!
//! `version(1) | count(u16) | { name_len(u8) name | ct_len(u32) ciphertext }*` — names are
//! schema field names (not personal data), ciphertexts are opaque.

use crate::error::{Result, VaultError};

const CODEC_V1: u8 = 1;

pub(crate) fn encode(fields: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let size: usize = fields.iter().map(|(n, c)| 5 + n.len() + c.len()).sum();
    let mut out = Vec::with_capacity(3 + size);
    out.push(CODEC_V1);
    out.extend_from_slice(&(fields.len() as u16).to_be_bytes());
    for (name, ct) in fields {
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(ct.len() as u32).to_be_bytes());
        out.extend_from_slice(ct);
    }
    out
}

pub(crate) fn decode(blob: &[u8]) -> Result<Vec<(String, &[u8])>> {
    let corrupt = || VaultError::Integrity("record encoding".into());
    let mut rest = blob;
    let mut take = |n: usize| -> Result<&[u8]> {
        if rest.len() < n {
            return Err(corrupt());
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    if take(1)?[0] != CODEC_V1 {
        return Err(corrupt());
    }
    let count = u16::from_be_bytes(take(2)?.try_into().map_err(|_| corrupt())?);
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let name_len = take(1)?[0] as usize;
        let name = std::str::from_utf8(take(name_len)?).map_err(|_| corrupt())?.to_owned();
        let ct_len = u32::from_be_bytes(take(4)?.try_into().map_err(|_| corrupt())?) as usize;
        out.push((name, take(ct_len)?));
    }
    if !rest.is_empty() {
        return Err(corrupt());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let blob = encode(&[("name", vec![1, 2, 3]), ("email", vec![])]);
        let back = decode(&blob).unwrap();
        assert_eq!(back, vec![("name".to_owned(), &[1u8, 2, 3][..]), ("email".to_owned(), &[][..])]);
        for cut in 0..blob.len() {
            assert!(decode(&blob[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }
}
