//! The JSON-lines file sink, for log shippers (Fluent Bit, Vector, Filebeat…) that tail a
//! file. One line per event: `{"seq":…,"hash":"…","event":{…}}`, where `event` is the
//! canonical JSON exactly as hashed, so that a receiver can recompute the chain.
//!
//! Rotation by size, the way logrotate numbers files: when the next line would take the
//! file over `max_bytes`, `audit.jsonl` becomes `audit.jsonl.1`, `.1` becomes `.2`, … and
//! the oldest beyond `max_files` is deleted. Lines are synced before the forwarder counts
//! them as acknowledged, and a line is never split across two files.
//!
//! Files are created with mode 0600, and the directory is synced after a file appears, so a
//! crash cannot take back a file whose lines were acknowledged. An existing file that anyone
//! outside its owner and group may read or write is refused (the sink then reports itself
//! failing): group read is allowed for a log shipper running under another account.

use mamori_store::AuditRow;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub(super) const NAME: &str = "file";

/// `[audit.siem.file]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlSinkSettings {
    pub path: PathBuf,
    /// The size at which the file is rotated (bytes).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept besides the current one (`.1` … `.max_files`).
    #[serde(default = "default_max_files")]
    pub max_files: u32,
}

fn default_max_bytes() -> u64 {
    100 * 1024 * 1024
}

fn default_max_files() -> u32 {
    10
}

impl JsonlSinkSettings {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.max_bytes < 4096 {
            return Err("audit.siem.file.max_bytes must be at least 4096".into());
        }
        if !(1..=1000).contains(&self.max_files) {
            return Err("audit.siem.file.max_files must be 1..=1000".into());
        }
        if self.path.file_name().is_none() {
            return Err("audit.siem.file.path must name a file".into());
        }
        Ok(())
    }
}

/// The line of one event.
pub(crate) fn line(row: &AuditRow) -> String {
    // Spliced rather than re-serialised: `event_json` is already a JSON object, and these
    // exact bytes are what the chain hash covers.
    format!("{{\"seq\":{},\"hash\":\"{}\",\"event\":{}}}\n", row.seq, crate::audit::hex(&row.hash), row.event_json)
}

pub(super) struct JsonlFile {
    settings: JsonlSinkSettings,
    acknowledged: Option<u64>,
    /// After a failed write the file may end in a partial line: start the next on a new one.
    broken_line: bool,
}

impl JsonlFile {
    pub(super) fn new(settings: &JsonlSinkSettings) -> Self {
        Self { settings: settings.clone(), acknowledged: None, broken_line: false }
    }

    pub(super) async fn send(&mut self, rows: &[AuditRow]) -> std::io::Result<()> {
        let lines: Vec<String> = rows.iter().map(line).collect();
        let last = rows.last().map(|r| r.seq);
        let settings = self.settings.clone();
        let broken_line = self.broken_line;
        let result = tokio::task::spawn_blocking(move || append(&settings, lines, broken_line))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(format!("file writer panicked: {e}"))));
        self.broken_line = result.is_err();
        result?;
        self.acknowledged = last.or(self.acknowledged);
        Ok(())
    }

    pub(super) fn acknowledged(&self) -> Option<u64> {
        self.acknowledged
    }

    pub(super) fn reset(&mut self) {
        self.acknowledged = None;
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    let created = !path.exists();
    let mut options = OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata()?.permissions().mode() & 0o777;
        if mode & 0o007 != 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{} is open to other users (mode {mode:o}); make it 0600 or 0640", path.display()),
            ));
        }
    }
    if created {
        sync_parent(path)?;
    }
    Ok(file)
}

/// Makes a new or renamed directory entry survive a crash.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn append(settings: &JsonlSinkSettings, lines: Vec<String>, broken_line: bool) -> std::io::Result<()> {
    let path = &settings.path;
    let mut file = open(path)?;
    let mut size = file.metadata()?.len();
    let mut buffer = String::new();
    if broken_line && size > 0 {
        buffer.push('\n');
    }
    for line in lines {
        let used = size + buffer.len() as u64;
        // A line longer than max_bytes still goes out, alone in its file.
        if used > 0 && used + line.len() as u64 > settings.max_bytes {
            file.write_all(buffer.as_bytes())?;
            file.sync_data()?;
            buffer.clear();
            drop(file);
            rotate(path, settings.max_files)?;
            file = open(path)?;
            size = 0;
        }
        buffer.push_str(&line);
    }
    file.write_all(buffer.as_bytes())?;
    file.sync_data()
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn rotate(path: &Path, keep: u32) -> std::io::Result<()> {
    for n in (1..keep).rev() {
        let from = numbered(path, n);
        if from.exists() {
            // Overwrites `.keep`, the oldest: that is the deletion.
            std::fs::rename(&from, numbered(path, n + 1))?;
        }
    }
    std::fs::rename(path, numbered(path, 1))?;
    // The renames must survive a crash before lines go to the new file.
    sync_parent(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_embeds_the_hashed_json_verbatim() {
        let row = AuditRow {
            seq: 7,
            event_json:
                r#"{"at":"2026-01-01T00:00:00Z","actor":"anonymous","action":"user.login","outcome":"failure"}"#.into(),
            hash: [0xab; 32],
            columns: Default::default(),
        };
        let text = line(&row);
        assert!(text.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["seq"], 7);
        assert_eq!(v["hash"], "ab".repeat(32));
        assert!(text.contains(&row.event_json));
    }

    #[cfg(unix)]
    #[test]
    fn new_files_are_private_and_files_open_to_others_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let settings = JsonlSinkSettings { path: dir.path().join("audit.jsonl"), max_bytes: 1 << 20, max_files: 2 };
        append(&settings, vec!["{}\n".into()], false).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&settings.path), 0o600);
        std::fs::set_permissions(&settings.path, std::fs::Permissions::from_mode(0o640)).unwrap();
        append(&settings, vec!["{}\n".into()], false).unwrap();
        std::fs::set_permissions(&settings.path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = append(&settings, vec!["{\"x\":1}\n".into()], false).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("mode 644"), "{err}");
        assert_eq!(std::fs::read_to_string(&settings.path).unwrap(), "{}\n{}\n", "nothing written");
    }
}
