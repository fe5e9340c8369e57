//! The Jupyter messaging protocol's wire format (v5.3): a message as ZeroMQ frames,
//! signed with HMAC-SHA256 over its four JSON parts.
//!
//! Frames: `[identities…] <IDS|MSG> signature header parent_header metadata content
//! [buffers…]`; the signature is the hex HMAC of the four JSON frames with the key of the
//! connection file (no key: empty signature). The JSON parts stay `serde_json::Value`s:
//! the service passes mime bundles through untouched, so it needs no typed model of every
//! message. Pure: no sockets here.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::ids::uuid4;

const DELIMITER: &[u8] = b"<IDS|MSG>";
pub const PROTOCOL_VERSION: &str = "5.3";

/// One Jupyter message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub header: Value,
    pub parent_header: Value,
    pub metadata: Value,
    pub content: Value,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("no <IDS|MSG> delimiter")]
    NoDelimiter,
    #[error("message has {0} frames after the delimiter, needs 5")]
    TooShort(usize),
    #[error("bad signature")]
    BadSignature,
    #[error("frame {0} is not JSON: {1}")]
    NotJson(&'static str, String),
}

impl Message {
    /// A request from the client `session` (a new `msg_id`, dated now).
    pub fn request(session: &str, msg_type: &str, content: Value) -> Self {
        Message {
            header: json!({
                "msg_id": uuid4(),
                "session": session,
                "username": "stasis",
                "date": now_rfc3339(),
                "msg_type": msg_type,
                "version": PROTOCOL_VERSION,
            }),
            parent_header: json!({}),
            metadata: json!({}),
            content,
        }
    }

    pub fn msg_id(&self) -> &str {
        self.header.get("msg_id").and_then(Value::as_str).unwrap_or_default()
    }

    pub fn msg_type(&self) -> &str {
        self.header.get("msg_type").and_then(Value::as_str).unwrap_or_default()
    }

    /// `msg_id` of the request this message answers (or reports on).
    pub fn parent_msg_id(&self) -> Option<&str> {
        self.parent_header.get("msg_id").and_then(Value::as_str).filter(|s| !s.is_empty())
    }

    /// `header.date`: when the kernel made the message.
    pub fn date(&self) -> Option<&str> {
        self.header.get("date").and_then(Value::as_str)
    }
}

/// Signs and checks messages with a connection's key.
#[derive(Clone)]
pub struct Codec {
    key: Vec<u8>,
}

impl Codec {
    pub fn new(key: &str) -> Self {
        Codec { key: key.as_bytes().to_vec() }
    }

