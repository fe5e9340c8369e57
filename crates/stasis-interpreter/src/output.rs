//! What `POST /execute` streams: one JSON object per line (NDJSON), made from the kernel's
//! messages for one run.
//!
//! The SDKs (`parse_output` in e2b_code_interpreter, `parseOutput` in
//! @e2b/code-interpreter and novita-sandbox) read each line's `type`:
//! - `stdout` / `stderr`: `text` (one stream message, as the kernel sent it) and
//!   `timestamp` (the kernel's `header.date`; Python's SDK indexes it, so it is always set);
//! - `result`: one mime bundle (`execute_result`: `is_main_result: true`; `display_data`:
//!   false) split into `text`, `html`, `markdown`, `svg`, `png`, `jpeg`, `pdf`, `latex`,
//!   `json`, `javascript`, `data` (`e2b/data`), `chart` (`e2b/chart`) and `extra` (any other
//!   mime type, always present); a `text` in quotes loses them, as E2B's server does
//!   (`'bar'` → `bar`, Deno's `"bar"` → `bar`);
//! - `error`: `name`, `value`, `traceback` (the kernel's lines joined with newlines), at
//!   most one per run;
//! - `number_of_executions`: `execution_count`, from `execute_input`;
//! - `end_of_execution`: last line of every stream, also after an error.
//!   Unknown types are ignored by all three SDKs.
//!
//! A run is over when the kernel has both replied on shell and gone idle on IOPub (the two
//! sockets are not ordered relative to each other). If the kernel goes away first, the
//! run ends with an `error` saying why (E2B's names: `ContextRestarting`,
//! `UnexpectedEndOfExecution`).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::kernel::session::Gone;
use crate::kernel::wire::{now_rfc3339, Message};

/// One NDJSON line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputLine {
    Stdout { text: String, timestamp: String },
    Stderr { text: String, timestamp: String },
    Result(Map<String, Value>),
    Error { name: String, value: String, traceback: String },
    NumberOfExecutions { execution_count: u64 },
    EndOfExecution,
}

impl OutputLine {
    /// The line, with its newline.
    pub fn to_ndjson(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("JSON");
        v.push(b'\n');
        v
    }

    pub fn error(name: &str, value: impl Into<String>) -> Self {
        OutputLine::Error { name: name.into(), value: value.into(), traceback: String::new() }
    }
}

/// Mime types with a field of their own, and the field.
const FIELDS: &[(&str, &str)] = &[
    ("text/plain", "text"),
    ("text/html", "html"),
    ("text/markdown", "markdown"),
    ("image/svg+xml", "svg"),
    ("image/png", "png"),
    ("image/jpeg", "jpeg"),
    ("application/pdf", "pdf"),
    ("text/latex", "latex"),
    ("application/json", "json"),
    ("application/javascript", "javascript"),
    ("e2b/data", "data"),
    ("e2b/chart", "chart"),
];

/// A `result` line from a mime bundle.
pub fn result_line(bundle: &Map<String, Value>, is_main_result: bool) -> OutputLine {
    let mut out = Map::new();
    let mut extra = Map::new();
    for (mime, value) in bundle {
        match FIELDS.iter().find(|(m, _)| m == mime) {
            Some((_, "text")) => {
                let text = value.as_str().map(|t| strip_quotes(t).to_string());
                out.insert("text".into(), text.map(Value::String).unwrap_or_else(|| value.clone()));
            }
            Some((_, field)) => {
                out.insert((*field).into(), value.clone());
            }
            None => {
                extra.insert(mime.clone(), value.clone());
            }
        }
    }
    out.insert("extra".into(), Value::Object(extra));
    out.insert("is_main_result".into(), Value::Bool(is_main_result));
    OutputLine::Result(out)
}

/// `'x'` (Python's repr of a string) and `"x"` (Deno's) lose their quotes, as in E2B's
/// server; the SDKs' users compare `execution.text` with the bare string.
fn strip_quotes(t: &str) -> &str {
    let b = t.as_bytes();
    let quoted = |q: u8| b.len() >= 2 && b[0] == q && b[b.len() - 1] == q;
    if quoted(b'\'') || quoted(b'"') {
        &t[1..t.len() - 1]
    } else {
        t
    }
}

