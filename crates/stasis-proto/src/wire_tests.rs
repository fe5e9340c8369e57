//! The generated types against what the SDKs really send (`testdata/envd-requests.jsonl`,
//! taken from the captures of e2b JS 2.51, e2b Python 2.63 and novita JS 2.1.1) and
//! against the response shapes they parse.

use std::fmt::Debug;

use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value};

use crate::connect::{
    decode_stream_request, decode_unary, encode_stream_message, parse_route, parse_timeout, Envelope, EnvelopeDecoder,
    FilesystemMethod as F, MethodKind, ProcessMethod as P, Route,
};
use crate::filesystem::{self as fs, EntryInfo, EventType, FileType};
use crate::process::{self as pr, process_event, ProcessEvent, Signal};

const CAPTURED: &str = include_str!("../testdata/envd-requests.jsonl");

/// `want` holds no member that `got` lacks or has with another value: the message kept
/// everything the SDK said (it may add zero values the SDK left out).
fn assert_subset(want: &Value, got: &Value, at: &str) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, v) in w {
                let g = g.get(k).unwrap_or_else(|| panic!("{at}.{k} dropped in {got}"));
                assert_subset(v, g, &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(want, got, "at {at}"),
    }
}

/// Parses a request body as `T`, re-serialises it and checks nothing was lost.
fn round_trip<T>(json: &[u8]) -> T
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let msg: T = serde_json::from_slice(json).unwrap();
    let out = serde_json::to_value(&msg).unwrap();
    assert_subset(&serde_json::from_slice(json).unwrap(), &out, "");
    let again: T = serde_json::from_value(out).unwrap();
    assert_eq!(again, msg);
    msg
}

