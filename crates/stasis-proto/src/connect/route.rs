//! Which request paths name which envd methods, and how each one streams.
//!
//! The agent dispatches on [`Route`]; the proxy can use [`Route::kind`] to know whether
//! a call streams without understanding it.

use super::error::ConnectError;

/// How a method's messages flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MethodKind {
    /// One JSON request body, one JSON response body (`application/json`).
    Unary,
    /// One enveloped request, enveloped responses ending with an end-of-stream frame.
    ServerStream,
    /// Enveloped requests, one enveloped response and an end-of-stream frame.
    ClientStream,
}

/// Methods of `process.Process`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProcessMethod {
    List,
    Connect,
    Start,
    Update,
    StreamInput,
    SendInput,
    SendSignal,
    CloseStdin,
}

/// Methods of `filesystem.Filesystem`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FilesystemMethod {
    Stat,
    MakeDir,
    Move,
    ListDir,
    Remove,
    WatchDir,
    CreateWatcher,
    GetWatcherEvents,
    RemoveWatcher,
}

/// A known envd method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    Process(ProcessMethod),
    Filesystem(FilesystemMethod),
}

pub const PROCESS_SERVICE: &str = "process.Process";
pub const FILESYSTEM_SERVICE: &str = "filesystem.Filesystem";

impl ProcessMethod {
    pub const ALL: [ProcessMethod; 8] = [
        ProcessMethod::List,
        ProcessMethod::Connect,
        ProcessMethod::Start,
        ProcessMethod::Update,
        ProcessMethod::StreamInput,
        ProcessMethod::SendInput,
        ProcessMethod::SendSignal,
        ProcessMethod::CloseStdin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ProcessMethod::List => "List",
            ProcessMethod::Connect => "Connect",
            ProcessMethod::Start => "Start",
            ProcessMethod::Update => "Update",
            ProcessMethod::StreamInput => "StreamInput",
            ProcessMethod::SendInput => "SendInput",
            ProcessMethod::SendSignal => "SendSignal",
            ProcessMethod::CloseStdin => "CloseStdin",
        }
    }

    pub fn kind(self) -> MethodKind {
        match self {
            ProcessMethod::Connect | ProcessMethod::Start => MethodKind::ServerStream,
            ProcessMethod::StreamInput => MethodKind::ClientStream,
            _ => MethodKind::Unary,
        }
    }
}

impl FilesystemMethod {
    pub const ALL: [FilesystemMethod; 9] = [
        FilesystemMethod::Stat,
        FilesystemMethod::MakeDir,
        FilesystemMethod::Move,
        FilesystemMethod::ListDir,
        FilesystemMethod::Remove,
        FilesystemMethod::WatchDir,
        FilesystemMethod::CreateWatcher,
        FilesystemMethod::GetWatcherEvents,
        FilesystemMethod::RemoveWatcher,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FilesystemMethod::Stat => "Stat",
            FilesystemMethod::MakeDir => "MakeDir",
            FilesystemMethod::Move => "Move",
            FilesystemMethod::ListDir => "ListDir",
            FilesystemMethod::Remove => "Remove",
            FilesystemMethod::WatchDir => "WatchDir",
            FilesystemMethod::CreateWatcher => "CreateWatcher",
            FilesystemMethod::GetWatcherEvents => "GetWatcherEvents",
            FilesystemMethod::RemoveWatcher => "RemoveWatcher",
        }
    }

    pub fn kind(self) -> MethodKind {
        match self {
            FilesystemMethod::WatchDir => MethodKind::ServerStream,
            _ => MethodKind::Unary,
        }
    }
}

impl Route {
    /// Every known method, process first.
    pub fn all() -> impl Iterator<Item = Route> {
        ProcessMethod::ALL
            .into_iter()
            .map(Route::Process)
            .chain(FilesystemMethod::ALL.into_iter().map(Route::Filesystem))
    }

    /// Fully qualified service name, e.g. `process.Process`.
    pub fn service(self) -> &'static str {
        match self {
            Route::Process(_) => PROCESS_SERVICE,
            Route::Filesystem(_) => FILESYSTEM_SERVICE,
        }
    }

    pub fn method(self) -> &'static str {
        match self {
            Route::Process(m) => m.name(),
            Route::Filesystem(m) => m.name(),
        }
    }

    pub fn kind(self) -> MethodKind {
        match self {
            Route::Process(m) => m.kind(),
            Route::Filesystem(m) => m.kind(),
        }
    }

    /// The request path, e.g. `/process.Process/Start`.
    pub fn path(self) -> String {
        format!("/{}/{}", self.service(), self.method())
    }
}

/// Resolves a request path (without query) such as `/process.Process/Start`.
///
/// An unknown service is `not_found` (nothing is served there); a known service with an
/// unknown method is `unimplemented`, which tells an SDK newer than this agent what
/// happened.
pub fn parse_route(path: &str) -> Result<Route, ConnectError> {
    let shown = || path.chars().take(128).collect::<String>();
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return Err(ConnectError::not_found(format!(
            "no Connect method at {:?}: expected /<package.Service>/<Method>",
            shown()
        )));
    };
    let route = match service {
        PROCESS_SERVICE => ProcessMethod::ALL.into_iter().find(|m| m.name() == method).map(Route::Process),
        FILESYSTEM_SERVICE => FilesystemMethod::ALL.into_iter().find(|m| m.name() == method).map(Route::Filesystem),
        _ => {
            return Err(ConnectError::not_found(format!("unknown service in {:?}", shown())));
        }
    };
    route.ok_or_else(|| ConnectError::unimplemented(format!("{:?} is not implemented", shown())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::Code;

    #[test]
    fn every_route_parses_back_from_its_path() {
        assert_eq!(Route::all().count(), 17);
        for route in Route::all() {
            assert_eq!(parse_route(&route.path()), Ok(route));
        }
    }

    #[test]
    fn kinds_match_the_protos() {
        assert_eq!(parse_route("/process.Process/Start").unwrap().kind(), MethodKind::ServerStream);
        assert_eq!(parse_route("/process.Process/Connect").unwrap().kind(), MethodKind::ServerStream);
        assert_eq!(parse_route("/process.Process/StreamInput").unwrap().kind(), MethodKind::ClientStream);
        assert_eq!(parse_route("/filesystem.Filesystem/WatchDir").unwrap().kind(), MethodKind::ServerStream);
        assert_eq!(parse_route("/process.Process/List").unwrap().kind(), MethodKind::Unary);
        let streaming: Vec<_> = Route::all().filter(|r| r.kind() != MethodKind::Unary).collect();
        assert_eq!(streaming.len(), 4);
    }

    #[test]
    fn unknown_paths_are_clear_errors() {
        let cases = [
            ("/process.Process/Fork", Code::Unimplemented),
            ("/process.Process/start", Code::Unimplemented),
            ("/process.Process/Start/extra", Code::Unimplemented),
            ("/process.Process/", Code::Unimplemented),
            ("/mcp.Mcp/Call", Code::NotFound),
            ("/files", Code::NotFound),
            ("process.Process/Start", Code::NotFound),
            ("", Code::NotFound),
            ("/", Code::NotFound),
        ];
        for (path, code) in cases {
            let err = parse_route(path).unwrap_err();
            assert_eq!(err.code, code, "{path}");
        }
    }
}
