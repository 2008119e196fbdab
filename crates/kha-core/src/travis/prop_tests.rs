//! Property tests: on any input, parsing, expansion and linting never panic
//! and expansion never exceeds its bound. Configs are generated from
//! Travis's own vocabulary so that they reach deep into expansion; raw
//! strings cover the parser. `PROPTEST_CASES=100000 cargo test -p kha-core
//! prop_tests` makes a long run.

use super::*;
use proptest::prelude::*;

const KEYS: &[&str] = &[
    "language",
    "os",
    "arch",
    "dist",
    "compiler",
    "rvm",
    "ruby",
    "gemfile",
    "jdk",
    "python",
    "node_js",
    "otp_release",
    "rust",
    "go",
    "php",
    "env",
    "global",
    "jobs",
    "matrix",
    "include",
    "exclude",
    "allow_failures",
    "fast_finish",
    "stages",
    "stage",
    "name",
    "script",
    "install",
    "before_install",
    "after_script",
    "branches",
    "only",
    "except",
    "notifications",
    "email",
    "irc",
    "webhooks",
    "jabber",
    "on_success",
    "on_failure",
    "recipients",
    "git",
    "depth",
    "submodules",
    "secure",
    "if",
    "services",
    "deploy",
    "<<",
    "_x",
];

const WORDS: &[&str] = &[
    "erlang",
    "rust",
    "python",
    "ruby",
    "node_js",
    "go",
    "c",
    "cpp",
    "shell",
    "generic",
    "java",
    "linux",
    "osx",
    "windows",
    "amd64",
    "arm64",
    "x86_64",
    "trusty",
    "xenial",
    "gcc",
    "clang",
    "stable",
    "nightly",
    "3.8",
    "3.10",
    "26.0",
    "R16B03-1",
    "1.x",
    "tip",
    "A=1",
    "A=2 B=3",
    "B=\"x y\"",
    "TOXENV=py",
    "test",
    "build",
    "master",
    "/^v\\d+/",
    "/(/",
    "true",
    "false",
    "skip",
    "always",
    "never",
    "change",
    "~",
    "",
    "make test",
    "echo a: b",
    "gh-pages",
    "50",
];

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(WORDS).prop_map(str::to_string),
        "[a-zA-Z0-9_.=/ -]{0,12}",
    ]
}

/// Renders a YAML value in flow style; strings are double-quoted.
fn value() -> impl Strategy<Value = String> {
    let leaf = scalar().prop_map(|s| format!("{s:?}"));
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                let body: Vec<String> = kv.iter().map(|(k, v)| format!("{k:?}: {v}")).collect();
                format!("{{{}}}", body.join(", "))
            }),
        ]
    })
}

/// A whole `.travis.yml`: root keys from the vocabulary, with an anchor
/// and aliases now and then.
fn config_text() -> impl Strategy<Value = String> {
    (
        prop::collection::vec((prop::sample::select(KEYS), value()), 0..10),
        any::<bool>(),
    )
        .prop_map(|(entries, anchors)| {
            let mut s = String::new();
            if anchors {
                s.push_str("_a: &a {script: [x], env: A=1}\n_b: &b [linux, osx]\n");
            }
            for (k, v) in entries {
                let v = if anchors && v.len() % 3 == 0 {
                    "*b".to_string()
                } else {
                    v
                };
                s.push_str(&format!("{k:?}: {v}\n"));
            }
            s
        })
}

const LANGS: &[&str] = &[
    "erlang", "rust", "python", "ruby", "go", "c", "shell", "node_js",
];
const AXIS_KEYS: &[&str] = &[
    "os",
    "arch",
    "dist",
    "compiler",
    "otp_release",
    "rust",
    "python",
    "rvm",
    "gemfile",
    "go",
    "node_js",
];
const VALUES: &[&str] = &["1", "2", "3", "linux", "osx", "amd64", "arm64", "gcc"];
const ENVS: &[&str] = &["A=1", "A=2", "A=1 B=2", "B=\"x y\""];

/// A `key: value` mapping of matrix keys, env, name and stage, from small
/// value sets so that includes, excludes and allowed failures do match.
fn entry() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            (
                prop::sample::select(AXIS_KEYS),
                prop::sample::select(VALUES)
            )
                .prop_map(|(k, v)| (k, format!("{v:?}"))),
            prop::sample::select(ENVS).prop_map(|e| ("env", format!("{e:?}"))),
            prop::sample::select(&["a", "b"][..]).prop_map(|n| ("name", n.to_string())),
            prop::sample::select(&["test", "build"][..]).prop_map(|s| ("stage", s.to_string())),
            prop::sample::select(LANGS).prop_map(|l| ("language", l.to_string())),
        ],
        0..4,
    )
    .prop_map(|kv| {
        let kv: std::collections::BTreeMap<_, _> = kv.into_iter().collect();
        let body: Vec<String> = kv.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!("{{{}}}", body.join(", "))
    })
}

