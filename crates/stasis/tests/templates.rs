//! Issue 16: `stasis template build -f Dockerfile DIR` (FROM, ENV, WORKDIR, COPY, RUN,
//! USER, CMD with a ready command) through `stasis serve`; the sandbox from it has the
//! files, env and users the Dockerfile said and its service up at create; a rebuild comes
//! from the cache; a template built on it adds only its own layer; `template ls/rm`, and
//! a removed template's layers go once its last sandbox does.

mod common;

use std::path::Path;

use common::Server;

const DOCKERFILE: &str = r#"
FROM base
ENV APP_MODE=prod
WORKDIR /app
COPY hello.txt ./
COPY conf/ /etc/app/
RUN echo "built as $(whoami) in $PWD mode $APP_MODE" > /app/info.txt
USER user
RUN whoami > /home/user/who.txt
CMD ["python3", "-m", "http.server", "8000"]
"#;

const READY: &str = r#"[ -n "$(ss -Htuln sport = :8000)" ]"#;

const GET_APP: &str =
    "python3 -c 'import urllib.request; print(urllib.request.urlopen(\"http://127.0.0.1:8000/hello.txt\", timeout=5).read().decode(), end=\"\")'";

fn context(dir: &Path) {
    std::fs::create_dir_all(dir.join("conf")).unwrap();
    std::fs::write(dir.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(dir.join("hello.txt"), "hello from a dockerfile\n").unwrap();
    std::fs::write(dir.join("conf/app.conf"), "key=value\n").unwrap();
}

fn layers(s: &Server) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(s.host.data_dir.join("snapshots"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("lyr"))
        .collect();
    v.sort();
    v
}

fn exec(s: &Server, id: &str, cmd: &str) -> String {
    let out = s.cli(&["exec", id, cmd]);
    assert_eq!(out.code, 0, "exec {cmd}: {}{}", out.stdout, out.stderr);
    out.stdout
}

#[test]
fn a_dockerfile_builds_a_template_whose_sandboxes_start_ready() {
    let s = Server::start("tpl-docker");
    let ctx = s.host.data_dir.join("ctx");
    context(&ctx);
    let ctx_s = ctx.to_str().unwrap();
    let t0 = std::time::Instant::now();
    let built = s.command(&[
        "template",
        "build",
        "-f",
        &format!("{ctx_s}/Dockerfile"),
        "--name",
        "web",
        "--ready-cmd",
        READY,
        ctx_s,
    ]);
    assert_eq!(built.code, 0, "build: {}{}\n{}", built.stdout, built.stderr, s.log());
    println!("build: {:?}\n{}", t0.elapsed(), built.stdout);
    assert!(built.stdout.contains("[5/7] RUN echo"), "progress shows each step: {}", built.stdout);
    let first_layers = layers(&s);
    assert_eq!(first_layers.len(), 5, "WORKDIR, 2 COPY, 2 RUN: one layer each: {first_layers:?}");

    let t0 = std::time::Instant::now();
    let created = s.cli(&["create", "--template", "web"]);
    assert_eq!(created.code, 0, "{}{}", created.stdout, created.stderr);
    println!("create from the template: {:?}", t0.elapsed());
    let id = created.stdout.trim().to_string();
    // Up at create: the service was captured running.
    assert_eq!(exec(&s, &id, GET_APP), "hello from a dockerfile\n");
    assert_eq!(exec(&s, &id, "cat /app/info.txt"), "built as root in /app mode prod\n");
    assert_eq!(exec(&s, &id, "echo $APP_MODE"), "prod\n");
    assert_eq!(exec(&s, &id, "cat /etc/app/app.conf"), "key=value\n");
    assert_eq!(exec(&s, &id, "cat /home/user/who.txt"), "user\n");
    assert_eq!(exec(&s, &id, "ps -o user= -C python3 | head -1"), "user\n", "the start command runs as the last USER");

    // No change: from the cache, no step run.
    let t0 = std::time::Instant::now();
    let again = s.command(&["template", "build", "--name", "web", "--ready-cmd", READY, ctx_s]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert_eq!(again.stdout.matches("CACHED").count(), 5, "{}", again.stdout);
    println!("cached rebuild: {:?}", t0.elapsed());
    assert_eq!(layers(&s), first_layers);

    // A template on top of it costs one layer.
    let child = ctx.join("child");
    std::fs::create_dir_all(&child).unwrap();
    std::fs::write(child.join("Dockerfile"), "FROM web\nRUN echo two > /two.txt\n").unwrap();
    let c = s.command(&["template", "build", "--name", "web-two", child.to_str().unwrap()]);
    assert_eq!(c.code, 0, "{}{}", c.stdout, c.stderr);
    assert_eq!(layers(&s).len(), 6);
    let ls = s.command(&["template", "ls", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&ls.stdout).unwrap();
    let names: Vec<&str> = list.as_array().unwrap().iter().filter_map(|t| t["templateID"].as_str()).collect();
    assert!(names.contains(&"web") && names.contains(&"web-two") && names.contains(&"base"), "{names:?}");

    // --no-cache runs every step (new layers), the previous ones stay for web-two.
    let forced = s.command(&["template", "build", "--name", "web", "--no-cache", "--ready-cmd", READY, ctx_s]);
    assert_eq!(forced.code, 0, "{}{}", forced.stdout, forced.stderr);
    assert_eq!(forced.stdout.matches("CACHED").count(), 0, "{}", forced.stdout);

    // rm: gone for creates; its sandbox keeps working; its layers go with the last user.
    assert_eq!(s.command(&["template", "rm", "web-two"]).code, 0);
    assert_eq!(s.command(&["template", "rm", "web"]).code, 0);
    assert_eq!(s.cli(&["create", "--template", "web"]).code, 3, "a removed template is not found");
    assert_eq!(s.command(&["template", "rm", "base"]).code, 4, "setup's templates are not removed");
    assert_eq!(exec(&s, &id, "cat /app/info.txt"), "built as root in /app mode prod\n");
    assert_eq!(s.cli(&["kill", &id]).code, 0);
    assert!(layers(&s).is_empty(), "no template or sandbox uses them: {:?}", layers(&s));
}

#[test]
fn a_failing_step_fails_the_build_and_publishes_nothing() {
    let s = Server::start("tpl-fail");
    let ctx = s.host.data_dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM base\nRUN echo ok\nRUN echo said-before-failing; false\n").unwrap();
    let out = s.command(&["template", "build", "--name", "broken", ctx.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("step 2") && out.stderr.contains("said-before-failing"), "{}", out.stderr);
    assert_eq!(s.cli(&["create", "--template", "broken"]).code, 3);
    assert!(std::fs::read_dir(s.host.data_dir.join("sandboxes")).unwrap().next().is_none(), "no build sandbox left");
}