/// The state of one run: turns its messages into lines and says when it is over.
#[derive(Debug, Default)]
pub struct RunTracker {
    errored: bool,
    replied: bool,
    idle: bool,
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

impl RunTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the kernel has finished the run.
    pub fn done(&self) -> bool {
        self.replied && self.idle
    }

    /// Lines for one kernel message of this run.
    pub fn on_message(&mut self, msg: &Message) -> Vec<OutputLine> {
        let c = &msg.content;
        match msg.msg_type() {
            "stream" => {
                let text = str_of(c, "text").to_string();
                let timestamp = msg.date().map(str::to_string).unwrap_or_else(now_rfc3339);
                match str_of(c, "name") {
                    "stderr" => vec![OutputLine::Stderr { text, timestamp }],
                    _ => vec![OutputLine::Stdout { text, timestamp }],
                }
            }
            "execute_result" | "display_data" => match c.get("data").and_then(Value::as_object) {
                Some(bundle) => vec![result_line(bundle, msg.msg_type() == "execute_result")],
                None => vec![],
            },
            "error" => self.error_from(c),
            "execute_input" => match c.get("execution_count").and_then(Value::as_u64) {
                Some(n) => vec![OutputLine::NumberOfExecutions { execution_count: n }],
                None => vec![],
            },
            "status" => {
                if str_of(c, "execution_state") == "idle" {
                    self.idle = true;
                }
                vec![]
            }
            "execute_reply" => {
                self.replied = true;
                match str_of(c, "status") {
                    "error" => self.error_from(c),
                    "abort" | "aborted" if !self.errored => {
                        self.errored = true;
                        vec![OutputLine::error("ExecutionAborted", "Execution was aborted")]
                    }
                    _ => vec![],
                }
            }
            _ => vec![],
        }
    }

    fn error_from(&mut self, c: &Value) -> Vec<OutputLine> {
        if self.errored {
            return vec![];
        }
        self.errored = true;
        let traceback = match c.get("traceback").and_then(Value::as_array) {
            Some(lines) => lines.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"),
            None => String::new(),
        };
        vec![OutputLine::Error {
            name: str_of(c, "ename").to_string(),
            value: str_of(c, "evalue").to_string(),
            traceback,
        }]
    }

