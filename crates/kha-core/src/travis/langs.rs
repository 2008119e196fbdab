//! Languages: which matrix keys each one expands, which of those a builder
//! must provide, the variables Travis exports for them, and the default
//! `install` and `script` commands when a `.travis.yml` gives none.
//!
//! The defaults depend on files in the repository ("rebar3 when the project
//! uses it", "make when there is a Makefile"). Pure code cannot look, so the
//! caller passes [`RepoFacts`]: the names at the repository root, which the
//! control node reads from the git tree. When it passes
//! [`RepoFacts::unknown`], the defaults are rendered as the same shell
//! conditionals Travis's own build script generator (travis-build) emits,
//! and the decision is taken on the builder.

use std::collections::BTreeSet;

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

/// What the control node knows of the repository at the built commit: the
/// names of the entries at its root. Only the names in [`CONSULTED_FILES`]
/// matter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoFacts {
    root: Option<BTreeSet<String>>,
}

/// The root entries the language defaults look at.
pub const CONSULTED_FILES: &[&str] = &[
    "rebar.config",
    "Rebar.config",
    "rebar.lock",
    "rebar",
    "rebar3",
    "GNUmakefile",
    "makefile",
    "Makefile",
    "BSDmakefile",
    "requirements.txt",
    "package.json",
    "yarn.lock",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "Gemfile",
    "Gemfile.lock",
];

impl RepoFacts {
    /// Nothing known: defaults become shell conditionals run on the builder.
    pub fn unknown() -> RepoFacts {
        RepoFacts { root: None }
    }

    /// The names of the entries at the repository's root.
    pub fn from_root_files<I, S>(names: I) -> RepoFacts
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        RepoFacts {
            root: Some(names.into_iter().map(|s| s.as_ref().to_string()).collect()),
        }
    }

    pub fn is_known(&self) -> bool {
        self.root.is_some()
    }

    /// Whether the root has `name`; None when nothing is known.
    pub fn has(&self, name: &str) -> Option<bool> {
        self.root.as_ref().map(|r| r.contains(name))
    }
}

/// A condition on the repository's root files.
#[derive(Debug, Clone)]
enum Cond {
    Always,
    File(&'static str),
    Any(Vec<Cond>),
    All(Vec<Cond>),
}

impl Cond {
    fn eval(&self, facts: &RepoFacts) -> bool {
        match self {
            Cond::Always => true,
            Cond::File(f) => facts.has(f).unwrap_or(false),
            Cond::Any(cs) => cs.iter().any(|c| c.eval(facts)),
            Cond::All(cs) => cs.iter().all(|c| c.eval(facts)),
        }
    }

    /// POSIX sh test; file names here are constants, never config text.
    fn render(&self, nested: bool) -> String {
        match self {
            Cond::Always => "true".into(),
            Cond::File(f) => format!("[ -f {f} ]"),
            Cond::Any(cs) | Cond::All(cs) => {
                let op = if matches!(self, Cond::Any(_)) {
                    " || "
                } else {
                    " && "
                };
                let inner: Vec<String> = cs.iter().map(|c| c.render(true)).collect();
                if nested {
                    format!("{{ {}; }}", inner.join(op))
                } else {
                    inner.join(op)
                }
            }
        }
    }
}

/// First matching rule wins; no match means no commands.
struct Rule {
    when: Cond,
    run: Vec<String>,
}

fn rule(when: Cond, run: &[&str]) -> Rule {
    Rule {
        when,
        run: run.iter().map(|s| s.to_string()).collect(),
    }
}

/// Resolves rules against what is known of the repository.
fn resolve(rules: &[Rule], facts: &RepoFacts) -> Vec<String> {
    if facts.is_known()
        || rules
            .first()
            .is_some_and(|r| matches!(r.when, Cond::Always))
    {
        return rules
            .iter()
            .find(|r| r.when.eval(facts))
            .map(|r| r.run.clone())
            .unwrap_or_default();
    }
    // Unknown: one `if … elif … else … fi` command, as travis-build emits.
    let mut out = String::new();
    let mut closed = false;
    for (i, r) in rules.iter().enumerate() {
        let body = if r.run.is_empty() {
            "true".to_string()
        } else {
            r.run.join("; ")
        };
        match (&r.when, i) {
            (Cond::Always, _) => {
                out.push_str(&format!("else {body}; fi"));
                closed = true;
                break;
            }
            (c, 0) => out.push_str(&format!("if {}; then {body}; ", c.render(false))),
            (c, _) => out.push_str(&format!("elif {}; then {body}; ", c.render(false))),
        }
    }
    if out.is_empty() {
        return vec![];
    }
    if !closed {
        out.push_str("fi");
    }
    vec![out]
}

/// What a job's defaults depend on besides the repository.
pub struct JobFacts<'a> {
    pub language: &'a str,
    /// The job's value of a matrix key.
    pub axis: &'a dyn Fn(&str) -> Option<String>,
    /// `gobuild_args` (Go) from the config, if given.
    pub gobuild_args: Option<&'a str>,
    /// `bundler_args` (Ruby) from the config, if given.
    pub bundler_args: Option<&'a str>,
}

