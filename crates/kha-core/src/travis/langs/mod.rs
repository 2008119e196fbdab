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

/// A matrix expansion key. [`AXES`] lists them in the order Travis
/// multiplies them.
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

/// Every matrix key but `env`, which is always last and handled apart, in
/// the order Travis multiplies them: the product's first key varies
/// slowest, whatever the file's order. travis-yml's `Matrix#sort` orders a
/// config's keys by `Yml.expand_keys + [:env]`, the root's `expand` list
/// in its schema (schema.json: `os`, `arch`, `compiler`, `osx_image`, then
/// the languages' matrix keys in the schema's language order, e.g.
/// objective-c's `rvm`, `gemfile`, `xcode_scheme`, `xcode_sdk`), so `jdk`
/// comes before `rvm` and `scala`, and `dotnet` before `mono`. `dist` and
/// `lein` are kha's additions (travis-yml does not expand them); they sit
/// next to the keys they go with.
pub const AXES: &[Axis] = &[
    axis("os", true, Some("TRAVIS_OS_NAME")),
    axis("arch", true, None),
    axis("dist", false, None),
    axis("compiler", true, None),
    axis("osx_image", true, Some("TRAVIS_OSX_IMAGE")),
    axis("lein", true, None),
    axis("jdk", true, Some("TRAVIS_JDK_VERSION")),
    axis("crystal", true, None),
    axis("dotnet", true, None),
    axis("mono", true, None),
    axis("solution", false, None),
    axis("d", true, None),
    axis("dart", true, Some("TRAVIS_DART_VERSION")),
    axis("dart_task", false, None),
    axis("elixir", true, None),
    axis("otp_release", true, Some("TRAVIS_OTP_RELEASE")),
    axis("node_js", true, Some("TRAVIS_NODE_VERSION")),
    axis("go", true, Some("TRAVIS_GO_VERSION")),
    axis("php", true, Some("TRAVIS_PHP_VERSION")),
    axis("ghc", true, None),
    axis("haxe", true, Some("TRAVIS_HAXE_VERSION")),
    axis("julia", true, Some("TRAVIS_JULIA_VERSION")),
    axis("perl", true, Some("TRAVIS_PERL_VERSION")),
    axis("perl6", true, None),
    axis("python", true, Some("TRAVIS_PYTHON_VERSION")),
    axis("r", true, Some("TRAVIS_R_VERSION")),
    axis("rvm", true, Some("TRAVIS_RUBY_VERSION")),
    axis("gemfile", false, None),
    axis("xcode_scheme", false, Some("TRAVIS_XCODE_SCHEME")),
    axis("xcode_sdk", true, Some("TRAVIS_XCODE_SDK")),
    axis("rust", true, Some("TRAVIS_RUST_VERSION")),
    axis("scala", true, Some("TRAVIS_SCALA_VERSION")),
    axis("smalltalk", true, None),
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

    /// Each job's matrix values, `k=v` joined.
    fn order(yaml: &str) -> Vec<String> {
        let cfg = crate::travis::parse(yaml).unwrap_or_else(|e| panic!("{e}"));
        crate::travis::expand(&cfg, 100)
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|j| {
                let kv: Vec<String> = j.matrix.iter().map(|(k, v)| format!("{k}={v}")).collect();
                kv.join(" ")
            })
            .collect()
    }

    /// travis-yml's schema order, whatever the file's order: the first
    /// key of that order varies slowest.
    #[test]
    fn axes_multiply_in_travis_yml_schema_order() {
        let cases: &[(&str, &[&str])] = &[
            (
                "language: objective-c\nxcode_sdk: [s1, s2]\nrvm: [r1, r2]\n",
                &[
                    "rvm=r1 xcode_sdk=s1",
                    "rvm=r1 xcode_sdk=s2",
                    "rvm=r2 xcode_sdk=s1",
                    "rvm=r2 xcode_sdk=s2",
                ],
            ),
            (
                "language: objective-c\nos: osx\nxcode_sdk: [s1, s2]\nosx_image: [i1, i2]\n",
                &[
                    "os=osx osx_image=i1 xcode_sdk=s1",
                    "os=osx osx_image=i1 xcode_sdk=s2",
                    "os=osx osx_image=i2 xcode_sdk=s1",
                    "os=osx osx_image=i2 xcode_sdk=s2",
                ],
            ),
            (
                "language: objective-c\nxcode_sdk: [s1, s2]\nxcode_scheme: [c1, c2]\n",
                &[
                    "xcode_scheme=c1 xcode_sdk=s1",
                    "xcode_scheme=c1 xcode_sdk=s2",
                    "xcode_scheme=c2 xcode_sdk=s1",
                    "xcode_scheme=c2 xcode_sdk=s2",
                ],
            ),
            (
                "language: ruby\nrvm: [r1, r2]\njdk: [j1, j2]\n",
                &[
                    "jdk=j1 rvm=r1",
                    "jdk=j1 rvm=r2",
                    "jdk=j2 rvm=r1",
                    "jdk=j2 rvm=r2",
                ],
            ),
            (
                "language: scala\nscala: [s1, s2]\njdk: [j1, j2]\n",
                &[
                    "jdk=j1 scala=s1",
                    "jdk=j1 scala=s2",
                    "jdk=j2 scala=s1",
                    "jdk=j2 scala=s2",
                ],
            ),
            (
                "language: csharp\nmono: [m1, m2]\ndotnet: [d1, d2]\n",
                &[
                    "dotnet=d1 mono=m1",
                    "dotnet=d1 mono=m2",
                    "dotnet=d2 mono=m1",
                    "dotnet=d2 mono=m2",
                ],
            ),
            (
                "language: elixir\notp_release: [o1, o2]\nelixir: [e1, e2]\n",
                &[
                    "elixir=e1 otp_release=o1",
                    "elixir=e1 otp_release=o2",
                    "elixir=e2 otp_release=o1",
                    "elixir=e2 otp_release=o2",
                ],
            ),
            // `env` last, `os` first.
            (
                "language: python\nenv: [A=1, A=2]\npython: [p1]\nos: [linux, osx]\n",
                &[
                    "os=linux python=p1 env=A=1",
                    "os=linux python=p1 env=A=2",
                    "os=osx python=p1 env=A=1",
                    "os=osx python=p1 env=A=2",
                ],
            ),
        ];
        for (yaml, want) in cases {
            assert_eq!(order(yaml), *want, "{yaml}");
        }
    }

    #[test]
    fn arch_names() {
        assert_eq!(canonical_arch("X86_64"), "amd64");
        assert_eq!(builder_arch("amd64"), "x86_64");
        assert_eq!(builder_arch("arm64"), "aarch64");
        assert_eq!(builder_arch("s390x"), "s390x");
    }
}
