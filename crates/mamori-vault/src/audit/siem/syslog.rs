//! The syslog sink: RFC 5424 messages over TCP with octet-counting framing (RFC 6587 §3.4.1).
//!
//! Formatted here rather than with a crate: the syslog crates on crates.io are unmaintained
//! or pull in a logging framework, and the format is a few lines (tested below).
//!
//! ```text
//! 412 <110>1 2026-04-01T09:00:00.123456Z host mamori 4242 record.read [mamori@32473 seq="17" action="record.read" outcome="success" actor="user:…" …] BOM{"at":…}
//! ```
//!
//! The structured data carries ids only (sequence number, action, outcome, actor, session,
//! source address, collection, record, data subject, rows, deciding policies, grant, chain
//! hash); the message is the event's canonical JSON. The SD-ID uses 32473, the enterprise
//! number RFC 5612 reserves for documentation, until mamori has one of its own.
//!
//! RFC 6587 has no acknowledgements: bytes the kernel accepted may still be lost when the
//! receiver drops the connection. So a write counts as acknowledged only once the
//! connection has stayed open for [`SETTLE`] after it; a connection found closed or reset
//! before then makes the forwarder send everything unacknowledged again on a new one.

use mamori_core::audit::{AuditEvent, Outcome};
use mamori_store::AuditRow;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

pub(super) const NAME: &str = "syslog";
const SD_ID: &str = "mamori@32473";
/// How long a connection must stay up after a write before the write counts as received.
pub(crate) const SETTLE: Duration = Duration::from_secs(2);
const WRITE_CHUNK: usize = 16 * 1024;

/// `[audit.siem.syslog]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSinkSettings {
    /// `host:port` of the receiver (plain TCP; use a local relay such as rsyslog or stunnel
    /// for TLS to a remote SIEM).
    pub address: String,
    /// HOSTNAME of the messages; `-` (nil) when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Syslog facility, 0..=23; default 13 (log audit).
    #[serde(default = "default_facility")]
    pub facility: u8,
    /// Connecting, and each write of up to 16 KiB, must finish within this (seconds).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn default_facility() -> u8 {
    13
}

fn default_timeout() -> u64 {
    30
}

impl SyslogSinkSettings {
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.address.trim().is_empty() || !self.address.contains(':') {
            return Err("audit.siem.syslog.address must be host:port".into());
        }
        if self.facility > 23 {
            return Err("audit.siem.syslog.facility must be 0..=23".into());
        }
        if !(1..=600).contains(&self.timeout_seconds) {
            return Err("audit.siem.syslog.timeout_seconds must be 1..=600".into());
        }
        if let Some(host) = &self.hostname
            && (host.is_empty() || host.len() > 255 || !host.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err("audit.siem.syslog.hostname must be 1..=255 printable ASCII characters".into());
        }
        Ok(())
    }
}

/// Escapes a PARAM-VALUE (RFC 5424 §6.3.3).
fn escape(value: &str, out: &mut String) {
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// A printable-ASCII header field of at most `max` characters, or the nil value.
fn header_field(value: &str, max: usize) -> String {
    let field: String = value.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if field.is_empty() { "-".into() } else { field }
}

/// One framed message: `<length> <RFC 5424 message>`.
pub(crate) fn frame(row: &AuditRow, settings: &SyslogSinkSettings, procid: u32) -> String {
    let c = &row.columns;
    // The indexed columns are enough for the header; the rest of the ids need the event.
    let event: Option<AuditEvent> = serde_json::from_str(&row.event_json).ok();
    let severity = match c.outcome.parse::<Outcome>() {
        Ok(Outcome::Success) => 6,
        Ok(Outcome::Denied) => 5,
        _ => 4,
    };
    let pri = u32::from(settings.facility) * 8 + severity;
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(c.at) * 1_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".into());
    let host = header_field(settings.hostname.as_deref().unwrap_or("-"), 255);
    let msgid = header_field(&c.action, 32);
    let seq = row.seq.to_string();
    let hash = crate::audit::hex(&row.hash);
    let rows = event.as_ref().and_then(|e| e.rows).map(|r| r.to_string());
    let e = event.as_ref();
    let params: [(&str, Option<&str>); 13] = [
        ("seq", Some(&seq)),
        ("action", Some(&c.action)),
        ("outcome", Some(&c.outcome)),
        ("actor", Some(&c.actor)),
        ("session", e.and_then(|e| e.session.as_deref())),
        ("source", e.and_then(|e| e.source.as_deref())),
        ("collection", c.collection.as_deref()),
        ("record", c.record.as_deref()),
        ("subject", c.subject.as_deref()),
        ("rows", rows.as_deref()),
        ("policy", e.and_then(|e| e.policy.as_deref())),
        ("grant", e.and_then(|e| e.grant.as_deref())),
        ("hash", Some(&hash)),
    ];
    let mut msg = format!("<{pri}>1 {at} {host} mamori {procid} {msgid} [{SD_ID}");
    for (name, value) in params {
        if let Some(value) = value {
            msg.push(' ');
            msg.push_str(name);
            msg.push_str("=\"");
            escape(value, &mut msg);
            msg.push('"');
        }
    }
    msg.push_str("] \u{feff}");
    msg.push_str(&row.event_json);
    format!("{} {msg}", msg.len())
}

pub(super) struct SyslogTcp {
    settings: SyslogSinkSettings,
    timeout: Duration,
    procid: u32,
    stream: Option<TcpStream>,
    /// Writes not yet acknowledged: the last seq of each and when it was flushed.
    pending: VecDeque<(u64, Instant)>,
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} timed out"))
}

