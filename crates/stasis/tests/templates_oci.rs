//! Issue 16: templates from OCI images with `stasis template build -f Dockerfile`: FROM an
//! image in a local registry (Debian's docker-registry on loopback, started here; the
//! image made here by tests/oci/test-images.sh: a static busybox without the user `user`),
//! with ENV, WORKDIR, COPY, RUN, USER; the sandbox from it runs commands as `user`, with
//! the image's env; a second template from the same image shares its layer; FROM an OCI
//! archive in DATA/images/import; and the errors at step base (unreachable registry, an
//! archive outside the import dir, an unknown image), publishing nothing.
//!
//! Needs skopeo, umoci, docker-registry, busybox-static, apache2-utils (scripts/test.sh
//! installs them).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Server;

fn oci_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oci").join(name)
}

fn sh(script: &str, args: &[&str]) -> String {
    let out = Command::new(oci_script(script)).args(args).output().unwrap();
    assert!(out.status.success(), "{script} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A registry with the busybox image as `bb:1`; stopped on drop.
struct Registry {
    dir: PathBuf,
    addr: String,
}

impl Registry {
    fn start(work: &Path) -> Self {
        let images = work.join("images");
        sh("test-images.sh", &[images.to_str().unwrap()]);
        let dir = work.join("registry");
        let addr = sh("registry.sh", &["start", dir.to_str().unwrap()]);
        sh(
            "registry.sh",
            &["push", dir.to_str().unwrap(), &format!("{}/layout:busybox", images.display()), &format!("{addr}/bb:1")],
        );
        Registry { dir, addr }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new(oci_script("registry.sh")).args(["stop", self.dir.to_str().unwrap()]).status();
    }
}

fn image_layers(s: &Server) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(s.host.data_dir.join("snapshots")) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.path().join("image.json").exists() && !e.path().join("deleted").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

fn exec(s: &Server, id: &str, cmd: &str) -> String {
    let out = s.cli(&["exec", id, cmd]);
    assert_eq!(out.code, 0, "exec {cmd}: {}{}", out.stdout, out.stderr);
    out.stdout
}

fn build(s: &Server, dir: &Path, name: &str, dockerfile: &str) -> common::Output {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    s.command(&["template", "build", "--name", name, dir.to_str().unwrap()])
}

#[test]
fn a_dockerfile_from_a_registry_image_builds_a_usable_template() {
    let s = Server::start("tpl-oci");
    let reg = Registry::start(&s.host.data_dir.join("oci-test"));
    let ctx = s.host.data_dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello.txt"), "hello from a registry image\n").unwrap();
    let dockerfile = format!(
        "FROM {}/bb:1\nENV APP_MODE=oci\nWORKDIR /app\nCOPY hello.txt ./\n\
         RUN echo \"built as $(whoami) in $PWD, $OCI_GREETING, $APP_MODE\" > /app/info.txt\n\
         USER user\nRUN whoami > /home/user/who.txt\n",
        reg.addr
    );
    let built = build(&s, &ctx, "bbapp", &dockerfile);
    assert_eq!(built.code, 0, "build: {}{}\n{}", built.stdout, built.stderr, s.log());
    assert!(built.stdout.contains("created user user"), "{}", built.stdout);
    assert_eq!(image_layers(&s).len(), 1);

    let created = s.cli(&["create", "--template", "bbapp"]);
    assert_eq!(created.code, 0, "{}{}", created.stdout, created.stderr);
    let id = created.stdout.trim().to_string();
    assert_eq!(exec(&s, &id, "cat /app/hello.txt"), "hello from a registry image\n");
    assert_eq!(exec(&s, &id, "cat /app/info.txt"), "built as root in /app, from-the-image, oci\n");
    assert_eq!(exec(&s, &id, "cat /home/user/who.txt"), "user\n");
    assert_eq!(exec(&s, &id, "whoami; echo $OCI_GREETING"), "user\nfrom-the-image\n");
    assert_eq!(s.cli(&["kill", &id]).code, 0);

    // Another template from the same image: the image's layer is shared, not pulled again.
    let other = build(&s, &ctx.join("two"), "bbtwo", &format!("FROM {}/bb:1\nRUN echo two > /two.txt\n", reg.addr));
    assert_eq!(other.code, 0, "{}{}", other.stdout, other.stderr);
    assert!(other.stdout.contains("already here"), "{}", other.stdout);
    assert_eq!(image_layers(&s).len(), 1);

    // The same image from an OCI archive in DATA/images/import.
    let import = s.host.data_dir.join("images/import");
    std::fs::create_dir_all(&import).unwrap();
    let archive = import.join("bb.tar");
    let images = s.host.data_dir.join("oci-test/images/layout");
    let copied = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            &format!("oci:{}:busybox", images.display()),
            &format!("oci-archive:{}", archive.display()),
        ])
        .status()
        .unwrap();
    assert!(copied.success());
    let from_archive = build(
        &s,
        &ctx.join("arch"),
        "bbarch",
        &format!("FROM oci-archive:{}\nRUN echo a > /a.txt\n", archive.display()),
    );
    assert_eq!(from_archive.code, 0, "{}{}", from_archive.stdout, from_archive.stderr);
    let created = s.cli(&["create", "--template", "bbarch"]);
    assert_eq!(created.code, 0, "{}{}", created.stdout, created.stderr);
    let id = created.stdout.trim().to_string();
    assert_eq!(exec(&s, &id, "cat /a.txt /srv/image.txt"), "a\nmade by test-images.sh\n");
    assert_eq!(s.cli(&["kill", &id]).code, 0);

    // Errors at step base, nothing published.
    let outside = s.host.data_dir.join("outside.tar");
    std::fs::copy(&archive, &outside).unwrap();
    for (n, (from, want)) in [
        ("127.0.0.1:9/app:1".to_string(), "registry unreachable"),
        (format!("{}/nothing:1", reg.addr), "not found"),
        (format!("oci-archive:{}", outside.display()), "on-disk images are read only from"),
    ]
    .iter()
    .enumerate()
    {
        let name = format!("bad{n}");
        let out = build(&s, &ctx.join(&name), &name, &format!("FROM {from}\nRUN true\n"));
        assert_ne!(out.code, 0, "{from}: {}", out.stdout);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(all.contains(want), "{from}: want {want:?} in {all}");
        assert!(all.contains("base"), "the failed step is base: {all}");
        assert_eq!(s.cli(&["create", "--template", &name]).code, 3, "nothing published for {from}");
    }

    // rm the templates: the image's layer goes with the last one.
    for t in ["bbapp", "bbtwo", "bbarch"] {
        assert_eq!(s.command(&["template", "rm", t]).code, 0);
    }
    assert!(image_layers(&s).is_empty(), "{:?}", image_layers(&s));
}