fn round_trip_request(route: Route, json: &[u8]) {
    match route {
        Route::Process(P::List) => drop(round_trip::<pr::ListRequest>(json)),
        Route::Process(P::Connect) => drop(round_trip::<pr::ConnectRequest>(json)),
        Route::Process(P::Start) => drop(round_trip::<pr::StartRequest>(json)),
        Route::Process(P::Update) => drop(round_trip::<pr::UpdateRequest>(json)),
        Route::Process(P::StreamInput) => drop(round_trip::<pr::StreamInputRequest>(json)),
        Route::Process(P::SendInput) => drop(round_trip::<pr::SendInputRequest>(json)),
        Route::Process(P::SendSignal) => drop(round_trip::<pr::SendSignalRequest>(json)),
        Route::Process(P::CloseStdin) => drop(round_trip::<pr::CloseStdinRequest>(json)),
        Route::Filesystem(F::Stat) => drop(round_trip::<fs::StatRequest>(json)),
        Route::Filesystem(F::MakeDir) => drop(round_trip::<fs::MakeDirRequest>(json)),
        Route::Filesystem(F::Move) => drop(round_trip::<fs::MoveRequest>(json)),
        Route::Filesystem(F::ListDir) => drop(round_trip::<fs::ListDirRequest>(json)),
        Route::Filesystem(F::Remove) => drop(round_trip::<fs::RemoveRequest>(json)),
        Route::Filesystem(F::WatchDir) => drop(round_trip::<fs::WatchDirRequest>(json)),
        Route::Filesystem(F::CreateWatcher) => drop(round_trip::<fs::CreateWatcherRequest>(json)),
        Route::Filesystem(F::GetWatcherEvents) => drop(round_trip::<fs::GetWatcherEventsRequest>(json)),
        Route::Filesystem(F::RemoveWatcher) => drop(round_trip::<fs::RemoveWatcherRequest>(json)),
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The JSON of one captured request body, unwrapping the envelope of streaming calls.
fn captured_json(kind: MethodKind, body: &[u8]) -> Vec<u8> {
    match kind {
        MethodKind::Unary => body.to_vec(),
        _ => {
            let mut d = EnvelopeDecoder::new();
            d.push(body);
            let Envelope { flags, payload } = d.next_frame().unwrap().unwrap();
            assert_eq!(flags, 0);
            d.finish().unwrap();
            payload.to_vec()
        }
    }
}

#[test]
fn every_captured_sdk_request_routes_decodes_and_round_trips() {
    let mut seen = 0;
    for line in CAPTURED.lines() {
        let rec: Value = serde_json::from_str(line).unwrap();
        let path = rec["path"].as_str().unwrap();
        let ct = rec["content_type"].as_str();
        let body = hex(rec["body_hex"].as_str().unwrap());

        let route = parse_route(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let expected_ct = match route.kind() {
            MethodKind::Unary => "application/json",
            _ => "application/connect+json",
        };
        assert_eq!(ct, Some(expected_ct), "{path} from {}", rec["sdk"]);
        if let Some(ms) = rec["timeout_ms"].as_str() {
            parse_timeout(ms.as_bytes()).unwrap();
        }
        round_trip_request(route, &captured_json(route.kind(), &body));
        seen += 1;
    }
    assert_eq!(seen, 44, "captured envd requests in testdata");
}

#[test]
fn start_requests_from_the_sdks() {
    let ct = Some("application/connect+json");
    let body = hex("000000004d7b2270726f63657373223a7b22636d64223a222f62696e2f62617368222c2261726773223a5b222d6c222c222d63222c226563686f2068656c6c6f225d7d2c22737464696e223a66616c73657d");
    let req: pr::StartRequest = decode_stream_request(ct, &body).unwrap();
    let process = req.process.unwrap();
    assert_eq!(process.cmd, "/bin/bash");
    assert_eq!(process.args, ["-l", "-c", "echo hello"]);
    assert!(process.envs.is_empty() && process.cwd.is_none());
    assert_eq!((req.stdin, req.pty, req.tag), (Some(false), None, None));

    let pty_json = br#"{"process":{"cmd":"/bin/bash","args":["-i","-l"],"envs":{"TERM":"xterm-256color","LANG":"C.UTF-8","LC_ALL":"C.UTF-8"}},"pty":{"size":{"cols":80,"rows":24}}}"#;
    let req: pr::StartRequest = round_trip(pty_json);
    assert_eq!(req.process.as_ref().unwrap().envs["TERM"], "xterm-256color");
    assert_eq!(req.pty.unwrap().size, Some(pr::pty::Size { cols: 80, rows: 24 }));
    assert_eq!(req.stdin, None, "absent stdin must stay distinguishable (means true)");

    let with_all: pr::StartRequest = round_trip(
        br#"{"process":{"cmd":"/bin/bash","args":["-l","-c","echo hi"],"envs":{},"cwd":"/tmp"},"tag":"t1","stdin":true}"#,
    );
    assert_eq!(with_all.process.unwrap().cwd.as_deref(), Some("/tmp"));
    assert_eq!(with_all.tag.as_deref(), Some("t1"));
}

#[test]
fn inputs_and_signals() {
    let req: pr::SendInputRequest = round_trip(br#"{"process":{"pid":4242},"input":{"stdin":"aGkK"}}"#);
    assert_eq!(req.process.unwrap().selector, Some(pr::process_selector::Selector::Pid(4242)));
    assert_eq!(req.input.unwrap().input, Some(pr::process_input::Input::Stdin(b"hi\n".to_vec())));

    let by_tag: pr::ConnectRequest = round_trip(br#"{"process":{"tag":"srv"}}"#);
    assert_eq!(by_tag.process.unwrap().selector, Some(pr::process_selector::Selector::Tag("srv".into())));

    let sig: pr::SendSignalRequest = round_trip(br#"{"process":{"pid":4242},"signal":"SIGNAL_SIGKILL"}"#);
    assert_eq!(sig.signal(), Signal::Sigkill);
    // proto3 JSON parsers must take enum numbers too.
    let sig: pr::SendSignalRequest = serde_json::from_str(r#"{"signal":15}"#).unwrap();
    assert_eq!(sig.signal(), Signal::Sigterm);

    let chunk: pr::StreamInputRequest = round_trip(br#"{"data":{"input":{"pty":"bHMK"}}}"#);
    let Some(pr::stream_input_request::Event::Data(data)) = chunk.event else { panic!() };
    assert_eq!(data.input.unwrap().input, Some(pr::process_input::Input::Pty(b"ls\n".to_vec())));
    let _: pr::StreamInputRequest = round_trip(br#"{"start":{"process":{"pid":1}}}"#);
    let _: pr::StreamInputRequest = round_trip(br#"{"keepalive":{}}"#);
}

#[test]
fn parsing_is_lenient_like_envd() {
    // Original field names and unknown fields (newer SDKs) are accepted.
    let req: fs::GetWatcherEventsRequest = serde_json::from_str(r#"{"watcher_id":"w1","futureField":[1,2]}"#).unwrap();
    assert_eq!(req.watcher_id, "w1");
    let req: fs::WatchDirRequest =
        serde_json::from_str(r#"{"path":"/home/user","recursive":true,"includeEntry":true}"#).unwrap();
    assert!(req.recursive && req.include_entry);
    // Unpadded and padded base64 both decode.
    let a: pr::ProcessInput = serde_json::from_str(r#"{"stdin":"aGk"}"#).unwrap();
    let b: pr::ProcessInput = serde_json::from_str(r#"{"stdin":"aGk="}"#).unwrap();
    assert_eq!(a, b);
}

fn start_response(event: process_event::Event) -> pr::StartResponse {
    pr::StartResponse { event: Some(ProcessEvent { event: Some(event) }) }
}

#[test]
fn process_events_have_the_shapes_the_sdks_read() {
    use process_event::{data_event::Output, DataEvent, EndEvent, Event, KeepAlive, StartEvent};
    let cases = [
        (Event::Start(StartEvent { pid: 12 }), json!({"event":{"start":{"pid":12}}})),
        (
            Event::Data(DataEvent { output: Some(Output::Stdout(b"hi".to_vec())) }),
            json!({"event":{"data":{"stdout":"aGk="}}}),
        ),
        (
            Event::Data(DataEvent { output: Some(Output::Stderr(b"oops\n".to_vec())) }),
            json!({"event":{"data":{"stderr":"b29wcwo="}}}),
        ),
        (
            Event::Data(DataEvent { output: Some(Output::Pty(vec![0x1b, b'['])) }),
            json!({"event":{"data":{"pty":"G1s="}}}),
        ),
        (
            Event::End(EndEvent { exit_code: 0, exited: true, status: "exit status 0".into(), error: None }),
            json!({"event":{"end":{"exitCode":0,"exited":true,"status":"exit status 0"}}}),
        ),
        (
            Event::End(EndEvent {
                exit_code: -1,
                exited: false,
                status: "signal: killed".into(),
                error: Some("killed".into()),
            }),
            json!({"event":{"end":{"exitCode":-1,"exited":false,"status":"signal: killed","error":"killed"}}}),
        ),
        (Event::Keepalive(KeepAlive {}), json!({"event":{"keepalive":{}}})),
    ];
    for (event, want) in cases {
        let msg = start_response(event);
        assert_eq!(serde_json::to_value(&msg).unwrap(), want);
        // ConnectResponse carries the same event under the same name.
        let connect = pr::ConnectResponse { event: msg.event.clone() };
        assert_eq!(serde_json::to_value(&connect).unwrap(), want);
        let back: pr::StartResponse = serde_json::from_value(want).unwrap();
        assert_eq!(back, msg);
    }
}

#[test]
fn stream_message_frame_is_enveloped_json() {
    let frame =
        encode_stream_message(&start_response(process_event::Event::Start(process_event::StartEvent { pid: 7 })))
            .unwrap();
    let json = br#"{"event":{"start":{"pid":7}}}"#;
    assert_eq!(frame[0], 0);
    assert_eq!(&frame[1..5], &(json.len() as u32).to_be_bytes());
    assert_eq!(&frame[5..], json);
}

#[test]
fn list_response_shape() {
    let resp = pr::ListResponse {
        processes: vec![pr::ProcessInfo {
            config: Some(pr::ProcessConfig {
                cmd: "/bin/bash".into(),
                args: vec!["-l".into(), "-c".into(), "sleep 10".into()],
                envs: [("A".to_string(), "1".to_string())].into(),
                cwd: Some("/home/user".into()),
            }),
            pid: 4242,
            tag: None,
        }],
    };
    assert_eq!(
        serde_json::to_value(&resp).unwrap(),
        json!({"processes":[{"config":{"cmd":"/bin/bash","args":["-l","-c","sleep 10"],
            "envs":{"A":"1"},"cwd":"/home/user"},"pid":4242}]})
    );
    assert_eq!(serde_json::to_value(pr::ListResponse::default()).unwrap(), json!({"processes":[]}));
}

fn entry() -> EntryInfo {
    EntryInfo {
        name: "a.txt".into(),
        r#type: FileType::File.into(),
        path: "/home/user/a.txt".into(),
        size: 3,
        mode: 0o644,
        permissions: "-rw-r--r--".into(),
        owner: "user".into(),
        group: "user".into(),
        modified_time: Some(crate::Timestamp::new(1_704_164_645, 500_000_000)),
        symlink_target: None,
        metadata: Default::default(),
    }
}

#[test]
fn entry_info_shape() {
    let want = json!({
        "name":"a.txt","type":"FILE_TYPE_FILE","path":"/home/user/a.txt","size":"3",
        "mode":420,"permissions":"-rw-r--r--","owner":"user","group":"user",
        "modifiedTime":"2024-01-02T03:04:05.500Z","metadata":{}
    });
    assert_eq!(serde_json::to_value(entry()).unwrap(), want);
    let back: EntryInfo = serde_json::from_value(want).unwrap();
    assert_eq!(back, entry());

    let link = EntryInfo { r#type: FileType::Symlink.into(), symlink_target: Some("/etc/hosts".into()), ..entry() };
    let v = serde_json::to_value(&link).unwrap();
    assert_eq!(v["type"], "FILE_TYPE_SYMLINK");
    assert_eq!(v["symlinkTarget"], "/etc/hosts");
    // User metadata (the `user.e2b.*` xattrs) is a plain JSON object, field 11 in binary.
    let tagged = EntryInfo { metadata: [("author".to_string(), "me".to_string())].into(), ..entry() };
    assert_eq!(serde_json::to_value(&tagged).unwrap()["metadata"], json!({"author":"me"}));
    assert!(prost::Message::encode_to_vec(&tagged).windows(2).any(|w| w == [0x5a, 0x0c]), "field 11, length-delimited");
    // int64 given as a number is accepted too.
    let n: EntryInfo = serde_json::from_str(r#"{"size":5,"type":2}"#).unwrap();
    assert_eq!((n.size, n.r#type()), (5, FileType::Directory));
}

#[test]
fn filesystem_responses() {
    let list = fs::ListDirResponse { entries: vec![entry()] };
    let v = serde_json::to_value(&list).unwrap();
    assert_eq!(v["entries"][0]["name"], "a.txt");

    let start = fs::WatchDirResponse {
        event: Some(fs::watch_dir_response::Event::Start(fs::watch_dir_response::StartEvent {})),
    };
    assert_eq!(serde_json::to_value(&start).unwrap(), json!({"start":{}}));

    let ev = fs::WatchDirResponse {
        event: Some(fs::watch_dir_response::Event::Filesystem(fs::FilesystemEvent {
            name: "a.txt".into(),
            r#type: EventType::Create.into(),
            entry: None,
        })),
    };
    assert_eq!(serde_json::to_value(&ev).unwrap(), json!({"filesystem":{"name":"a.txt","type":"EVENT_TYPE_CREATE"}}));
    for (t, name) in [
        (EventType::Write, "EVENT_TYPE_WRITE"),
        (EventType::Remove, "EVENT_TYPE_REMOVE"),
        (EventType::Rename, "EVENT_TYPE_RENAME"),
        (EventType::Chmod, "EVENT_TYPE_CHMOD"),
    ] {
        let e = fs::FilesystemEvent { name: "x".into(), r#type: t.into(), entry: Some(entry()) };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], name);
        assert_eq!(v["entry"]["path"], "/home/user/a.txt");
    }

    let keep = fs::WatchDirResponse {
        event: Some(fs::watch_dir_response::Event::Keepalive(fs::watch_dir_response::KeepAlive {})),
    };
    assert_eq!(serde_json::to_value(&keep).unwrap(), json!({"keepalive":{}}));

    let created = fs::CreateWatcherResponse { watcher_id: "w1".into() };
    assert_eq!(serde_json::to_value(&created).unwrap(), json!({"watcherId":"w1"}));
    assert_eq!(serde_json::to_value(fs::RemoveResponse {}).unwrap(), json!({}));
}

#[test]
fn unary_requests_decode_through_the_codec() {
    let req: fs::MoveRequest =
        decode_unary(Some("application/json"), br#"{"source":"/home/user/a.txt","destination":"/home/user/z.txt"}"#)
            .unwrap();
    assert_eq!((req.source.as_str(), req.destination.as_str()), ("/home/user/a.txt", "/home/user/z.txt"));
}