impl SyslogTcp {
    pub(super) fn new(settings: &SyslogSinkSettings) -> Self {
        Self {
            timeout: Duration::from_secs(settings.timeout_seconds),
            settings: settings.clone(),
            procid: std::process::id(),
            stream: None,
            pending: VecDeque::new(),
        }
    }

    pub(super) async fn send(&mut self, rows: &[AuditRow]) -> std::io::Result<()> {
        // A receiver that hung up since the last write would swallow this one silently.
        self.check_open()?;
        let mut stream = match self.stream.take() {
            Some(stream) => stream,
            None => {
                let stream = timeout(self.timeout, TcpStream::connect(&self.settings.address))
                    .await
                    .map_err(|_| timed_out("connecting"))??;
                stream.set_nodelay(true)?;
                stream
            }
        };
        let mut buffer = String::new();
        for row in rows {
            buffer.push_str(&frame(row, &self.settings, self.procid));
        }
        // The timeout bounds a stall, not the batch: a slow receiver that keeps reading is
        // waited for (that is the back-pressure), one that stops is given up on.
        for chunk in buffer.as_bytes().chunks(WRITE_CHUNK) {
            timeout(self.timeout, stream.write_all(chunk)).await.map_err(|_| timed_out("writing"))??;
        }
        timeout(self.timeout, stream.flush()).await.map_err(|_| timed_out("writing"))??;
        // Kept only after a clean write: a failed one drops the connection.
        self.stream = Some(stream);
        if let Some(last) = rows.last() {
            self.pending.push_back((last.seq, Instant::now()));
        }
        Ok(())
    }

    /// An error if the receiver closed or reset the connection.
    fn check_open(&self) -> std::io::Result<()> {
        let Some(stream) = &self.stream else { return Ok(()) };
        let mut scratch = [0u8; 256];
        loop {
            match stream.try_read(&mut scratch) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "the receiver closed the connection",
                    ));
                }
                // Receivers have nothing to say in this protocol; ignore whatever comes.
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    pub(super) async fn acknowledged(&mut self) -> std::io::Result<Option<u64>> {
        self.check_open()?;
        let mut acknowledged = None;
        while let Some(&(seq, at)) = self.pending.front() {
            if at.elapsed() < SETTLE {
                break;
            }
            acknowledged = Some(seq);
            self.pending.pop_front();
        }
        Ok(acknowledged)
    }

    pub(super) fn reset(&mut self) {
        self.stream = None;
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mamori_store::AuditColumns;

    fn row(seq: u64, event: &AuditEvent) -> AuditRow {
        AuditRow { seq, event_json: event.canonical_json(), hash: [1; 32], columns: AuditColumns::of(event) }
    }

    fn settings() -> SyslogSinkSettings {
        SyslogSinkSettings {
            address: "127.0.0.1:601".into(),
            hostname: Some("mamori-1".into()),
            facility: 13,
            timeout_seconds: 30,
        }
    }

    #[test]
    fn message_is_rfc5424_with_octet_counting() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_775_000_000_123_456_789).unwrap();
        let mut event =
            AuditEvent::new(mamori_core::audit::truncate_to_micros(at), "user:42", "record.read", Outcome::Denied);
        event.collection = Some("customers".into());
        event.record = Some("r1".into());
        event.policy = Some("p\"1],x\\".into());
        let framed = frame(&row(17, &event), &settings(), 4242);
        let (len, msg) = framed.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len(), "the length counts octets");
        // facility 13 * 8 + notice (5) for a denial
        assert!(msg.starts_with("<109>1 2026-03-31T23:33:20.123456Z mamori-1 mamori 4242 record.read [mamori@32473 seq=\"17\" action=\"record.read\" outcome=\"denied\" actor=\"user:42\" collection=\"customers\" record=\"r1\" policy=\"p\\\"1\\],x\\\\\" hash=\"0101"), "{msg}");
        let (_, json) = msg.split_once("] \u{feff}").unwrap();
        assert_eq!(json, event.canonical_json());
    }

    #[test]
    fn header_fields_are_printable_and_bounded() {
        assert_eq!(header_field("", 32), "-");
        assert_eq!(header_field("a b\u{3042}c", 32), "abc");
        assert_eq!(header_field(&"x".repeat(40), 32).len(), 32);
        let mut bad = settings();
        bad.hostname = Some("two words".into());
        assert!(bad.validate().is_err());
        bad.hostname = None;
        bad.facility = 24;
        assert!(bad.validate().is_err());
        assert!(settings().validate().is_ok());
    }
}
