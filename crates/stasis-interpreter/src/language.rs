//! Language names as the SDKs send them, and the kernel that runs each.
//!
//! The SDKs send `language` as the user typed it (`python`, `js`, `javascript`, `ts`,
//! `typescript`, `bash`, `r`, `java`, ...). As E2B's server does, names are lower-cased
//! and `js`/`ts` expanded; no language means Python. JavaScript and TypeScript both run on
//! Deno (kernelspecs `javascript` and `typescript`), each with its own default context.
//! Any other name runs the kernelspec of that name if the sandbox has one (so a template
//! with an `r` kernelspec gets R), and is refused with the list of kernels otherwise.

use std::fmt;
use std::str::FromStr;

/// A normalized language name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Language(String);

/// How code of a language sets and restores environment variables and changes directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Python,
    /// JavaScript or TypeScript on Deno.
    Deno,
    Bash,
    R,
    Java,
    /// A kernel we know nothing about: no env or cwd code.
    Other,
}

impl Language {
    pub const PYTHON: &'static str = "python";

    pub fn python() -> Self {
        Language(Self::PYTHON.into())
    }

    /// Normalize what an SDK sent (`None` or empty: Python).
    pub fn normalize(name: Option<&str>) -> Self {
        let n = name.map(|s| s.trim().to_ascii_lowercase()).unwrap_or_default();
        Language(match n.as_str() {
            "" | "python3" | "py" => Self::PYTHON.into(),
            "js" | "deno" => "javascript".into(),
            "ts" => "typescript".into(),
            "sh" => "bash".into(),
            _ => n,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The kernelspec that runs this language.
    pub fn kernel_name(&self) -> &str {
        match self.0.as_str() {
            "python" => "python3",
            other => other,
        }
    }

    pub fn family(&self) -> Family {
        match self.0.as_str() {
            "python" => Family::Python,
            "javascript" | "typescript" => Family::Deno,
            "bash" => Family::Bash,
            "r" => Family::R,
            "java" => Family::Java,
            _ => Family::Other,
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Language {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Language::normalize(Some(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_names_normalize() {
        assert_eq!(Language::normalize(None).as_str(), "python");
        assert_eq!(Language::normalize(Some("")).as_str(), "python");
        assert_eq!(Language::normalize(Some(" Python ")).kernel_name(), "python3");
        assert_eq!(Language::normalize(Some("js")).as_str(), "javascript");
        assert_eq!(Language::normalize(Some("TS")).as_str(), "typescript");
        assert_eq!(Language::normalize(Some("typescript")).family(), Family::Deno);
        assert_eq!(Language::normalize(Some("r")).kernel_name(), "r");
        assert_eq!(Language::normalize(Some("bash")).family(), Family::Bash);
    }
}
