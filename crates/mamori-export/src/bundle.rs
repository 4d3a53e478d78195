//! Several files in one download: the share files of a secret-split export, bundled as a
//! ZIP for browsers and HTTP clients (which take one file per response). Entries are stored,
//! not compressed: they are ciphertext, which does not compress.

use crate::error::{ExportError, Result};
use std::io::Write;

/// A ZIP archive holding `files` (name, content) in order. Names must be plain file names.
pub fn zip_files(files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .unix_permissions(0o600);
    for (name, bytes) in files {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(ExportError::Bundle);
        }
        writer.start_file(*name, options).map_err(|_| ExportError::Bundle)?;
        writer.write_all(bytes).map_err(|_| ExportError::Bundle)?;
    }
    Ok(writer.finish().map_err(|_| ExportError::Bundle)?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_files_that_read_back_in_order() {
        let zip = zip_files(&[("a.share-1-of-2.mamori", b"one"), ("a.share-2-of-2.mamori", b"two")]).unwrap();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
        assert_eq!(archive.len(), 2);
        let mut entry = archive.by_index(0).unwrap();
        let name = entry.name().unwrap().to_string();
        let mut first = String::new();
        std::io::Read::read_to_string(&mut entry, &mut first).unwrap();
        assert_eq!((name.as_str(), first.as_str()), ("a.share-1-of-2.mamori", "one"));
    }

    #[test]
    fn path_like_names_are_refused() {
        assert!(zip_files(&[("../evil", b"x")]).is_err());
        assert!(zip_files(&[("dir/file", b"x")]).is_err());
    }
}
