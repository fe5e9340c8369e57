//! The sandbox filesystem as the envd services see it: path resolution, entries, the
//! operations, watches, and the user credentials they run under. Shared by the
//! `filesystem.Filesystem` service and the `/files` endpoint; knows nothing of HTTP.

pub mod creds;
pub mod entry;
pub mod metadata;
pub mod ops;
pub mod path;
pub mod watch;