/// Default commands for one language.
pub struct Defaults {
    pub install: Vec<String>,
    pub script: Vec<String>,
    /// False when kha knows no default for this language.
    pub known: bool,
}

/// Python has no default script: Travis prints this and fails the job
/// (Travis docs: Building a Python Project, "Default Build Script").
pub const PYTHON_NO_SCRIPT: &str =
    "echo 'Please override the script: key in your .travis.yml to run tests.'; false";

/// The default `install` and `script` of `job.language`.
pub fn defaults(job: &JobFacts<'_>, facts: &RepoFacts) -> Defaults {
    let (install, script, known) = match job.language {
        // Travis docs: Building an Erlang project, "Default Test Script" and
        // "Dependency Management" (rebar3 when the project has
        // rebar.config, else rebar; `make test` without rebar.config), with
        // travis-build's preference for a `./rebar` shipped in the repo.
        // kha takes rebar3 when the project shows it uses it: a rebar.lock
        // or a `rebar3` script at the root.
        "erlang" => {
            let cfg = || Cond::Any(vec![Cond::File("rebar.config"), Cond::File("Rebar.config")]);
            let with = |c: Cond| Cond::All(vec![cfg(), c]);
            (
                vec![
                    rule(with(Cond::File("rebar3")), &["./rebar3 get-deps"]),
                    rule(with(Cond::File("rebar.lock")), &["rebar3 get-deps"]),
                    rule(with(Cond::File("rebar")), &["./rebar get-deps"]),
                    rule(cfg(), &["rebar get-deps"]),
                ],
                vec![
                    rule(with(Cond::File("rebar3")), &["./rebar3 eunit"]),
                    rule(with(Cond::File("rebar.lock")), &["rebar3 eunit"]),
                    rule(
                        with(Cond::File("rebar")),
                        &["./rebar compile && ./rebar skip_deps=true eunit"],
                    ),
                    rule(cfg(), &["rebar compile && rebar skip_deps=true eunit"]),
                    rule(Cond::Always, &["make test"]),
                ],
                true,
            )
        }
        // Travis docs: Building a Rust Project (at-a-glance table).
        "rust" => (
            vec![rule(Cond::Always, &["cargo build --verbose"])],
            vec![rule(
                Cond::Always,
                &["cargo build --verbose", "cargo test --verbose"],
            )],
            true,
        ),
        // Travis docs: Building a Go Project, "Dependency Management" and
        // "Default Build Script"; `gobuild_args` defaults to `-v`.
        "go" => {
            let make = || {
                Cond::Any(vec![
                    Cond::File("GNUmakefile"),
                    Cond::File("makefile"),
                    Cond::File("Makefile"),
                    Cond::File("BSDmakefile"),
                ])
            };
            let old_go = (job.axis)("go").is_some_and(|v| go_older_than_1_2(&v));
            let get = if old_go {
                "go get ./..."
            } else {
                "go get -t ./..."
            };
            let test = format!("go test {} ./...", job.gobuild_args.unwrap_or("-v"));
            (
                vec![rule(make(), &["true"]), rule(Cond::Always, &[get])],
                vec![rule(make(), &["make"]), rule(Cond::Always, &[&test])],
                true,
            )
        }
        // Travis docs: Building a Python Project, "pip" and "Default Build
        // Script".
        "python" => (
            vec![rule(
                Cond::File("requirements.txt"),
                &["pip install -r requirements.txt"],
            )],
            vec![rule(Cond::Always, &[PYTHON_NO_SCRIPT])],
            true,
        ),
        // Travis docs: Building a JavaScript and Node.js project: yarn when
        // yarn.lock exists, `npm ci` with a lock file, else `npm install`;
        // `yarn test` or `npm test`.
        "node_js" => {
            let pkg = || Cond::File("package.json");
            (
                vec![
                    rule(Cond::All(vec![pkg(), Cond::File("yarn.lock")]), &["yarn"]),
                    rule(
                        Cond::All(vec![
                            pkg(),
                            Cond::Any(vec![
                                Cond::File("package-lock.json"),
                                Cond::File("npm-shrinkwrap.json"),
                            ]),
                        ]),
                        &["npm ci"],
                    ),
                    rule(pkg(), &["npm install"]),
                ],
                vec![
                    rule(Cond::File("yarn.lock"), &["yarn test"]),
                    rule(Cond::Always, &["npm test"]),
                ],
                true,
            )
        }
        // Travis docs: Building a Ruby Project: `bundle install
        // --jobs=3 --retry=3` when there is a Gemfile (or one is named by
        // `gemfile`, exported as BUNDLE_GEMFILE), `--deployment` with a
        // Gemfile.lock, `bundler_args` passed on; script `rake`.
        "ruby" => {
            let extra = job
                .bundler_args
                .map(|a| format!(" {a}"))
                .unwrap_or_default();
            let base = format!("bundle install --jobs=3 --retry=3{extra}");
            let deploy = format!("bundle install --jobs=3 --retry=3 --deployment{extra}");
            let install = if (job.axis)("gemfile").is_some() {
                vec![rule(Cond::Always, &[&base])]
            } else {
                vec![
                    rule(
                        Cond::All(vec![Cond::File("Gemfile"), Cond::File("Gemfile.lock")]),
                        &[&deploy],
                    ),
                    rule(Cond::File("Gemfile"), &[&base]),
                ]
            };
            (install, vec![rule(Cond::Always, &["rake"])], true)
        }
        // Travis docs: Building a C Project / Building a C++ Project: no
        // install, `./configure && make && make test`.
        "c" | "cpp" => (
            vec![],
            vec![rule(Cond::Always, &["./configure && make && make test"])],
            true,
        ),
        // Travis docs: Minimal and Generic images: "there are no default
        // install or script commands".
        "generic" | "minimal" | "shell" | "sh" | "bash" => (vec![], vec![], true),
        _ => (vec![], vec![], false),
    };
    Defaults {
        install: resolve(&install, facts),
        script: resolve(&script, facts),
        known,
    }
}

