//! Code that sets environment variables inside a kernel, per language.
//!
//! A run's `env_vars` hold for that run only (E2B's semantics): before the run the
//! service executes, silently, code that remembers each variable's current value and sets
//! the new one; after it, code that puts the remembered values back (or unsets what did
//! not exist). The sandbox's own envs (`crate::envd`) are set the same way, without
//! remembering, whenever they differ from what the kernel was last given.
//!
//! Names must be shell-style identifiers (checked by [`check_names`] before any code is
//! made); values go in as JSON string literals (valid Python and JavaScript literals) or,
//! for Bash, single-quoted. Pure: the code is run by `crate::context`.

use std::collections::BTreeMap;

use crate::language::Family;

/// Refuse names that are not `[A-Za-z_][A-Za-z0-9_]*`.
pub fn check_names<'a>(names: impl IntoIterator<Item = &'a String>) -> Result<(), String> {
    for n in names {
        let mut chars = n.chars();
        let ok = matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
            && chars.all(|c| c == '_' || c.is_ascii_alphanumeric());
        if !ok {
            return Err(format!("invalid environment variable name {n:?} (letters, digits and _ only)"));
        }
    }
    Ok(())
}

/// Whether runs in `family` can take `env_vars`.
pub fn supported(family: Family) -> bool {
    matches!(family, Family::Python | Family::Deno | Family::Bash)
}

fn json_object(vars: &BTreeMap<String, String>) -> String {
    serde_json::to_string(vars).expect("JSON")
}

fn bash_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

/// Remember the current values of `vars`' names, then set `vars`.
pub fn set_for_run(family: Family, vars: &BTreeMap<String, String>) -> Option<String> {
    if vars.is_empty() {
        return None;
    }
    let obj = json_object(vars);
    Some(match family {
        Family::Python => format!(
            "(lambda os, new: (setattr(os, '_stasis_saved_env', {{k: os.environ.get(k) for k in new}}), \
             os.environ.update(new)))(__import__('os'), {obj})"
        ),
        Family::Deno => format!(
            "(() => {{ const saved = {{}}; for (const [k, v] of Object.entries({obj})) \
             {{ saved[k] = Deno.env.get(k) ?? null; Deno.env.set(k, v); }} globalThis.__stasisSavedEnv = saved; }})();"
        ),
        Family::Bash => vars
            .iter()
            .map(|(k, v)| {
                format!(
                    "if [ \"${{{k}+set}}\" = set ]; then __stasis_saved_{k}=\"${k}\"; __stasis_had_{k}=1; \
                     else __stasis_had_{k}=0; fi; export {k}={}",
                    bash_quote(v)
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => return None,
    })
}

/// Put back what [`set_for_run`] remembered for `names`.
pub fn restore_after_run<'a>(family: Family, names: impl IntoIterator<Item = &'a String>) -> Option<String> {
    let names: Vec<&String> = names.into_iter().collect();
    if names.is_empty() {
        return None;
    }
    Some(match family {
        Family::Python => "(lambda os: [os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v) \
             for k, v in os.__dict__.pop('_stasis_saved_env', {}).items()])(__import__('os'))"
            .to_string(),
        Family::Deno => {
            "(() => { for (const [k, v] of Object.entries(globalThis.__stasisSavedEnv ?? {})) \
             { if (v === null) Deno.env.delete(k); else Deno.env.set(k, v); } delete globalThis.__stasisSavedEnv; })();"
                .to_string()
        }
        Family::Bash => names
            .iter()
            .map(|k| {
                format!(
                    "if [ \"${{__stasis_had_{k}:-0}}\" = 1 ]; then export {k}=\"$__stasis_saved_{k}\"; \
                     else unset {k}; fi; unset __stasis_saved_{k} __stasis_had_{k}"
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => return None,
    })
}

/// Set `set` and unset `unset` for good (the sandbox's envs).
pub fn set_globals(family: Family, set: &BTreeMap<String, String>, unset: &[String]) -> Option<String> {
    if set.is_empty() && unset.is_empty() {
        return None;
    }
    let obj = json_object(set);
    let names = serde_json::to_string(unset).expect("JSON");
    Some(match family {
        Family::Python => format!(
            "(lambda os: (os.environ.update({obj}), [os.environ.pop(k, None) for k in {names}]))(__import__('os'))"
        ),
        Family::Deno => format!(
            "(() => {{ for (const [k, v] of Object.entries({obj})) Deno.env.set(k, v); \
             for (const k of {names}) Deno.env.delete(k); }})();"
        ),
        Family::Bash => {
            let mut lines: Vec<String> = set.iter().map(|(k, v)| format!("export {k}={}", bash_quote(v))).collect();
            lines.extend(unset.iter().map(|k| format!("unset {k}")));
            lines.join("\n")
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn names_are_checked() {
        assert!(check_names(&["FOO".to_string(), "_a1".to_string()]).is_ok());
        for bad in ["", "1A", "A-B", "A B", "A;rm", "É"] {
            assert!(check_names(&[bad.to_string()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn python_code_quotes_values_as_json() {
        let code = set_for_run(Family::Python, &vars(&[("FOO", "it's \"x\"\n")])).unwrap();
        assert!(code.contains(r#"{"FOO":"it's \"x\"\n"}"#), "{code}");
        assert!(restore_after_run(Family::Python, &["FOO".to_string()]).unwrap().contains("_stasis_saved_env"));
        assert_eq!(set_for_run(Family::Python, &BTreeMap::new()), None);
    }

    #[test]
    fn bash_code_single_quotes_values() {
        let code = set_for_run(Family::Bash, &vars(&[("FOO", "a'b $HOME")])).unwrap();
        assert!(code.ends_with(r#"export FOO='a'\''b $HOME'"#), "{code}");
        let back = restore_after_run(Family::Bash, &["FOO".to_string()]).unwrap();
        assert!(back.contains("else unset FOO; fi"), "{back}");
        let globals = set_globals(Family::Bash, &vars(&[("A", "1")]), &["B".to_string()]).unwrap();
        assert_eq!(globals, "export A='1'\nunset B");
    }

    #[test]
    fn deno_and_unsupported_families() {
        assert!(set_for_run(Family::Deno, &vars(&[("A", "1")])).unwrap().contains("Deno.env.set(k, v)"));
        assert!(set_globals(Family::Deno, &BTreeMap::new(), &["A".to_string()]).unwrap().contains("Deno.env.delete"));
        assert_eq!(set_for_run(Family::R, &vars(&[("A", "1")])), None);
        assert!(!supported(Family::Java));
    }
}
