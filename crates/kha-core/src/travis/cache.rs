//! `cache:` and `before_cache:` (Travis docs: "Caching Dependencies and
//! Directories"; the forms are travis-yml's `schema/def/cache.rb`): read
//! into a [`CacheConfig`], and turned into what one job caches by
//! [`job_cache`].
//!
//! Forms: `cache: false` (off), `cache: pip` or `cache: [bundler, pip]`
//! (shortcuts), `cache: some/dir` (a directory, travis-yml's `prefix
//! :directories`), and the mapping `{directories: [...], cargo: true,
//! pip: false, timeout: 1000}`.

use super::diag::Diagnostics;
use super::yaml::{Entry, Kind, Node};
use super::JobPlan;
use crate::cache::{slug, CacheSpec};

/// `cache:` as written, folded into one shape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheConfig {
    /// `directories:`, in order.
    pub directories: Vec<String>,
    /// Shortcuts turned on (`cargo`, `pip`, …), in order.
    pub shortcuts: Vec<String>,
    /// `before_cache:` commands.
    pub before_cache: Vec<String>,
}

/// A shortcut: the languages whose Travis build script acts on it, the
/// directories it caches, shell lines it sets up, and paths pruned before
/// the archive is made. From travis-build's `script/*.rb` (`setup_cache`,
/// `prepare_cache`) and the docs' sections on each.
struct Shortcut {
    name: &'static str,
    languages: &'static [&'static str],
    directories: &'static [&'static str],
    setup: &'static [&'static str],
    prune: &'static [&'static str],
}

const SHORTCUTS: &[Shortcut] = &[
    // Bundler's path: BUNDLE_PATH, else vendor/bundle (docs, "Determining
    // the bundle path").
    Shortcut {
        name: "bundler",
        languages: &["ruby", "objective-c"],
        directories: &["${BUNDLE_PATH:-vendor/bundle}"],
        setup: &[],
        prune: &[],
    },
    Shortcut {
        name: "cocoapods",
        languages: &["objective-c"],
        directories: &["Pods"],
        setup: &[],
        prune: &[],
    },
    Shortcut {
        name: "pip",
        languages: &["python"],
        directories: &["$HOME/.cache/pip"],
        setup: &[],
        prune: &[],
    },
    Shortcut {
        name: "ccache",
        languages: &["c", "cpp", "objective-c"],
        directories: &["$HOME/.ccache"],
        setup: &["export PATH=\"/usr/lib/ccache:$PATH\""],
        prune: &[],
    },
    Shortcut {
        name: "packages",
        languages: &["r"],
        directories: &["$HOME/R/Library"],
        setup: &[
            "export R_LIB_USER=\"$HOME/R/Library\"",
            "mkdir -p \"$R_LIB_USER\"",
        ],
        prune: &[],
    },
    // rust.rb: `$HOME/.cargo` and `target`; CARGO_CACHE_CLEANUP_DIRS.
    Shortcut {
        name: "cargo",
        languages: &["rust"],
        directories: &["$HOME/.cargo", "target"],
        setup: &[],
        prune: &["$HOME/.cargo/registry/src"],
    },
    Shortcut {
        name: "npm",
        languages: &["node_js"],
        directories: &["$HOME/.npm"],
        setup: &[],
        prune: &[],
    },
    Shortcut {
        name: "yarn",
        languages: &["node_js"],
        directories: &["$HOME/.cache/yarn"],
        setup: &[],
        prune: &[],
    },
];

/// Shortcuts travis-yml knows that kha does nothing for, with why.
fn unsupported(name: &str) -> Option<&'static str> {
    match name {
        "apt" => {
            Some("Travis's apt cache needs its own apt mirror; kha does not cache apt packages")
        }
        _ => None,
    }
}

