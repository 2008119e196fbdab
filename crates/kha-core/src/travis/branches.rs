//! Which branches and tags build: `branches: only/except`.
//!
//! The rules are Travis's (Travis docs: Customizing the Build, "Building
//! Specific Branches" and "Using regular expressions"):
//! - `only` is a safelist, `except` a blocklist; given both, `only` wins.
//! - An entry surrounded by `/` is a regular expression (Ruby's dialect;
//!   kha compiles it with the `regex` crate, which lacks look-around and
//!   backreferences: such an entry is reported and never matches).
//! - Tags are filtered like branches, by their name: a safelist stops tags
//!   it does not name ("safelisting also prevents tagged commits from being
//!   built").
//! - `gh-pages` is not built unless the safelist names it. travis-core's
//!   `Request::Approval` (lib/travis/model/request/approval.rb) tests the
//!   branch with `/gh[-_]pages/i`, so `gh_pages`, `GH-Pages` and names that
//!   contain either are excluded too, and a safelist entry matching the same
//!   pattern lifts the exclusion.
//!
//! `branches` may also be a list or a comma-separated string, both read as
//! `only`; an `only` or `except` given as a string is split at commas too
//! (`only: feature, develop` is two branches), each name stripped
//! (travis-core's `Request::Branches`, lib/travis/model/request/branches.rb:
//! `split_branches`, `branches.split(',').map(&:strip)`).

use super::diag::Diagnostics;
use super::yaml::{Entry, Kind, Node};
use regex::{Regex, RegexBuilder};

/// Largest compiled regex accepted: a filter is a short pattern, and a huge
/// one is a denial of service.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One `only`/`except` entry.
#[derive(Debug, Clone)]
pub enum BranchPattern {
    Name(String),
    /// `/…/`: `regex` is None when it does not compile here.
    Regex {
        source: String,
        regex: Option<Regex>,
    },
}

impl PartialEq for BranchPattern {
    fn eq(&self, other: &BranchPattern) -> bool {
        match (self, other) {
            (BranchPattern::Name(a), BranchPattern::Name(b)) => a == b,
            (BranchPattern::Regex { source: a, .. }, BranchPattern::Regex { source: b, .. }) => {
                a == b
            }
            _ => false,
        }
    }
}

impl BranchPattern {
    /// Reads an entry; `/…/` is a regex. Errors are the regex's.
    pub fn new(entry: &str) -> (BranchPattern, Option<String>) {
        let entry = entry.trim();
        if let Some(source) = entry.strip_prefix('/').and_then(|s| s.strip_suffix('/')) {
            // Ruby's `^` and `$` match at line boundaries; branch names have
            // no newlines, but keep the meaning anyway.
            let built = RegexBuilder::new(source)
                .multi_line(true)
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .build();
            let err = built.as_ref().err().map(|e| e.to_string());
            (
                BranchPattern::Regex {
                    source: source.to_string(),
                    regex: built.ok(),
                },
                err,
            )
        } else {
            (BranchPattern::Name(entry.to_string()), None)
        }
    }

    /// Does `name` match? A regex searches anywhere in the name, as Ruby's
    /// `=~` does.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            BranchPattern::Name(n) => n == name,
            BranchPattern::Regex { regex, .. } => regex.as_ref().is_some_and(|r| r.is_match(name)),
        }
    }

    fn mentions_gh_pages(&self) -> bool {
        let text = match self {
            BranchPattern::Name(n) => n,
            BranchPattern::Regex { source, .. } => source,
        };
        let lower = text.to_ascii_lowercase();
        lower.contains("gh-pages") || lower.contains("gh_pages")
    }
}

/// `branches:` of a config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BranchFilter {
    pub only: Vec<BranchPattern>,
    pub except: Vec<BranchPattern>,
}

impl BranchFilter {
    pub(crate) fn read(d: &mut Diagnostics, e: &Entry) -> BranchFilter {
        let mut f = BranchFilter::default();
        match &e.value.kind {
            _ if e.value.is_null() => {}
            Kind::Scalar { text, .. } => {
                f.only = patterns(d, &e.value, text.split(',').map(str::to_string).collect());
            }
            Kind::Seq(_) => f.only = list(d, &e.value),
            Kind::Map(entries) => {
                for x in entries {
                    match x.key.as_str() {
                        "only" => f.only = list(d, &x.value),
                        "except" => f.except = list(d, &x.value),
                        other => d.warn(
                            x.key_pos,
                            format!("`branches.{other}` is neither `only` nor `except`; ignored"),
                        ),
                    }
                }
            }
        }
        if !f.only.is_empty() && !f.except.is_empty() {
            d.warn(
                e.key_pos,
                "both `branches.only` and `branches.except` are given; like Travis, kha uses `only`",
            );
        }
        f
    }

    /// Whether a push to `name` (a branch, or a tag when `is_tag`) builds.
    pub fn allows(&self, name: &str, is_tag: bool) -> bool {
        if !self.only.is_empty() {
            if !is_tag && is_gh_pages(name) && !self.only.iter().any(|p| p.mentions_gh_pages()) {
                return false;
            }
            return self.only.iter().any(|p| p.matches(name));
        }
        if !is_tag && is_gh_pages(name) {
            return false;
        }
        !self.except.iter().any(|p| p.matches(name))
    }
}