/// Go before 1.2 has no `go get -t` (Travis docs: Building a Go Project).
fn go_older_than_1_2(version: &str) -> bool {
    let v = version.trim().trim_start_matches("go");
    let mut parts = v.split('.');
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    matches!((major, minor), (Some(1), Some(m)) if m < 2) || matches!((major, minor), (Some(0), _))
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

    fn facts(names: &[&str]) -> RepoFacts {
        RepoFacts::from_root_files(names.iter().copied())
    }

    fn erlang(f: &RepoFacts) -> Defaults {
        defaults(
            &JobFacts {
                language: "erlang",
                axis: &|_| None,
                gobuild_args: None,
                bundler_args: None,
            },
            f,
        )
    }

    #[test]
    fn erlang_defaults_follow_the_repo() {
        type Case = (
            &'static [&'static str],
            &'static [&'static str],
            &'static [&'static str],
        );
        let table: &[Case] = &[
            (&[], &[], &["make test"]),
            (
                &["rebar.config"],
                &["rebar get-deps"],
                &["rebar compile && rebar skip_deps=true eunit"],
            ),
            (
                &["Rebar.config", "rebar"],
                &["./rebar get-deps"],
                &["./rebar compile && ./rebar skip_deps=true eunit"],
            ),
            (
                &["rebar.config", "rebar.lock"],
                &["rebar3 get-deps"],
                &["rebar3 eunit"],
            ),
            (
                &["rebar.config", "rebar3"],
                &["./rebar3 get-deps"],
                &["./rebar3 eunit"],
            ),
        ];
        for (files, install, script) in table {
            let d = erlang(&facts(files));
            assert_eq!(d.install, *install, "{files:?}");
            assert_eq!(d.script, *script, "{files:?}");
        }
    }

    #[test]
    fn unknown_repo_gives_shell_conditionals() {
        let d = erlang(&RepoFacts::unknown());
        assert_eq!(d.install.len(), 1);
        assert!(d.install[0].starts_with("if { [ -f rebar.config ] || [ -f Rebar.config ]; } && [ -f rebar3 ]; then ./rebar3 get-deps; elif"), "{}", d.install[0]);
        assert!(
            d.install[0].ends_with("then rebar get-deps; fi"),
            "{}",
            d.install[0]
        );
        assert!(
            d.script[0].ends_with("else make test; fi"),
            "{}",
            d.script[0]
        );
    }

    #[test]
    fn go_defaults() {
        let go = |v: Option<&str>, files: &[&str]| {
            let v = v.map(str::to_string);
            let axis = move |k: &str| if k == "go" { v.clone() } else { None };
            defaults(
                &JobFacts {
                    language: "go",
                    axis: &axis,
                    gobuild_args: None,
                    bundler_args: None,
                },
                &facts(files),
            )
        };
        assert_eq!(go(Some("1.15.x"), &[]).install, ["go get -t ./..."]);
        assert_eq!(go(Some("1.1"), &[]).install, ["go get ./..."]);
        assert_eq!(go(None, &["Makefile"]).install, ["true"]);
        assert_eq!(go(None, &["Makefile"]).script, ["make"]);
        assert_eq!(go(Some("tip"), &[]).script, ["go test -v ./..."]);
    }

    #[test]
    fn arch_names() {
        assert_eq!(canonical_arch("X86_64"), "amd64");
        assert_eq!(builder_arch("amd64"), "x86_64");
        assert_eq!(builder_arch("arm64"), "aarch64");
        assert_eq!(builder_arch("s390x"), "s390x");
    }
}
