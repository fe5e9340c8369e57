//! Running a build: each step that changes files runs in a real sandbox of what the
//! build has made so far (network on, as root unless a `USER` step said otherwise), and
//! its result, the sandbox's writable layer, is committed as a layer: a files-only
//! snapshot named by the step's cache key (`spec.rs`). A step whose layer exists is not
//! run again (unless forced). ENV, USER change only what later steps run with (they are
//! in the keys). The sandbox of a step is killed once its layer is committed; the next
//! step boots on that layer, so every layer holds exactly one step's changes.
//!
//! Must not: publish anything (`mod.rs` publishes the result when every step passed).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use stasis_proto::agent::StartCommand;
use stasis_runtime::agent_client::{self, Command};
use stasis_runtime::{
    BuildBase, ImageConfig, ImportedImage, PauseMode, ReadyCheck, Runtime, SandboxSpec, TemplatePublish, ENVD_PORT,
};

use super::log::{Build, Failure, Lines};
use super::spec::{self, sh_quote, BuildSpec, From, Step};

/// How long a start command may take to be ready.
const READY_TIMEOUT_SECS: u64 = 300;

/// What a build needs besides its spec.
pub struct Context {
    pub runtime: Arc<dyn Runtime>,
    /// Where uploads are (`files/HASH`).
    pub files: PathBuf,
    pub template: String,
    pub build_id: String,
    /// Where on-disk images may be read from, and registries reached without verified TLS.
    pub import_dir: PathBuf,
    pub insecure_registries: Vec<String>,
    pub cpu_count: u32,
    pub memory_mb: u64,
}

/// What later steps run with.
struct State {
    env: BTreeMap<String, String>,
    user: String,
    workdir: Option<String>,
}

/// The build's current sandbox, if one is up.
struct Sandbox {
    id: String,
}

pub async fn run(ctx: &Context, spec: &BuildSpec, log: &Arc<Build>) -> Result<TemplatePublish, Failure> {
    // The message carries the end of the step's output: the SDKs show only the message.
    let fail = |step: &str, message: String| {
        let tail = log.tail_of(step, 20);
        let output: Vec<&str> = tail.iter().skip(1).map(|e| e.message.as_str()).collect();
        let message =
            if output.is_empty() { message } else { format!("{message}; its output ends:\n{}", output.join("\n")) };
        Failure { message, step: Some(step.to_string()), log_entries: tail }
    };
    log.log("info", Some("base"), format!("[base] {}", describe_base(&spec.from)));
    let mut state = State { env: BTreeMap::new(), user: "root".into(), workdir: None };
    let base = match &spec.from {
        From::Template(name) => BuildBase::Template(name.clone()),
        From::Image(img, creds) => {
            let t0 = std::time::Instant::now();
            let imported = import(ctx, img, creds.as_ref(), log).await.map_err(|e| fail("base", e))?;
            let how = if imported.cached { "already here" } else { "pulled and unpacked" };
            log.log(
                "info",
                Some("base"),
                format!("[base] {img} ({}) {how} in {:.1}s", imported.digest, t0.elapsed().as_secs_f64()),
            );
            for note in &imported.config.notes {
                log.log("info", Some("base"), format!("[base] {note}"));
            }
            state.start_from(&imported.config);
            BuildBase::Layer(imported.layer)
        }
    };
    let lowers = ctx.runtime.template_lowers(&base).await.map_err(|e| fail("base", format!("base: {e}")))?;
    let mut key = spec::base_key(&lowers);
    let mut cur = base;
    let mut sandbox: Option<Sandbox> = None;
    let total = spec.steps.len();
    let mut result = Ok(());
    for (i, (step, force)) in spec.steps.iter().enumerate() {
        let no = (i + 1).to_string();
        let nonce = force.then(|| format!("{}-{no}", ctx.build_id));
        key = spec::chain(&key, step, nonce.as_deref());
        let head = format!("[{}/{total}] {}", i + 1, step.describe());
        match step {
            Step::Env(kv) => {
                state.env.extend(kv.iter().cloned());
                log.log("info", Some(&no), head);
                continue;
            }
            Step::User(u) => {
                state.user = u.clone();
                log.log("info", Some(&no), head);
                continue;
            }
            Step::Workdir(d) => state.workdir = Some(d.clone()),
            _ => {}
        }
        let layer = spec::layer_id(&key);
        if !force && ctx.runtime.has_layer(&layer).await {
            log.log("info", Some(&no), format!("{head} CACHED"));
            stop(ctx, &mut sandbox).await;
            cur = BuildBase::Layer(layer);
            continue;
        }
        log.log("info", Some(&no), head);
        let t0 = std::time::Instant::now();
        let ran = run_step(ctx, &cur, &mut sandbox, step, &state, log, &no).await;
        let committed = match ran {
            Ok(()) => commit(ctx, &mut sandbox, &layer).await,
            Err(e) => Err(e),
        };
        match committed {
            Ok(()) => {
                log.log("info", Some(&no), format!("step {no} done in {:.1}s", t0.elapsed().as_secs_f64()));
                cur = BuildBase::Layer(layer);
            }
            Err(e) => {
                result = Err(fail(&no, format!("step {no} ({}) failed: {e}", step.describe())));
                break;
            }
        }
    }
    stop(ctx, &mut sandbox).await;
    result?;
    let start = spec.start_cmd.as_ref().map(|cmd| StartCommand {
        cmd: cmd.clone(),
        user: state.user.clone(),
        cwd: state.workdir.clone(),
        env: BTreeMap::new(),
    });
    let ready = match (&start, &spec.ready_cmd) {
        (Some(_), Some(cmd)) => {
            Some(ReadyCheck { port: None, path: "/".into(), cmd: Some(cmd.clone()), timeout_secs: READY_TIMEOUT_SECS })
        }
        _ => None,
    };
    Ok(TemplatePublish {
        name: ctx.template.clone(),
        build_id: ctx.build_id.clone(),
        base: Some(cur),
        env: state.env,
        start,
        ready,
        // The service sets them from the request (`templates/mod.rs`).
        tags: Vec::new(),
    })
}

