//! Languages: which matrix keys each one expands, which of those a builder
//! must provide, the names Travis accepts for languages and architectures,
//! and the variables Travis exports for a job's values.
//!
//! - `defaults`: the default `install` and `script` commands when a
//!   `.travis.yml` gives none;
//! - `repo`: what those defaults know of the repository ([`RepoFacts`]).

mod defaults;
mod repo;

pub use defaults::{defaults, JobFacts, PYTHON_NO_SCRIPT};
pub use repo::{RepoFacts, CONSULTED_FILES};

/// A matrix expansion key, in the order Travis multiplies them: the
/// product's first key varies slowest (travis-yml `Matrix#expand`, keys
/// sorted by the schema's order with `env` last; `os` before `arch` per its
/// "arch on osx" spec).
pub struct Axis {
    pub key: &'static str,
    /// A builder must advertise `key=value` to run the job (a runtime
    /// version); false for keys that only select files or tasks.
    pub capability: bool,
    /// The variable Travis exports with the job's value (Travis docs:
    /// Environment Variables, "Default Environment Variables").
    pub env: Option<&'static str>,
}

const fn axis(key: &'static str, capability: bool, env: Option<&'static str>) -> Axis {
    Axis {
        key,
        capability,
        env,
    }
}

/// Every matrix key but `env`, which is always last and handled apart.
pub const AXES: &[Axis] = &[
    axis("os", true, Some("TRAVIS_OS_NAME")),
    axis("arch", true, None),
    axis("dist", false, None),
    axis("compiler", true, None),
    axis("rvm", true, Some("TRAVIS_RUBY_VERSION")),
    axis("gemfile", false, None),
    axis("lein", true, None),
    axis("scala", true, Some("TRAVIS_SCALA_VERSION")),
    axis("jdk", true, Some("TRAVIS_JDK_VERSION")),
    axis("elixir", true, None),
    axis("otp_release", true, Some("TRAVIS_OTP_RELEASE")),
    axis("php", true, Some("TRAVIS_PHP_VERSION")),
    axis("node_js", true, Some("TRAVIS_NODE_VERSION")),
    axis("python", true, Some("TRAVIS_PYTHON_VERSION")),
    axis("perl", true, Some("TRAVIS_PERL_VERSION")),
    axis("perl6", true, None),
    axis("go", true, Some("TRAVIS_GO_VERSION")),
    axis("ghc", true, None),
    axis("rust", true, Some("TRAVIS_RUST_VERSION")),
    axis("crystal", true, None),
    axis("d", true, None),
    axis("dart", true, Some("TRAVIS_DART_VERSION")),
    axis("dart_task", false, None),
    axis("julia", true, Some("TRAVIS_JULIA_VERSION")),
    axis("r", true, Some("TRAVIS_R_VERSION")),
    axis("mono", true, None),
    axis("dotnet", true, None),
    axis("solution", false, None),
    axis("xcode_sdk", true, Some("TRAVIS_XCODE_SDK")),
    axis("xcode_scheme", false, Some("TRAVIS_XCODE_SCHEME")),
    axis("haxe", true, Some("TRAVIS_HAXE_VERSION")),
    axis("smalltalk", true, None),
    axis("osx_image", true, Some("TRAVIS_OSX_IMAGE")),
];

pub fn axis_index(key: &str) -> Option<usize> {
    AXES.iter().position(|a| a.key == key)
}

pub fn axis_info(key: &str) -> Option<&'static Axis> {
    AXES.iter().find(|a| a.key == key)
}

/// Other spellings of matrix keys: travis-yml's schema declares `ruby` an
/// alias of `rvm`.
pub fn canonical_axis(key: &str) -> Option<&'static str> {
    let key = if key == "ruby" { "rvm" } else { key };
    AXES.iter().find(|a| a.key == key).map(|a| a.key)
}

/// Keys every language expands (Travis docs: Build Matrix; Multiple
/// Operating Systems; Multiple CPU architectures).
const UNIVERSAL: &[&str] = &["os", "arch", "dist", "osx_image"];