/// travis-core's `github_pages?`: `/gh[-_]pages/i` anywhere in the name.
fn is_gh_pages(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.contains("gh-pages") || lower.contains("gh_pages")
}

fn list(d: &mut Diagnostics, node: &Node) -> Vec<BranchPattern> {
    let entries: Vec<String> = match &node.kind {
        _ if node.is_null() => vec![],
        Kind::Scalar { text, .. } => text.split(',').map(str::to_string).collect(),
        Kind::Seq(items) => items
            .iter()
            .filter_map(|it| match it.scalar() {
                Some(s) => Some(s.to_string()),
                None => {
                    if !it.is_null() {
                        d.warn(
                            it.pos,
                            format!(
                                "a branch must be a name or a /regex/, not {}; ignored",
                                it.describe()
                            ),
                        );
                    }
                    None
                }
            })
            .collect(),
        Kind::Map(_) => {
            d.warn(node.pos, "a branch list must be a list of names; ignored");
            vec![]
        }
    };
    patterns(d, node, entries)
}

fn patterns(d: &mut Diagnostics, node: &Node, entries: Vec<String>) -> Vec<BranchPattern> {
    let items = node.items();
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if entry.trim().is_empty() {
            continue;
        }
        let (p, err) = BranchPattern::new(entry);
        if let Some(err) = err {
            let pos = items.and_then(|it| it.get(i)).map_or(node.pos, |n| n.pos);
            d.warn(
                pos,
                format!(
                    "branch pattern `{}` is not a regular expression kha can use (Travis used Ruby's dialect); it matches nothing: {}",
                    entry.trim(),
                    err.lines().last().unwrap_or("invalid")
                ),
            );
        }
        out.push(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::travis::parse;

    /// A string is split at commas, whichever form names the list.
    #[test]
    fn comma_separated_strings_are_lists() {
        for (yaml, name, want) in [
            ("branches:\n  only: feature, develop\n", "feature", true),
            ("branches:\n  only: feature, develop\n", "develop", true),
            (
                "branches:\n  only: feature, develop\n",
                "feature, develop",
                false,
            ),
            ("branches:\n  only: feature, develop\n", "master", false),
            ("branches: feature,develop\n", "develop", true),
            ("branches:\n  except: legacy , old\n", "old", false),
            ("branches:\n  except: legacy , old\n", "main", true),
            ("branches:\n  only: [feature, develop]\n", "develop", true),
        ] {
            let cfg = parse(&format!("script: x\n{yaml}")).unwrap();
            assert_eq!(cfg.branches.allows(name, false), want, "{yaml} {name}");
        }
    }

    fn filter(only: &[&str], except: &[&str]) -> BranchFilter {
        BranchFilter {
            only: only.iter().map(|s| BranchPattern::new(s).0).collect(),
            except: except.iter().map(|s| BranchPattern::new(s).0).collect(),
        }
    }

    /// (only, except, name, is_tag, allowed)
    type Case = (
        &'static [&'static str],
        &'static [&'static str],
        &'static str,
        bool,
        bool,
    );

    #[test]
    fn table() {
        let cases: &[Case] = &[
            (&[], &[], "master", false, true),
            (&[], &[], "gh-pages", false, false),
            (&[], &[], "v1.0", true, true),
            (&["master"], &[], "master", false, true),
            (&["master"], &[], "feature", false, false),
            // A safelist also filters tags by name.
            (&["master"], &[], "v1.0", true, false),
            (
                &["master", "/^v\\d+\\.\\d+(\\.\\d+)?(-\\S*)?$/"],
                &[],
                "v1.3",
                true,
                true,
            ),
            (
                &["master", "/^v\\d+\\.\\d+(\\.\\d+)?(-\\S*)?$/"],
                &[],
                "v1.3.0-rc1",
                true,
                true,
            ),
            (&[], &["legacy", "experimental"], "legacy", false, false),
            (&[], &["legacy"], "main", false, true),
            (&[], &["/^v[0-9]/"], "v2", true, false),
            // `only` wins over `except`.
            (&["master"], &["master"], "master", false, true),
            // gh-pages only when safelisted by name.
            (&["/.*/"], &[], "gh-pages", false, false),
            (&["gh-pages", "/.*/"], &[], "gh-pages", false, true),
            (&["gh-pages", "/.*/"], &[], "anything", false, true),
            // travis-core's `/gh[-_]pages/i`.
            (&[], &[], "gh_pages", false, false),
            (&[], &[], "GH-Pages", false, false),
            (&[], &[], "old-gh-pages", false, false),
            (&["/.*/"], &[], "gh_pages", false, false),
            (&["gh_pages"], &[], "gh_pages", false, true),
            (&[], &[], "gh_pages", true, true),
            // Regexes search, they are not anchored.
            (&["/deploy/"], &[], "pre-deploy-1", false, true),
            (
                &["/^(?i:deploy)-.*$/"],
                &[],
                "Deploy-2014-06-01",
                false,
                true,
            ),
            // Look-around is Ruby-only: never matches here.
            (&["/^(?!wip)/"], &[], "main", false, false),
        ];
        for (only, except, name, tag, want) in cases {
            assert_eq!(
                filter(only, except).allows(name, *tag),
                *want,
                "only={only:?} except={except:?} {name} tag={tag}"
            );
        }
    }
}