fn describe_base(from: &From) -> String {
    match from {
        From::Template(t) => format!("FROM template {t}"),
        From::Image(i, _) => format!("FROM image {i}"),
    }
}

/// The layer of image `img` (pulled unless an earlier build did), or why not.
async fn import(
    ctx: &Context,
    img: &str,
    creds: Option<&super::image::Credentials>,
    log: &Arc<Build>,
) -> Result<ImportedImage, String> {
    let source = super::image::source(img, creds, &ctx.insecure_registries, &ctx.import_dir)?;
    let heard = log.clone();
    let hear: Arc<dyn Fn(String) + Send + Sync> =
        Arc::new(move |line| heard.log("info", Some("base"), format!("[base] {line}")));
    ctx.runtime.import_image(&source, hear).await.map_err(|e| e.to_string())
}

impl State {
    /// The image's ENV, WORKDIR and USER are where the steps start (its CMD and
    /// ENTRYPOINT are not taken, as E2B does not: the start command is the template's).
    fn start_from(&mut self, c: &ImageConfig) {
        for kv in &c.env {
            if let Some((k, v)) = kv.split_once('=') {
                self.env.insert(k.to_string(), v.to_string());
            }
        }
        if let Some(w) = &c.working_dir {
            self.workdir = Some(w.clone());
        }
        if let Some(u) = &c.user {
            self.user = u.clone();
        }
    }
}

/// Runs one step that changes files, in the build's sandbox (booted on `cur` if none).
async fn run_step(
    ctx: &Context,
    cur: &BuildBase,
    sandbox: &mut Option<Sandbox>,
    step: &Step,
    state: &State,
    log: &Build,
    no: &str,
) -> Result<(), String> {
    if sandbox.is_none() {
        let id = format!("bld{}", hex::encode(rand::random::<[u8; 8]>()));
        let spec = SandboxSpec {
            template: ctx.template.clone(),
            cpu_count: ctx.cpu_count,
            memory_mb: ctx.memory_mb,
            disk_mb: 8192,
            ..Default::default()
        };
        ctx.runtime.create_build_sandbox(&id, cur, &spec).await.map_err(|e| format!("build sandbox: {e}"))?;
        *sandbox = Some(Sandbox { id });
    }
    let id = sandbox.as_ref().expect("booted above").id.clone();
    let (cmd, user) = match step {
        Step::Run { cmd, user } => (cmd.clone(), user.clone().unwrap_or_else(|| state.user.clone())),
        Step::Workdir(d) => (format!("mkdir -p {}", sh_quote(d)), "root".into()),
        Step::Copy { src, dest, user, mode, files_hash } => {
            let upload = ctx.files.join(files_hash);
            if !upload.is_file() {
                return Err(format!("the files of {src:?} (hash {files_hash}) were never uploaded"));
            }
            let inside = format!("/tmp/.stasis-copy-{}.tar", &files_hash[..files_hash.len().min(16)]);
            ctx.runtime.copy_in(&id, &upload, &inside).await.map_err(|e| e.to_string())?;
            let owner = user.clone().unwrap_or_else(|| state.user.clone());
            (copy_script(&inside, src, dest, &owner, *mode, is_gzip(&upload)), "root".into())
        }
        Step::Env(_) | Step::User(_) => return Ok(()),
    };
    let c = Command {
        cmd,
        user: Some(user),
        envs: state.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<HashMap<_, _>>(),
        cwd: if matches!(step, Step::Workdir(_)) { None } else { state.workdir.clone() },
        portable_shell: true,
    };
    let io = ctx.runtime.connect(&id, ENVD_PORT).await.map_err(|e| e.to_string())?;
    let mut lines = Lines::default();
    let out = agent_client::run_streaming(io, &c, &[], |_, chunk| {
        for l in lines.push(chunk) {
            log.log("info", Some(no), l);
        }
    })
    .await
    .map_err(|e| e.to_string())?;
    if let Some(rest) = lines.finish() {
        log.log("info", Some(no), rest);
    }
    if out.exit_code != 0 {
        return Err(format!("exit code {}", out.exit_code));
    }
    Ok(())
}

