//! The build cache's rules: what a job caches ([`CacheSpec`], made from
//! `cache:` by `travis::job_cache`), the key its archive is stored under
//! (project, [`push_group`], [`slug`]), where a job looks for one
//! ([`fetch_groups`], Travis's fallback order), and which archives go when
//! a project holds too much ([`evict`], least recently used first).
//!
//! Travis's own rules, which these follow, are in travis-build's
//! `script/shared/directory_cache/base.rb` (`fetch_urls`, `push_url`,
//! `prefixed`) and `script.rb` (`cache_slug_keys`), and in the docs' page
//! "Caching Dependencies and Directories".

use serde::{Deserialize, Serialize};

/// What one job caches, sent to the builder in its spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheSpec {
    /// Directories as written (`$HOME/.cargo`, `target`, `.autoconf`): the
    /// job's shell expands them, and a relative one is under the build
    /// directory, as on Travis.
    pub directories: Vec<String>,
    /// `before_cache:` commands, run after `script` and before the
    /// archive is made; their failures change nothing.
    pub before_cache: Vec<String>,
    /// Shell lines a shortcut needs before `before_install` (`cache:
    /// ccache` puts `/usr/lib/ccache` first in `PATH`).
    pub setup: Vec<String>,
    /// Paths removed before the archive is made (`cache: cargo` drops
    /// `$HOME/.cargo/registry/src`, as Travis does).
    pub prune: Vec<String>,
    /// The job's part of the key: what sets it apart from its siblings.
    pub slug: String,
    /// The largest compressed archive the control node takes.
    pub max_archive_bytes: u64,
}

/// Keeps `[A-Za-z0-9_.-]`, as Travis's `prefixed` does to each part of a
/// cache's path (`gsub(/[^\w\.\_\-]+/, '')`).
pub fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        .collect()
}

/// The job's slug: `cache`, its OS and dist, a hash of its environment
/// lines (sorted, as Travis's `cache_slug_keys`), then each runtime
/// version of the matrix as `--KEY-VALUE` (Travis's languages append
/// theirs: `--cargo-stable`, `--rvm-2.7`, `--otp-27`).
pub fn slug(os: &str, dist: Option<&str>, env: &[String], versions: &[(String, String)]) -> String {
    use sha2::{Digest, Sha256};
    let mut env: Vec<&str> = env.iter().map(String::as_str).collect();
    env.sort_unstable();
    let hash = hex::encode(Sha256::digest(env.join("=").as_bytes()));
    let mut parts = vec!["cache".to_string(), os.to_string()];
    parts.extend(dist.map(str::to_string));
    parts.push(hash);
    let mut s = parts.join("-");
    for (k, v) in versions {
        s.push_str(&format!("--{k}-{v}"));
    }
    sanitize(&s)
}

/// Where a build's jobs store their archives: `PR.N` for a pull request,
/// else the branch (or tag) built. A pull request never writes to its
/// base branch's cache, so it cannot change what pushes restore.
pub fn push_group(branch: &str, pr_number: u64) -> String {
    if pr_number > 0 {
        format!("PR.{pr_number}")
    } else {
        branch.to_string()
    }
}

/// Where a job looks for an archive, first found wins: its own group,
/// then for a pull request the branch it targets, then the repository's
/// default branch (Travis docs, "Pull request builds and caches"; a
/// branch without a cache of its own falls back to the default branch's).
pub fn fetch_groups(branch: &str, pr_number: u64, default_branch: &str) -> Vec<String> {
    let mut out = vec![push_group(branch, pr_number)];
    for g in [branch, default_branch] {
        if !g.is_empty() && !out.iter().any(|o| o == g) {
            out.push(g.to_string());
        }
    }
    out
}

/// One stored archive, as eviction sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub size: u64,
    /// When a job last restored or stored it (ms).
    pub used_ms: u64,
}

/// Which archives to remove so that `held` fits in `max_total` bytes:
/// least recently used first; `keep` (the one just stored) is never
/// chosen. Returns indexes into `held`.
pub fn evict(held: &[Held], max_total: u64, keep: Option<usize>) -> Vec<usize> {
    let mut total: u64 = held.iter().map(|h| h.size).sum();
    let mut order: Vec<usize> = (0..held.len()).filter(|i| Some(*i) != keep).collect();
    order.sort_by_key(|i| (held[*i].used_ms, *i));
    let mut out = Vec::new();
    for i in order {
        if total <= max_total {
            break;
        }
        total -= held[i].size;
        out.push(i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallback_order() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        for (branch, pr, default, want) in [
            ("master", 0, "master", s(&["master"])),
            ("feature", 0, "master", s(&["feature", "master"])),
            ("dev", 7, "main", s(&["PR.7", "dev", "main"])),
            ("main", 7, "main", s(&["PR.7", "main"])),
            // A repository whose default branch is unknown (empty).
            ("feature", 0, "", s(&["feature"])),
            ("v1.0", 0, "master", s(&["v1.0", "master"])),
        ] {
            assert_eq!(fetch_groups(branch, pr, default), want, "{branch} {pr}");
        }
        assert_eq!(push_group("dev", 7), "PR.7");
        assert_eq!(push_group("dev", 0), "dev");
    }

    #[test]
    fn slugs() {
        let env = vec!["B=2".to_string(), "A=1".to_string()];
        let swapped = vec!["A=1".to_string(), "B=2".to_string()];
        let rust = vec![("rust".to_string(), "stable".to_string())];
        let a = slug("linux", None, &env, &rust);
        assert!(a.starts_with("cache-linux-"), "{a}");
        assert!(a.ends_with("--rust-stable"), "{a}");
        // Order of env lines does not matter, their values do.
        assert_eq!(a, slug("linux", None, &swapped, &rust));
        assert_ne!(a, slug("linux", None, &["A=3".into()], &rust));
        assert_ne!(a, slug("linux", Some("focal"), &env, &rust));
        let nightly = vec![("rust".to_string(), "nightly".to_string())];
        assert_ne!(a, slug("linux", None, &env, &nightly));
        // Odd characters in a matrix value never reach a path.
        let odd = vec![("rvm".to_string(), "2.7 /../x".to_string())];
        assert!(slug("linux", None, &[], &odd).ends_with("--rvm-2.7..x"));
        assert_eq!(sanitize("a/b c$d_e.f-g"), "abcd_e.f-g");
    }

    #[test]
    fn eviction_is_least_recently_used() {
        let h = |size, used_ms| Held { size, used_ms };
        let held = [h(10, 5), h(10, 1), h(10, 3), h(10, 9)];
        for (max, keep, want) in [
            (40, None, vec![]),
            (39, None, vec![1]),
            (20, None, vec![1, 2]),
            (20, Some(1), vec![2, 0]),
            (0, Some(3), vec![1, 2, 0]),
        ] {
            assert_eq!(evict(&held, max, keep), want, "{max} {keep:?}");
        }
        assert!(evict(&[], 0, None).is_empty());
    }
}