/// Reads the `cache:` entry into `c`.
pub(super) fn read_cache(d: &mut Diagnostics, e: &Entry, c: &mut CacheConfig) {
    let v = &e.value;
    if v.is_null() {
        return;
    }
    if v.as_bool() == Some(false) {
        *c = CacheConfig {
            before_cache: std::mem::take(&mut c.before_cache),
            ..CacheConfig::default()
        };
        return;
    }
    match &v.kind {
        Kind::Scalar { .. } | Kind::Seq(_) => {
            for it in one_or_many(v) {
                match it.scalar() {
                    Some(s) => word(d, it, s, c),
                    None => d.warn(
                        it.pos,
                        format!(
                            "a `cache` entry must be a name or a directory, not {}; ignored",
                            it.describe()
                        ),
                    ),
                }
            }
        }
        Kind::Map(entries) => {
            for x in entries {
                let key = x.key.as_str();
                match key {
                    "directories" => {
                        for it in one_or_many(&x.value) {
                            match it.scalar() {
                                Some(s) => push_unique(&mut c.directories, s),
                                None => {
                                    d.warn(it.pos, "a cached directory must be a string; ignored")
                                }
                            }
                        }
                    }
                    "timeout" | "edge" | "branch" => d.warn(
                        x.key_pos,
                        format!(
                            "`cache.{key}` is about Travis's own cache tooling; kha ignores it"
                        ),
                    ),
                    _ if SHORTCUTS.iter().any(|s| s.name == key) || unsupported(key).is_some() => {
                        match x.value.as_bool() {
                            Some(true) => word(d, &x.value, key, c),
                            Some(false) => c.shortcuts.retain(|s| s != key),
                            None => d.warn(
                                x.value.pos,
                                format!("`cache.{key}` must be true or false; ignored"),
                            ),
                        }
                    }
                    _ => d.warn(x.key_pos, format!("unknown key `cache.{key}`; ignored")),
                }
            }
        }
    }
}

/// A name in `cache:`: a shortcut, or else a directory.
fn word(d: &mut Diagnostics, at: &Node, s: &str, c: &mut CacheConfig) {
    if let Some(why) = unsupported(s) {
        d.warn(at.pos, format!("`cache: {s}` is ignored: {why}"));
    } else if SHORTCUTS.iter().any(|x| x.name == s) {
        push_unique(&mut c.shortcuts, s);
    } else {
        push_unique(&mut c.directories, s);
    }
}

