//! The default `install` and `script` commands of each language, when a
//! `.travis.yml` gives none, as rules on the repository's root files.

use super::repo::{resolve, rule, Cond, RepoFacts};

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
}