    fn mac(&self, parts: &[&[u8]]) -> Option<Hmac<Sha256>> {
        if self.key.is_empty() {
            return None;
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        for p in parts {
            mac.update(p);
        }
        Some(mac)
    }

    /// Frames of `msg` (no identities: DEALER sockets send none).
    pub fn encode(&self, msg: &Message) -> Vec<Bytes> {
        let parts: [Vec<u8>; 4] = [
            serde_json::to_vec(&msg.header).expect("JSON"),
            serde_json::to_vec(&msg.parent_header).expect("JSON"),
            serde_json::to_vec(&msg.metadata).expect("JSON"),
            serde_json::to_vec(&msg.content).expect("JSON"),
        ];
        let sig = match self.mac(&parts.each_ref().map(Vec::as_slice)) {
            Some(mac) => hex(&mac.finalize().into_bytes()),
            None => String::new(),
        };
        let mut frames = vec![Bytes::from_static(DELIMITER), Bytes::from(sig)];
        frames.extend(parts.into_iter().map(Bytes::from));
        frames
    }

    /// The message in `frames` (identities and buffers dropped), its signature checked.
    pub fn decode(&self, frames: &[Bytes]) -> Result<Message, WireError> {
        let at = frames.iter().position(|f| f.as_ref() == DELIMITER).ok_or(WireError::NoDelimiter)?;
        let rest = &frames[at + 1..];
        if rest.len() < 5 {
            return Err(WireError::TooShort(rest.len()));
        }
        let parts = [rest[1].as_ref(), rest[2].as_ref(), rest[3].as_ref(), rest[4].as_ref()];
        if let Some(mac) = self.mac(&parts) {
            let given = unhex(&rest[0]).ok_or(WireError::BadSignature)?;
            mac.verify_slice(&given).map_err(|_| WireError::BadSignature)?;
        }
        let json = |name: &'static str, b: &[u8]| {
            serde_json::from_slice::<Value>(b).map_err(|e| WireError::NotJson(name, e.to_string()))
        };
        Ok(Message {
            header: json("header", parts[0])?,
            parent_header: json("parent_header", parts[1])?,
            metadata: json("metadata", parts[2])?,
            content: json("content", parts[3])?,
        })
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(b: &[u8]) -> Option<Vec<u8>> {
    if b.len() % 2 != 0 {
        return None;
    }
    b.chunks(2).map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok()).collect()
}

/// Now as RFC 3339 UTC with microseconds, as Jupyter dates its messages.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let ts = stasis_proto::Timestamp { seconds: d.as_secs() as i64, nanos: (d.subsec_micros() * 1000) as i32 };
    ts.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_identities_and_buffers() {
        let codec = Codec::new("secret");
        let msg = Message::request("s1", "execute_request", json!({"code": "1+1"}));
        let mut frames = vec![Bytes::from_static(b"peer")];
        frames.extend(codec.encode(&msg));
        frames.push(Bytes::from_static(b"buffer"));
        assert_eq!(codec.decode(&frames).unwrap(), msg);
        assert_eq!(msg.msg_type(), "execute_request");
        assert_eq!(msg.msg_id().len(), 36);
    }

    #[test]
    fn signature_is_checked() {
        let msg = Message::request("s1", "kernel_info_request", json!({}));
        let mut frames = Codec::new("secret").encode(&msg);
        assert_eq!(Codec::new("other").decode(&frames), Err(WireError::BadSignature));
        frames[5] = Bytes::from_static(b"{\"code\":\"evil\"}");
        assert_eq!(Codec::new("secret").decode(&frames), Err(WireError::BadSignature));
        // Without a key nothing is signed or checked.
        let unsigned = Codec::new("").encode(&msg);
        assert!(unsigned[1].is_empty());
        assert_eq!(Codec::new("").decode(&unsigned).unwrap(), msg);
    }

    /// A signature computed the way jupyter_client does (hmac.new(key, digestmod=sha256)
    /// over the four frames, hexdigest), for a fixed message.
    #[test]
    fn signature_matches_jupyter_client() {
        let codec = Codec::new("k");
        let parts: [&[u8]; 4] = [b"{\"a\":1}", b"{}", b"{}", b"{}"];
        let sig = hex(&codec.mac(&parts).unwrap().finalize().into_bytes());
        // python3 -c 'import hmac,hashlib;h=hmac.new(b"k",digestmod=hashlib.sha256);
        //   [h.update(p) for p in [b"{\"a\":1}",b"{}",b"{}",b"{}"]];print(h.hexdigest())'
        assert_eq!(sig, "df48333744c93a068698742b5d4af647d20e4e71a5a8e2e117cb18a59072bfa2");
    }

    #[test]
    fn parent_and_errors() {
        let codec = Codec::new("");
        assert_eq!(codec.decode(&[Bytes::from_static(b"x")]), Err(WireError::NoDelimiter));
        assert_eq!(codec.decode(&[Bytes::from_static(DELIMITER), Bytes::new()]), Err(WireError::TooShort(1)));
        let mut reply = Message::request("s", "status", json!({"execution_state": "idle"}));
        assert_eq!(reply.parent_msg_id(), None);
        reply.parent_header = json!({"msg_id": "abc"});
        assert_eq!(reply.parent_msg_id(), Some("abc"));
    }
}