fn one_or_many(node: &Node) -> Vec<&Node> {
    match &node.kind {
        Kind::Seq(items) => items.iter().collect(),
        _ if node.is_null() => vec![],
        _ => vec![node],
    }
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

/// What `job` caches, or None when it caches nothing: the directories of
/// `cache: directories` and of the shortcuts its language acts on (a
/// `cache: cargo` in a Python job caches nothing, as on Travis, whose
/// Python script ignores it). `max_archive_bytes` is the control node's.
pub fn job_cache(c: &CacheConfig, job: &JobPlan, max_archive_bytes: u64) -> Option<CacheSpec> {
    let mut spec = CacheSpec {
        before_cache: c.before_cache.clone(),
        max_archive_bytes,
        ..CacheSpec::default()
    };
    for name in &c.shortcuts {
        let Some(s) = SHORTCUTS.iter().find(|s| s.name == name) else {
            continue;
        };
        if !s.languages.contains(&job.language.as_str()) {
            continue;
        }
        for dir in s.directories {
            push_unique(&mut spec.directories, dir);
        }
        spec.setup.extend(s.setup.iter().map(|x| x.to_string()));
        spec.prune.extend(s.prune.iter().map(|x| x.to_string()));
    }
    for dir in &c.directories {
        push_unique(&mut spec.directories, dir);
    }
    if spec.directories.is_empty() {
        return None;
    }
    let os = job.requires.get("os").unwrap_or(super::langs::DEFAULT_OS);
    let dist = job.requires.get("dist");
    let versions: Vec<(String, String)> = job
        .requires
        .0
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "os" | "dist" | "arch" | "image" | "executor"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    spec.slug = slug(os, dist, &job.env, &versions);
    Some(spec)
}

/// The warning for shortcuts the file turns on that none of its jobs'
/// languages act on.
pub(super) fn unused_shortcuts(c: &CacheConfig, languages: &[&str]) -> Vec<String> {
    c.shortcuts
        .iter()
        .filter(|name| {
            SHORTCUTS
                .iter()
                .find(|s| s.name == name.as_str())
                .is_some_and(|s| !languages.iter().any(|l| s.languages.contains(l)))
        })
        .map(|name| format!("`cache: {name}` does nothing for this file's languages, as on Travis"))
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::travis::{expand, parse};

    /// (file, directories of job 1, shortcuts)
    #[test]
    fn forms() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        for (yml, dirs, shortcuts) in [
            ("cache: pip", s(&[]), s(&["pip"])),
            ("cache: [bundler, pip]", s(&[]), s(&["bundler", "pip"])),
            ("cache: .autoconf", s(&[".autoconf"]), s(&[])),
            (
                "cache:\n  directories:\n    - .autoconf\n    - $HOME/.m2\n",
                s(&[".autoconf", "$HOME/.m2"]),
                s(&[]),
            ),
            (
                "cache:\n  bundler: true\n  pip: false\n  directories: node_modules\n",
                s(&["node_modules"]),
                s(&["bundler"]),
            ),
            ("cache: {cargo: true}", s(&[]), s(&["cargo"])),
            ("cache: false", s(&[]), s(&[])),
            ("cache:\n  apt: true\n", s(&[]), s(&[])),
        ] {
            let cfg = parse(&format!("script: x\n{yml}\n")).unwrap();
            assert_eq!(cfg.cache.directories, dirs, "{yml}");
            assert_eq!(cfg.cache.shortcuts, shortcuts, "{yml}");
        }
        let cfg = parse("script: x\ncache:\n  apt: true\n  timeout: 9\n  bogus: 1\n").unwrap();
        assert_eq!(cfg.warnings.len(), 3, "{:?}", cfg.warnings);
    }

    #[test]
    fn jobs_cache_their_languages_directories() {
        let cfg = parse(
            "language: rust\nrust: [stable, nightly]\ncache:\n  cargo: true\n  pip: true\n  directories: [.extra]\nbefore_cache: rm -f x\n",
        )
        .unwrap();
        assert!(
            cfg.warnings
                .iter()
                .any(|w| w.contains("`cache: pip` does nothing")),
            "{:?}",
            cfg.warnings
        );
        let jobs = expand(&cfg, 10).unwrap();
        let a = super::job_cache(&cfg.cache, &jobs[0], 99).unwrap();
        let b = super::job_cache(&cfg.cache, &jobs[1], 99).unwrap();
        assert_eq!(a.directories, ["$HOME/.cargo", "target", ".extra"]);
        assert_eq!(a.prune, ["$HOME/.cargo/registry/src"]);
        assert_eq!(a.before_cache, ["rm -f x"]);
        assert_eq!(a.max_archive_bytes, 99);
        assert!(a.slug.ends_with("--rust-stable"), "{}", a.slug);
        assert!(b.slug.ends_with("--rust-nightly"), "{}", b.slug);

        // No directories: no cache, whatever before_cache says.
        let cfg = parse("language: python\ncache: cargo\nbefore_cache: x\n").unwrap();
        assert_eq!(
            super::job_cache(&cfg.cache, &expand(&cfg, 10).unwrap()[0], 1),
            None
        );
        let cfg = parse("language: c\ncache: ccache\n").unwrap();
        let c = super::job_cache(&cfg.cache, &expand(&cfg, 10).unwrap()[0], 1).unwrap();
        assert_eq!(c.directories, ["$HOME/.ccache"]);
        assert_eq!(c.setup, ["export PATH=\"/usr/lib/ccache:$PATH\""]);
        // `before_cache` is no longer an unsupported key.
        let cfg = parse("script: x\ncache: {directories: [a]}\nbefore_cache: [x, y]\n").unwrap();
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        assert_eq!(cfg.cache.before_cache, ["x", "y"]);
    }
}