/// A well-formed config exercising every expansion rule.
fn structured_config() -> impl Strategy<Value = String> {
    (
        prop::option::of(prop::sample::select(LANGS)),
        prop::collection::vec(
            (
                prop::sample::select(AXIS_KEYS),
                prop::collection::vec(prop::sample::select(VALUES), 0..5),
            ),
            0..4,
        ),
        prop::collection::vec(prop::sample::select(ENVS), 0..5),
        prop::collection::vec(prop::sample::select(ENVS), 0..2),
        prop::collection::vec(entry(), 0..4),
        prop::collection::vec(entry(), 0..3),
        prop::collection::vec(entry(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(lang, axes, env, global, include, exclude, allow, stages)| {
            let mut s = String::new();
            if let Some(l) = lang {
                s.push_str(&format!("language: {l}\n"));
            }
            // One line per key: a key given twice is an error for
            // serde_yaml, the parser of record.
            let axes: std::collections::BTreeMap<_, _> = axes.into_iter().collect();
            for (k, vs) in axes {
                let vs: Vec<String> = vs.iter().map(|v| format!("{v:?}")).collect();
                s.push_str(&format!("{k}: [{}]\n", vs.join(", ")));
            }
            let q = |v: &[&str]| v.iter().map(|e| format!("{e:?}")).collect::<Vec<_>>().join(", ");
            s.push_str(&format!("env:\n  jobs: [{}]\n  global: [{}]\n", q(&env), q(&global)));
            if stages {
                s.push_str("stages: [test, build]\n");
            }
            s.push_str(&format!(
                "jobs:\n  fast_finish: true\n  include: [{}]\n  exclude: [{}]\n  allow_failures: [{}]\n",
                include.join(", "),
                exclude.join(", "),
                allow.join(", ")
            ));
            s
        })
}

fn check_expansion(text: &str, max_jobs: usize) {
    let Ok(cfg) = parse(text) else {
        return;
    };
    let opts = ExpandOptions {
        max_jobs,
        ..ExpandOptions::default()
    };
    if let Ok(exp) = expand_with(&cfg, &opts) {
        assert!(
            exp.jobs.len() <= max_jobs,
            "{} > {max_jobs}",
            exp.jobs.len()
        );
        for (i, j) in exp.jobs.iter().enumerate() {
            assert_eq!(j.number as usize, i + 1);
        }
    }
    let _ = lint_with(text, &opts);
    let _ = branch_allowed(&cfg, "master", false);
}

proptest! {
    // Failures are printed, not saved to a file outside this module.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_configs_expand_within_bounds(text in config_text(), max_jobs in 0usize..300) {
        check_expansion(&text, max_jobs);
    }

    #[test]
    fn structured_configs_expand_within_bounds(text in structured_config(), max_jobs in 0usize..40) {
        let cfg = parse(&text).unwrap();
        let opts = ExpandOptions { max_jobs, ..ExpandOptions::default() };
        match expand_with(&cfg, &opts) {
            Ok(exp) => {
                prop_assert!(!exp.jobs.is_empty() || !cfg.exclude.is_empty());
                prop_assert!(exp.jobs.len() <= max_jobs);
                // Numbered in order; grouped by stage, in the stages'
                // order (allowed failures keep their place).
                for (i, j) in exp.jobs.iter().enumerate() {
                    prop_assert_eq!(j.number as usize, i + 1);
                }
                let rank = |s: &Option<String>| {
                    s.as_ref().and_then(|s| exp.stages.iter().position(|n| n.eq_ignore_ascii_case(s)))
                };
                for w in exp.jobs.windows(2) {
                    prop_assert!(rank(&w[0].stage) <= rank(&w[1].stage));
                }
            }
            Err(e) => prop_assert!(e.message.contains("more than the limit"), "{}", e),
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        check_expansion(&text, DEFAULT_MAX_JOBS);
        let _ = should_skip(&text);
    }

    #[test]
    fn block_style_never_panics(lines in prop::collection::vec(
        (0usize..4, prop::sample::select(KEYS), prop::option::of(scalar()), any::<bool>()), 0..30)
    ) {
        // Indented `key: value` and `- item` lines, the way people write
        // .travis.yml, including broken indentation.
        let mut text = String::new();
        for (indent, key, val, dash) in lines {
            text.push_str(&"  ".repeat(indent));
            if dash {
                text.push_str("- ");
            }
            text.push_str(key);
            text.push(':');
            if let Some(v) = val {
                text.push(' ');
                text.push_str(&v);
            }
            text.push('\n');
        }
        check_expansion(&text, DEFAULT_MAX_JOBS);
    }

    #[test]
    fn branch_patterns_never_panic(pattern in ".{0,40}", name in ".{0,40}", tag in any::<bool>()) {
        let f = BranchFilter {
            only: vec![BranchPattern::new(&pattern).0],
            except: vec![],
        };
        let _ = f.allows(&name, tag);
    }
}