/// Languages kha knows, with the matrix keys each expands. Sources: the
/// "Matrix keys" row of each language's page in the Travis docs, and
/// travis-core's `EXPANSION_KEYS_LANGUAGE` for the older languages.
const LANGS: &[(&str, &[&str])] = &[
    ("android", &["jdk"]),
    ("bash", &[]),
    ("c", &["compiler"]),
    ("clojure", &["lein", "jdk"]),
    ("cpp", &["compiler"]),
    ("crystal", &["crystal"]),
    ("csharp", &["mono", "dotnet", "solution"]),
    ("d", &["d"]),
    ("dart", &["dart", "dart_task"]),
    ("elixir", &["elixir", "otp_release"]),
    ("elm", &[]),
    ("erlang", &["otp_release"]),
    ("generic", &[]),
    ("go", &["go"]),
    ("groovy", &["jdk"]),
    ("haskell", &["ghc"]),
    ("haxe", &["haxe"]),
    ("java", &["jdk"]),
    ("julia", &["julia"]),
    ("minimal", &[]),
    ("nix", &[]),
    ("node_js", &["node_js"]),
    (
        "objective-c",
        &["rvm", "gemfile", "xcode_sdk", "xcode_scheme"],
    ),
    ("perl", &["perl"]),
    ("perl6", &["perl6"]),
    ("php", &["php"]),
    ("python", &["python"]),
    ("r", &["r"]),
    ("ruby", &["rvm", "gemfile", "jdk"]),
    ("rust", &["rust"]),
    ("scala", &["scala", "jdk"]),
    ("sh", &[]),
    ("shell", &[]),
    ("smalltalk", &["smalltalk"]),
];

/// Travis's default language when `language` is absent (Travis docs:
/// Minimal and Generic images, "if you do that the default language is set
/// to Ruby"; travis-yml `DEFAULTS`).
pub const DEFAULT_LANGUAGE: &str = "ruby";
/// Travis's default operating system (travis-yml `DEFAULTS`).
pub const DEFAULT_OS: &str = "linux";

/// The canonical name of a language, or None if kha does not know it.
pub fn canonical_language(name: &str) -> Option<&'static str> {
    let lower = name.trim().to_ascii_lowercase();
    let lower = match lower.as_str() {
        "c++" => "cpp",
        "javascript" | "node" | "nodejs" | "node.js" => "node_js",
        "objective_c" | "objc" | "swift" => "objective-c",
        "jvm" => "java",
        other => other,
    };
    LANGS.iter().find(|(l, _)| *l == lower).map(|(l, _)| *l)
}

/// Does `language` expand `key`? Unknown languages expand only the
/// universal keys.
pub fn language_expands(language: &str, key: &str) -> bool {
    if UNIVERSAL.contains(&key) {
        return true;
    }
    LANGS
        .iter()
        .find(|(l, _)| *l == language)
        .is_some_and(|(_, keys)| keys.contains(&key))
}

/// Does a job on `os` use `key`? travis-yml's schema: `arch` is supported
/// on linux only, `osx_image` on osx only.
pub fn os_supports(os: &str, key: &str) -> bool {
    match key {
        "arch" => os == "linux",
        "osx_image" => os == "osx",
        _ => true,
    }
}

/// Travis's name for an architecture, from its spelling in the config
/// (travis-yml's `arch` schema declares `x86_64` an alias of `amd64` and
/// `power`, `ppc`, `ppc64` aliases of `ppc64le`).
pub fn canonical_arch(value: &str) -> String {
    let lower = value.trim().to_ascii_lowercase();
    match lower.as_str() {
        "x86_64" => "amd64".into(),
        "power" | "ppc" | "ppc64" => "ppc64le".into(),
        "aarch64" => "arm64".into(),
        _ => lower,
    }
}

/// The `arch` label a kha builder advertises for a Travis architecture:
/// builders name theirs as Rust's `std::env::consts::ARCH` does.
pub fn builder_arch(travis_arch: &str) -> String {
    match canonical_arch(travis_arch).as_str() {
        "amd64" => "x86_64".into(),
        "arm64" | "arm64-graviton2" => "aarch64".into(),
        "ppc64le" => "powerpc64".into(),
        other => other.into(),
    }
}

/// Variables Travis exports for a job's matrix values (Travis docs:
/// Environment Variables; Building a C Project and Building a C++ Project
/// for `CC`/`CXX`).
pub fn builtin_env(language: &str, values: &[(String, String)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in values {
        if let Some(var) = axis_info(k).and_then(|a| a.env) {
            out.push((var.to_string(), v.clone()));
        }
        match (k.as_str(), language) {
            ("compiler", "c") => {
                out.push(("CC".into(), v.clone()));
                out.push(("CC_FOR_BUILD".into(), v.clone()));
            }
            ("compiler", "cpp") => {
                let (cc, cxx) = match v.as_str() {
                    "gcc" => ("gcc", "g++"),
                    "clang" => ("clang", "clang++"),
                    other => (other, other),
                };
                out.push(("CXX".into(), cxx.into()));
                out.push(("CC".into(), cc.into()));
            }
            // Travis docs: Building a Ruby Project, "$BUNDLE_GEMFILE
            // environment variable".
            ("gemfile", _) => out.push(("BUNDLE_GEMFILE".into(), format!("$PWD/{v}"))),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names() {
        assert_eq!(canonical_arch("X86_64"), "amd64");
        assert_eq!(builder_arch("amd64"), "x86_64");
        assert_eq!(builder_arch("arm64"), "aarch64");
        assert_eq!(builder_arch("s390x"), "s390x");
    }
}
