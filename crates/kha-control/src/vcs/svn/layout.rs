//! A Subversion repository's layout: which paths are kha's branches and
//! tags. Subversion has only directories; by convention `trunk` is the main
//! line, `branches/X` a branch and `tags/T` a tag. A project may name other
//! directories, or be one branch as a whole (`single`).

/// The name of the main line's branch in kha, whatever its path.
pub const TRUNK: &str = "trunk";

/// Where a project's branches and tags live, as paths relative to the
/// project's URL (no leading or trailing `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The main line, kha's branch `trunk`; "" for a repository that is
    /// one branch as a whole.
    pub trunk: String,
    /// The directory whose subdirectories are branches; `None`: none.
    pub branches: Option<String>,
    /// The directory whose subdirectories are tags; `None`: none.
    pub tags: Option<String>,
}

/// Where a changed path falls in a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Inside a branch or tag (`refs/heads/X`, `refs/tags/T`); `root`: the
    /// branch's own directory (its addition or deletion is the branch's).
    Ref { name: String, root: bool },
    /// At or above the trunk, branches or tags directory: adding, deleting
    /// or replacing it changes which branches exist.
    Container,
    /// Anywhere else: no branch changed.
    Outside,
}

impl Default for Layout {
    fn default() -> Layout {
        Layout {
            trunk: "trunk".into(),
            branches: Some("branches".into()),
            tags: Some("tags".into()),
        }
    }
}

impl Layout {
    /// `""` or `standard`; `single`; or `trunk=PATH[,branches=PATH][,tags=PATH]`.
    pub fn parse(s: &str) -> Result<Layout, String> {
        let s = s.trim();
        match s {
            "" | "standard" => return Ok(Layout::default()),
            "single" => {
                return Ok(Layout {
                    trunk: String::new(),
                    branches: None,
                    tags: None,
                })
            }
            _ => {}
        }
        let hint = "give standard, single, or trunk=PATH,branches=PATH,tags=PATH";
        let (mut trunk, mut branches, mut tags) = (None, None, None);
        for part in s.split(',') {
            let Some((k, v)) = part.split_once('=') else {
                return Err(format!("layout {s:?}: {part:?} is not KEY=PATH; {hint}"));
            };
            let v = v.trim().trim_matches('/').to_string();
            if !path_ok(&v) {
                return Err(format!(
                    "layout {s:?}: {v:?} is not a path inside the repository; {hint}"
                ));
            }
            let slot = match k.trim() {
                "trunk" => &mut trunk,
                "branches" => &mut branches,
                "tags" => &mut tags,
                other => return Err(format!("layout {s:?}: unknown key {other:?}; {hint}")),
            };
            if slot.replace(v).is_some() {
                return Err(format!("layout {s:?}: {k} given twice"));
            }
        }
        let Some(trunk) = trunk else {
            return Err(format!("layout {s:?}: trunk=PATH is missing; {hint}"));
        };
        let l = Layout {
            trunk,
            branches,
            tags,
        };
        let dirs: Vec<&str> = [Some(&l.trunk), l.branches.as_ref(), l.tags.as_ref()]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        for (i, a) in dirs.iter().enumerate() {
            for b in &dirs[i + 1..] {
                if within(a, b) || within(b, a) {
                    return Err(format!(
                        "layout {s:?}: {a:?} and {b:?} overlap; each must be outside the others"
                    ));
                }
            }
        }
        Ok(l)
    }

    /// The path of a branch (or, with `tag`, a tag) named `name`, if the
    /// layout has one of that name.
    pub fn path(&self, name: &str, tag: bool) -> Option<String> {
        if tag {
            return Some(join(self.tags.as_deref()?, name_ok(name)?));
        }
        if name == TRUNK {
            return Some(self.trunk.clone());
        }
        Some(join(self.branches.as_deref()?, name_ok(name)?))
    }

