//! A build's record: its status, the reason it failed and its log, in memory while it
//! runs and on disk (`DATA/builds/ID.json`, the log in `ID.log`, one JSON entry a line)
//! so a finished build's status outlives the daemon. A build the daemon was running when
//! it stopped reads as failed ("interrupted").

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Waiting,
    Building,
    Ready,
    Error,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub timestamp: String,
    /// debug, info, warn, error (the SDKs' `LogLevel`).
    pub level: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

/// Why a build failed: the step ("1".. for the template's steps, "base" for its base,
/// "finalize" for the start command) and the end of its output.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default)]
    pub log_entries: Vec<LogEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub template_id: String,
    pub build_id: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Failure>,
    pub created_at: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// One build's record and log.
pub struct Build {
    dir: PathBuf,
    state: Mutex<(Record, Vec<LogEntry>)>,
}

pub fn now() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    stasis_proto::timestamp::rfc3339_millis(ms as i64)
}

impl Build {
    pub fn new(dir: &Path, record: Record) -> Self {
        let b = Self { dir: dir.to_path_buf(), state: Mutex::new((record, Vec::new())) };
        b.save();
        b
    }

    /// A finished (or interrupted) build from disk.
    pub fn load(dir: &Path, build_id: &str) -> Option<Self> {
        let text = std::fs::read(dir.join(format!("{build_id}.json"))).ok()?;
        let mut record: Record = serde_json::from_slice(&text).ok()?;
        let log: Vec<LogEntry> = std::fs::read_to_string(dir.join(format!("{build_id}.log")))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if matches!(record.status, Status::Waiting | Status::Building) {
            record.status = Status::Error;
            record.reason = Some(Failure {
                message: "the build was interrupted (the server stopped); build again".into(),
                step: None,
                log_entries: Vec::new(),
            });
        }
        Some(Self { dir: dir.to_path_buf(), state: Mutex::new((record, log)) })
    }

    pub fn record(&self) -> Record {
        self.state.lock().unwrap().0.clone()
    }

    /// Entries from `offset` on.
    pub fn entries_from(&self, offset: usize) -> Vec<LogEntry> {
        self.state.lock().unwrap().1.iter().skip(offset).cloned().collect()
    }

    /// The last `n` entries of `step`.
    pub fn tail_of(&self, step: &str, n: usize) -> Vec<LogEntry> {
        let g = self.state.lock().unwrap();
        let of: Vec<&LogEntry> = g.1.iter().filter(|e| e.step.as_deref() == Some(step)).collect();
        of[of.len().saturating_sub(n)..].iter().map(|e| (*e).clone()).collect()
    }

    pub fn log(&self, level: &str, step: Option<&str>, message: impl Into<String>) {
        let e =
            LogEntry { timestamp: now(), level: level.into(), message: message.into(), step: step.map(str::to_string) };
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()) {
            let _ = writeln!(f, "{}", serde_json::to_string(&e).expect("json"));
        }
        self.state.lock().unwrap().1.push(e);
    }

    pub fn set_status(&self, status: Status, reason: Option<Failure>) {
        {
            let mut g = self.state.lock().unwrap();
            g.0.status = status;
            g.0.reason = reason;
        }
        self.save();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.record().build_id))
    }

    fn save(&self) {
        let rec = self.record();
        let path = self.dir.join(format!("{}.json", rec.build_id));
        let tmp = path.with_extension("json.tmp");
        let written = std::fs::write(&tmp, serde_json::to_vec_pretty(&rec).expect("json"))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(build = %rec.build_id, "cannot save the build record: {e}");
        }
    }
}

/// Splits streamed output into lines for the log, keeping a partial line until its end.
#[derive(Default)]
pub struct Lines {
    partial: String,
}

impl Lines {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.partial.push_str(&String::from_utf8_lossy(chunk));
        let mut out = Vec::new();
        while let Some(i) = self.partial.find('\n') {
            out.push(self.partial[..i].trim_end_matches('\r').to_string());
            self.partial.drain(..=i);
        }
        out
    }

    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.partial);
        (!rest.is_empty()).then_some(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            template_id: "app".into(),
            build_id: "b1".into(),
            status: Status::Building,
            reason: None,
            created_at: now(),
            tags: vec![],
        }
    }

    #[test]
    fn a_build_running_when_the_daemon_stopped_reads_as_interrupted() {
        let d = tempfile::tempdir().unwrap();
        let b = Build::new(d.path(), record());
        b.log("info", Some("1"), "RUN make");
        drop(b);
        let again = Build::load(d.path(), "b1").unwrap();
        assert_eq!(again.record().status, Status::Error);
        assert!(again.record().reason.unwrap().message.contains("interrupted"));
        assert_eq!(again.entries_from(0).len(), 1);
    }

    #[test]
    fn finished_builds_keep_status_log_and_step_tails() {
        let d = tempfile::tempdir().unwrap();
        let b = Build::new(d.path(), record());
        for i in 0..5 {
            b.log("info", Some("2"), format!("line {i}"));
        }
        b.log("info", Some("3"), "other");
        assert_eq!(b.tail_of("2", 2).iter().map(|e| e.message.as_str()).collect::<Vec<_>>(), ["line 3", "line 4"]);
        b.set_status(Status::Ready, None);
        let again = Build::load(d.path(), "b1").unwrap();
        assert_eq!(again.record().status, Status::Ready);
        assert_eq!(again.entries_from(4).len(), 2);
    }

    #[test]
    fn output_is_split_into_lines() {
        let mut l = Lines::default();
        assert_eq!(l.push(b"a\nb"), ["a"]);
        assert_eq!(l.push(b"c\r\nd\n"), ["bc", "d"]);
        assert_eq!(l.finish(), None);
        l.push(b"tail");
        assert_eq!(l.finish().as_deref(), Some("tail"));
    }
}
