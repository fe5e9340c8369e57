//! A Dockerfile read as a template build: one stage, `FROM` (a Stasis template or an
//! image), `RUN`, `COPY`/`ADD` (local files, `--chown`), `ENV`, `ARG` (as ENV, its
//! default), `WORKDIR`, `USER`, `CMD`/`ENTRYPOINT` (the start command); `EXPOSE`, `LABEL`,
//! `VOLUME` and `HEALTHCHECK` are ignored, as E2B's SDKs do. The result is the same
//! template the SDKs send (`{type, args}` steps), so the server has one build path.

use anyhow::{bail, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instr {
    From(String),
    Run(String),
    Copy { srcs: Vec<String>, dest: String, chown: Option<String> },
    Env(Vec<(String, String)>),
    Workdir(String),
    User(String),
    Start(String),
}

/// Parses a Dockerfile's text.
pub fn parse(text: &str) -> Result<Vec<Instr>> {
    let mut out = Vec::new();
    for (line_no, line) in logical_lines(text) {
        let (kw, rest) = line.split_once(char::is_whitespace).unwrap_or((line.as_str(), ""));
        let rest = rest.trim();
        let at = |e: String| anyhow::anyhow!("Dockerfile line {line_no}: {e}");
        let instr = match kw.to_ascii_uppercase().as_str() {
            "FROM" => {
                let image = rest.split_whitespace().next().ok_or_else(|| at("FROM needs an image".into()))?;
                if out.iter().any(|i| matches!(i, Instr::From(_))) {
                    return Err(at("multi-stage Dockerfiles are not supported".into()));
                }
                Instr::From(image.to_string())
            }
            "RUN" => Instr::Run(exec_or_shell(rest)),
            "COPY" | "ADD" => {
                let mut words: Vec<String> = shell_words(rest);
                let mut chown = None;
                words.retain(|w| match w.strip_prefix("--chown=") {
                    Some(u) => {
                        chown = Some(u.to_string());
                        false
                    }
                    None => !w.starts_with("--"),
                });
                if words.len() < 2 {
                    return Err(at(format!("{kw} needs a source and a destination")));
                }
                let dest = words.pop().expect("two or more");
                Instr::Copy { srcs: words, dest, chown }
            }
            "ENV" | "ARG" => {
                let words = shell_words(rest);
                let pairs: Vec<(String, String)> = if words.iter().all(|w| w.contains('=')) {
                    words.iter().filter_map(|w| w.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect()
                } else if kw.eq_ignore_ascii_case("ENV") && words.len() >= 2 {
                    vec![(words[0].clone(), words[1..].join(" "))]
                } else {
                    Vec::new() // ARG without a default: nothing to set
                };
                if pairs.is_empty() {
                    continue;
                }
                Instr::Env(pairs)
            }
            "WORKDIR" => Instr::Workdir(rest.to_string()),
            "USER" => Instr::User(rest.to_string()),
            "CMD" | "ENTRYPOINT" => Instr::Start(exec_or_shell(rest)),
            "EXPOSE" | "LABEL" | "VOLUME" | "HEALTHCHECK" | "MAINTAINER" | "STOPSIGNAL" | "SHELL" | "ONBUILD" => {
                continue
            }
            other => return Err(at(format!("unknown instruction {other}"))),
        };
        out.push(instr);
    }
    if !matches!(out.first(), Some(Instr::From(_))) {
        bail!("a Dockerfile must start with FROM");
    }
    Ok(out)
}

/// Lines joined over `\` continuations, without comments and blanks, with their number.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if cur.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if cur.is_empty() {
            start = i + 1;
        }
        if line.starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(line);
                out.push((start, std::mem::take(&mut cur)));
            }
        }
    }
    if !cur.trim().is_empty() {
        out.push((start, cur));
    }
    out
}

/// `["a", "b"]` (exec form) as a shell line, or the shell form as it is.
fn exec_or_shell(rest: &str) -> String {
    match serde_json::from_str::<Vec<String>>(rest) {
        Ok(argv) => argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "),
        Err(_) => rest.to_string(),
    }
}

fn quote(a: &str) -> String {
    if !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b)) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

/// Words split on blanks, with double or single quotes grouping.
fn shell_words(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut q, mut any) = (Vec::new(), String::new(), None::<char>, false);
    for c in s.chars() {
        match (q, c) {
            (Some(open), c) if c == open => q = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                q = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_instructions_a_template_uses() {
        let text = r#"
# a comment
FROM localhost:5000/app:1 AS build
ENV A=1 B="two words"
ENV C 3
ARG NOPE
RUN apt-get update && \
    echo hi
COPY --chown=user:user src/ app.txt /app/
WORKDIR /app
USER user
EXPOSE 8000
CMD ["python3", "-m", "http.server", "8000"]
"#;
        let got = parse(text).unwrap();
        assert_eq!(
            got,
            vec![
                Instr::From("localhost:5000/app:1".into()),
                Instr::Env(vec![("A".into(), "1".into()), ("B".into(), "two words".into())]),
                Instr::Env(vec![("C".into(), "3".into())]),
                Instr::Run("apt-get update &&  echo hi".into()),
                Instr::Copy {
                    srcs: vec!["src/".into(), "app.txt".into()],
                    dest: "/app/".into(),
                    chown: Some("user:user".into())
                },
                Instr::Workdir("/app".into()),
                Instr::User("user".into()),
                Instr::Start("python3 -m http.server 8000".into()),
            ]
        );
    }

    #[test]
    fn refuses_what_it_cannot_build() {
        assert!(parse("RUN true").is_err());
        assert!(parse("FROM a\nFROM b").is_err());
        assert!(parse("FROM a\nFROBNICATE x").unwrap_err().to_string().contains("line 2"));
        assert!(parse("FROM a\nCOPY onlyone").is_err());
    }
}