    /// Where `path` (relative to the project's URL) falls.
    pub fn locate(&self, path: &str) -> Place {
        let path = path.trim_matches('/');
        if within(path, &self.trunk) {
            let root = path == self.trunk;
            return Place::Ref {
                name: format!("refs/heads/{TRUNK}"),
                root,
            };
        }
        for (dir, kind) in [(&self.branches, "heads"), (&self.tags, "tags")] {
            let Some(dir) = dir else { continue };
            if let Some(rest) = under(path, dir) {
                let (name, deeper) = match rest.split_once('/') {
                    Some((n, _)) => (n, true),
                    None => (rest, false),
                };
                return Place::Ref {
                    name: format!("refs/{kind}/{name}"),
                    root: !deeper,
                };
            }
        }
        let containers = [
            Some(&self.trunk),
            self.branches.as_ref(),
            self.tags.as_ref(),
        ];
        if containers.into_iter().flatten().any(|c| within(c, path)) {
            Place::Container
        } else {
            Place::Outside
        }
    }
}

/// A branch or tag name is one directory name.
fn name_ok(name: &str) -> Option<&str> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.chars().any(char::is_control);
    (!bad).then_some(name)
}

/// A relative path with no empty, `.` or `..` components ("" is the root).
fn path_ok(p: &str) -> bool {
    p.is_empty()
        || p.split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.chars().any(char::is_control))
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Is `path` `dir` or below it? (Everything is below the root "".)
fn within(path: &str, dir: &str) -> bool {
    dir.is_empty() || path == dir || under(path, dir).is_some()
}

/// `path` strictly below `dir`: the rest.
fn under<'a>(path: &'a str, dir: &str) -> Option<&'a str> {
    if dir.is_empty() {
        return (!path.is_empty()).then_some(path);
    }
    path.strip_prefix(dir)?
        .strip_prefix('/')
        .filter(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(s: &str) -> Layout {
        Layout::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn layouts_parse() {
        let custom = Layout {
            trunk: "src/main".into(),
            branches: Some("src/dev".into()),
            tags: None,
        };
        for (text, want) in [
            ("", Ok(Layout::default())),
            ("standard", Ok(Layout::default())),
            (
                "single",
                Ok(Layout {
                    trunk: "".into(),
                    branches: None,
                    tags: None,
                }),
            ),
            ("trunk=src/main,branches=/src/dev/", Ok(custom)),
            ("branches=b", Err("trunk=PATH is missing")),
            ("trunk=t,trunk=u", Err("given twice")),
            ("trunk=a,branches=a/b", Err("overlap")),
            ("trunk=../x", Err("not a path")),
            ("trunk=t,stuff=s", Err("unknown key")),
            ("trunk", Err("not KEY=PATH")),
        ] {
            match (Layout::parse(text), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{text}: {got}"),
                (got, want) => panic!("{text}: {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn branches_map_to_paths() {
        let std = l("");
        let single = l("single");
        let custom = l("trunk=main,branches=dev/b");
        for (layout, name, tag, want) in [
            (&std, "trunk", false, Some("trunk")),
            (&std, "x", false, Some("branches/x")),
            (&std, "v1.0", true, Some("tags/v1.0")),
            (&std, "a/b", false, None),
            (&std, "..", false, None),
            (&single, "trunk", false, Some("")),
            (&single, "x", false, None),
            (&single, "v1", true, None),
            (&custom, "trunk", false, Some("main")),
            (&custom, "x", false, Some("dev/b/x")),
            (&custom, "v1", true, None),
        ] {
            assert_eq!(
                layout.path(name, tag).as_deref(),
                want,
                "{layout:?} {name} {tag}"
            );
        }
    }

    #[test]
    fn changed_paths_locate_their_branch() {
        let std = l("");
        let single = l("single");
        let r = |name: &str, root| Place::Ref {
            name: name.into(),
            root,
        };
        for (layout, path, want) in [
            (&std, "/trunk/src/a.c", r("refs/heads/trunk", false)),
            (&std, "/trunk", r("refs/heads/trunk", true)),
            (&std, "/branches/x", r("refs/heads/x", true)),
            (&std, "/branches/x/README", r("refs/heads/x", false)),
            (&std, "/tags/v1", r("refs/tags/v1", true)),
            (&std, "/branches", Place::Container),
            (&std, "/", Place::Container),
            (&std, "/trunkish/a", Place::Outside),
            (&std, "/docs/a", Place::Outside),
            (&single, "/a/b", r("refs/heads/trunk", false)),
            (&single, "/", r("refs/heads/trunk", true)),
        ] {
            assert_eq!(layout.locate(path), want, "{layout:?} {path}");
        }
    }
}