/// Commits the sandbox's writable layer as `layer` and stops the sandbox.
async fn commit(ctx: &Context, sandbox: &mut Option<Sandbox>, layer: &str) -> Result<(), String> {
    let id = sandbox.as_ref().map(|s| s.id.clone()).ok_or("no build sandbox")?;
    let made = ctx.runtime.snapshot(&id, layer, PauseMode::Filesystem).await.map_err(|e| format!("commit: {e}"));
    stop(ctx, sandbox).await;
    made.map(|_| ())
}

async fn stop(ctx: &Context, sandbox: &mut Option<Sandbox>) {
    if let Some(s) = sandbox.take() {
        if let Err(e) = ctx.runtime.kill(&s.id).await {
            tracing::warn!(sandbox = %s.id, "cannot kill a build sandbox: {e}");
        }
    }
}

fn is_gzip(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 2];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == [0x1f, 0x8b]
}

/// The shell script of a COPY: unpack the upload, then copy `src` (a file or a
/// directory, relative to the build context) to `dest` as Docker does: into `dest` when
/// it ends with `/` or `src` is a directory (its contents), else as `dest`. Then owner and
/// mode. A relative `dest` is under the working directory.
fn copy_script(upload: &str, src: &str, dest: &str, owner: &str, mode: Option<u32>, gzip: bool) -> String {
    let src = src.trim_start_matches("./").trim_end_matches('/');
    let src = if src.is_empty() { "." } else { src };
    let (q_up, q_src, q_dest, q_owner) = (sh_quote(upload), sh_quote(src), sh_quote(dest), sh_quote(owner));
    let z = if gzip { "z" } else { "" };
    let chmod = mode.map(|m| format!("chmod -R {m:o} \"$target\"")).unwrap_or_else(|| ":".into());
    format!(
        r#"set -e
case {q_dest} in /*) dest={q_dest} ;; *) dest="$PWD"/{q_dest} ;; esac
d=$(mktemp -d /tmp/.stasis-copy.XXXXXX)
tar -x{z}f {q_up} -C "$d"
rm -f {q_up}
cd "$d"
[ -e {q_src} ] || {{ echo "COPY: {src} is not in the uploaded files" >&2; exit 1; }}
if [ -d {q_src} ]; then
  mkdir -p "$dest"; cp -a {q_src}/. "$dest"/; target="$dest"
else
  case {q_dest} in */) mkdir -p "$dest"; target="$dest"/$(basename {q_src}) ;; *) mkdir -p "$(dirname "$dest")"; target="$dest" ;; esac
  cp -a {q_src} "$target"
fi
cd /; rm -rf "$d"
chown -R {q_owner}: "$target" 2>/dev/null || chown -R {q_owner} "$target"
{chmod}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_script_quotes_everything_it_is_given() {
        let s = copy_script("/tmp/.stasis-copy-ab.tar", "./my dir/", "/app's/", "user", Some(0o755), true);
        assert!(s.contains("tar -xzf '/tmp/.stasis-copy-ab.tar'"));
        assert!(s.contains("[ -d 'my dir' ]"));
        assert!(s.contains(r"'/app'\''s/'"));
        assert!(s.contains("chmod -R 755"));
        let plain = copy_script("/tmp/u.tar", "a.txt", "b.txt", "root", None, false);
        assert!(plain.contains("tar -xf") && plain.contains("\n:\n"));
    }
}
