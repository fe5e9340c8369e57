//! Issue 17, item 2: checkpoint images kept in an S3 object store (a real S3 server, moto's,
//! started by each test with its own credentials). A pause is durable once its images are
//! in the bucket; the local copy is a cache, and a resume without it fetches the images,
//! verifies them and restores; a damaged object is refused; a pause whose upload fails
//! leaves the sandbox running.

mod common;

use common::s3::S3Server;
use common::{cgroup_dirs, wait_for, Host};

struct Node {
    host: Host,
    env: Vec<(String, String)>,
}

impl Node {
    fn rt(&self, args: &[&str]) -> common::Output {
        let mut full = vec!["runtime"];
        full.extend_from_slice(args);
        self.host.stasis_with(&full, &self.env)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.rt(args);
        assert_eq!(out.code, 0, "stasis runtime {args:?} failed: {}{}", out.stdout, out.stderr);
        out.stdout
    }

    /// A sandbox with a Python process holding a random value in memory and a file.
    fn sandbox_with_state(&self, prefix: &str) -> (String, String) {
        let id = common::unique_id(prefix);
        self.ok(&["create", &id, "--memory-mb", "256"]);
        self.host.sh(&id, common::PYVAR);
        self.host.sh(&id, "echo 'kept on disk' > /home/user/file.txt");
        wait_for("python value", || {
            self.host.sh(&id, "cat /home/user/py-initial 2>/dev/null || true").trim().len() > 3
        });
        let value = self.host.sh(&id, "cat /home/user/py-initial");
        (id, value)
    }

    /// Deletes the local copy of every checkpoint: this host now is like another node.
    fn drop_local_checkpoints(&self, id: &str) {
        let dir = self.host.sandbox_dir(id).join("checkpoints");
        for g in std::fs::read_dir(&dir).unwrap().flatten() {
            std::fs::remove_dir_all(g.path()).unwrap();
        }
    }

    fn prefix(&self, id: &str) -> String {
        format!("{}/sandboxes/{id}", self.s3_prefix())
    }

    fn s3_prefix(&self) -> String {
        let url = &self.env[0].1;
        url.trim_start_matches(&format!("s3://{}/", common::s3::BUCKET)).split('?').next().unwrap().to_string()
    }
}

fn node(s3: &S3Server, name: &str) -> Node {
    let host = Host::new(name);
    let env = s3.env(&format!("node-{name}"));
    Node { host, env }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pause_is_in_the_bucket_and_resumes_without_the_local_copy() {
    let s3 = S3Server::start("rt");
    let n = node(&s3, "osrt");
    let bucket = s3.client();
    // The server checks signatures: a wrong secret is refused.
    assert!(s3.client_with_secret("not-the-secret").list("").await.is_err(), "unsigned access was allowed");

    let (id, value) = n.sandbox_with_state("osrt");
    n.ok(&["pause", &id]);
    let objects = bucket.list(&n.prefix(&id)).await.unwrap();
    let names: Vec<&str> = objects.iter().map(|(k, _)| k.rsplit('/').next().unwrap()).collect();
    assert!(names.contains(&"checksums.json"), "no manifest in the bucket: {objects:?}");
    assert!(names.iter().any(|n| n.starts_with("pages-")), "no memory pages in the bucket: {objects:?}");
    // Each object is the local image, byte for byte.
    let local = n.host.sandbox_dir(&id).join("checkpoints/1");
    for (key, size) in &objects {
        let name = key.rsplit('/').next().unwrap();
        assert_eq!(std::fs::metadata(local.join(name)).unwrap().len(), *size, "{key}");
    }
    let pages = objects.iter().find(|(k, _)| k.contains("/pages-")).unwrap();
    assert_eq!(bucket.get(&pages.0).await, std::fs::read(local.join(pages.0.rsplit('/').next().unwrap())).unwrap());

    n.drop_local_checkpoints(&id);
    n.ok(&["resume", &id]);
    assert_eq!(n.host.python_value_now(&id), value, "the process's memory did not survive");
    assert_eq!(n.host.sh(&id, "cat /home/user/file.txt"), "kept on disk\n");

    // A second round from the restored sandbox works the same way.
    n.ok(&["pause", &id]);
    n.drop_local_checkpoints(&id);
    n.ok(&["resume", &id]);
    assert_eq!(n.host.python_value_now(&id), value);

    // Killing it deletes its objects.
    n.ok(&["kill", &id]);
    wait_for("objects deleted", || futures::executor::block_on(bucket.list(&n.prefix(&id))).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_object_is_refused_and_nothing_is_restored() {
    let s3 = S3Server::start("bad");
    let n = node(&s3, "osbad");
    let bucket = s3.client();
    let (id, value) = n.sandbox_with_state("osbad");
    n.ok(&["pause", &id]);
    n.drop_local_checkpoints(&id);
    let objects = bucket.list(&n.prefix(&id)).await.unwrap();
    let (pages, _) = objects.iter().find(|(k, _)| k.contains("/pages-")).unwrap().clone();
    let good = bucket.get(&pages).await;
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 0x40;
    bucket.put(&pages, bad).await;

    let out = n.rt(&["resume", &id]);
    assert_ne!(out.code, 0, "a damaged checkpoint was restored");
    assert!(out.stderr.contains("corrupted") && out.stderr.contains("pages-"), "{}", out.stderr);
    assert_eq!(n.host.info(&id)["state"], "paused");
    for d in cgroup_dirs(&id) {
        assert!(!d.exists(), "cgroup {} made for a refused restore", d.display());
    }
    let gens = std::fs::read_dir(n.host.sandbox_dir(&id).join("checkpoints")).unwrap().count();
    assert_eq!(gens, 0, "the damaged images were kept as the local copy");

    // The bucket mended, the same sandbox resumes: the refusal changed nothing.
    bucket.put(&pages, good).await;
    n.ok(&["resume", &id]);
    assert_eq!(n.host.python_value_now(&id), value);
    n.ok(&["kill", &id]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pause_that_cannot_upload_fails_and_the_sandbox_goes_on_running() {
    let mut s3 = S3Server::start("down");
    let n = node(&s3, "osdown");
    let (id, value) = n.sandbox_with_state("osdown");
    s3.stop();
    let out = n.rt(&["pause", &id]);
    assert_ne!(out.code, 0, "a pause was reported durable with the object store down");
    assert!(out.stderr.contains("could not be uploaded") && out.stderr.contains("goes on running"), "{}", out.stderr);
    assert_eq!(n.host.info(&id)["state"], "running");
    // The same processes, memory intact, files intact.
    assert_eq!(n.host.python_value_now(&id), value);
    assert_eq!(n.host.sh(&id, "cat /home/user/file.txt"), "kept on disk\n");
    // Killed without the store: nothing to delete there.
    n.host.rt(&["kill", &id]);
}