    /// The line for a kernel that went away before the run ended.
    pub fn on_gone(&mut self, why: &Gone) -> Vec<OutputLine> {
        if self.errored && *why == Gone::Removed {
            return vec![];
        }
        self.errored = true;
        vec![match why {
            Gone::Restarted => OutputLine::error("ContextRestarting", "Context was restarted"),
            Gone::Died(status) => OutputLine::error(
                "ContextRestarting",
                format!("The kernel died ({status}); the context restarts with a fresh kernel and its earlier state is lost"),
            ),
            Gone::InterruptFailed => OutputLine::error(
                "ContextRestarting",
                "The run did not stop when interrupted; the kernel was restarted and its earlier state is lost",
            ),
            Gone::Removed => OutputLine::error(
                "UnexpectedEndOfExecution",
                "Connection to the execution was closed before the execution was finished (context removed)",
            ),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(msg_type: &str, content: Value) -> Message {
        Message {
            header: json!({"msg_type": msg_type, "date": "2026-01-02T03:04:05.000006Z", "msg_id": "m"}),
            parent_header: json!({"msg_id": "run"}),
            metadata: json!({}),
            content,
        }
    }

    fn lines(t: &mut RunTracker, msgs: &[Message]) -> Vec<Value> {
        msgs.iter().flat_map(|m| t.on_message(m)).map(|l| serde_json::to_value(l).unwrap()).collect()
    }

    #[test]
    fn a_python_run_becomes_sdk_lines() {
        let mut t = RunTracker::new();
        let out = lines(
            &mut t,
            &[
                msg("status", json!({"execution_state": "busy"})),
                msg("execute_input", json!({"code": "print(1); 'x'", "execution_count": 3})),
                msg("stream", json!({"name": "stdout", "text": "1\n"})),
                msg("execute_result", json!({"data": {"text/plain": "'x'"}, "execution_count": 3})),
                msg("status", json!({"execution_state": "idle"})),
            ],
        );
        assert!(!t.done(), "not over before execute_reply");
        t.on_message(&msg("execute_reply", json!({"status": "ok", "execution_count": 3})));
        assert!(t.done());
        assert_eq!(
            out,
            vec![
                json!({"type": "number_of_executions", "execution_count": 3}),
                json!({"type": "stdout", "text": "1\n", "timestamp": "2026-01-02T03:04:05.000006Z"}),
                json!({"type": "result", "text": "x", "extra": {}, "is_main_result": true}),
            ]
        );
    }

    #[test]
    fn bundles_split_into_fields_and_extra() {
        let bundle = json!({
            "text/plain": "<Figure size 640x480 with 1 Axes>",
            "image/png": "iVBOR",
            "e2b/chart": {"type": "line", "elements": []},
            "e2b/data": {"a": [1]},
            "text/html": "<table/>",
            "application/json": {"k": 1},
            "application/vnd.custom": "c",
        });
        let line = result_line(bundle.as_object().unwrap(), false);
        assert_eq!(
            serde_json::to_value(&line).unwrap(),
            json!({
                "type": "result", "text": "<Figure size 640x480 with 1 Axes>", "png": "iVBOR",
                "chart": {"type": "line", "elements": []}, "data": {"a": [1]}, "html": "<table/>",
                "json": {"k": 1}, "extra": {"application/vnd.custom": "c"}, "is_main_result": false,
            })
        );
    }

    #[test]
    fn quotes_are_stripped() {
        assert_eq!(strip_quotes("'bar'"), "bar");
        assert_eq!(strip_quotes("\"/home/user\""), "/home/user");
        assert_eq!(strip_quotes("'"), "'");
        assert_eq!(strip_quotes("\"it's\"'"), "\"it's\"'");
        assert_eq!(strip_quotes("42"), "42");
    }

    #[test]
    fn one_error_per_run() {
        let mut t = RunTracker::new();
        let err = json!({"ename": "ZeroDivisionError", "evalue": "division by zero",
                         "traceback": ["---", "ZeroDivisionError: division by zero"]});
        let mut reply = err.clone();
        reply["status"] = json!("error");
        let out = lines(&mut t, &[msg("error", err), msg("execute_reply", reply)]);
        assert_eq!(
            out,
            vec![json!({"type": "error", "name": "ZeroDivisionError", "value": "division by zero",
                        "traceback": "---\nZeroDivisionError: division by zero"})]
        );
    }

    #[test]
    fn reply_only_errors_and_aborts_are_reported() {
        // Deno reports an interrupted busy loop in execute_reply only.
        let mut t = RunTracker::new();
        let out = lines(
            &mut t,
            &[msg(
                "execute_reply",
                json!({"status": "error", "ename": "Error", "evalue": "Execution failed", "traceback": []}),
            )],
        );
        assert_eq!(out[0]["name"], "Error");
        let mut t = RunTracker::new();
        let out = lines(&mut t, &[msg("execute_reply", json!({"status": "abort"}))]);
        assert_eq!(out[0]["name"], "ExecutionAborted");
    }

    #[test]
    fn stderr_and_gone_kernels() {
        let mut t = RunTracker::new();
        let out = lines(&mut t, &[msg("stream", json!({"name": "stderr", "text": "warn\n"}))]);
        assert_eq!(out[0]["type"], "stderr");
        let gone = t.on_gone(&Gone::Died("killed by signal 9".into()));
        assert!(matches!(&gone[0], OutputLine::Error { name, value, .. }
            if name == "ContextRestarting" && value.contains("signal 9")));
        assert_eq!(t.on_gone(&Gone::Restarted).len(), 1);
        assert_eq!(
            String::from_utf8(OutputLine::EndOfExecution.to_ndjson()).unwrap(),
            "{\"type\":\"end_of_execution\"}\n"
        );
    }
}
