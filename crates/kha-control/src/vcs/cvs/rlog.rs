//! `cvs rlog` read into files and revisions, and the decisions kha makes
//! from them: which symbolic names are branches, each branch's latest
//! change, the change a build is pinned to. Pure; tested by tables.

use kha_core::cvs::{parse_time, TRUNK};
use std::collections::BTreeMap;

/// One RCS file of `cvs rlog`'s output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcsFile {
    /// The repository path (`/root/mod/a.txt,v`; `Attic/` for removed files).
    pub rcs: String,
    /// The default branch (`1.1.1` after an import), empty for the trunk.
    pub default_branch: String,
    /// Symbolic names (tags and branch tags) → revision numbers.
    pub symbols: Vec<(String, String)>,
    /// The revisions rlog selected (all of them without `-d`).
    pub revisions: Vec<Revision>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revision {
    pub number: String,
    /// Canonical ([`kha_core::cvs::parse_time`]).
    pub date: String,
    pub author: String,
    /// `Exp`, or `dead` for a removal.
    pub state: String,
    /// Empty for commits made before CVS 1.12 had commit ids.
    pub commitid: String,
    pub message: String,
}

const REV_SEP: &str = "----------------------------";
const FILE_SEP: &str =
    "=============================================================================";

/// Reads rlog's output. Unknown lines are skipped, so a server's extra
/// header fields do no harm; a revision without a readable date is dropped.
pub fn parse(out: &str) -> Vec<RcsFile> {
    let mut files = Vec::new();
    let mut lines = out.lines().peekable();
    let mut cur: Option<RcsFile> = None;
    while let Some(line) = lines.next() {
        if let Some(rcs) = line.strip_prefix("RCS file: ") {
            if let Some(f) = cur.take() {
                files.push(f);
            }
            cur = Some(RcsFile {
                rcs: rcs.to_string(),
                ..RcsFile::default()
            });
            continue;
        }
        let Some(f) = cur.as_mut() else { continue };
        if let Some(b) = line.strip_prefix("branch:") {
            f.default_branch = b.trim().to_string();
        } else if line == "symbolic names:" {
            while let Some(sym) = lines.peek().and_then(|l| l.strip_prefix('\t')) {
                if let Some((name, num)) = sym.split_once(": ") {
                    f.symbols.push((name.trim().into(), num.trim().into()));
                }
                lines.next();
            }
        } else if line == REV_SEP {
            // A revision: its number, its fields, then the message up to
            // the next separator.
            let Some(number) = lines.next().and_then(|l| l.strip_prefix("revision ")) else {
                continue;
            };
            // "revision 1.2\tlocked by: …" on locked files.
            let number = number.split_whitespace().next().unwrap_or("").to_string();
            let fields = lines.next().unwrap_or("");
            let mut rev = Revision {
                number,
                ..Revision::default()
            };
            for field in fields.split(';') {
                let Some((k, v)) = field.split_once(':') else {
                    continue;
                };
                let v = v.trim();
                match k.trim() {
                    "date" => rev.date = parse_time(v).unwrap_or_default(),
                    "author" => rev.author = v.into(),
                    "state" => rev.state = v.into(),
                    "commitid" => rev.commitid = v.into(),
                    _ => {}
                }
            }
            if lines.peek().is_some_and(|l| l.starts_with("branches:")) {
                lines.next();
            }
            let mut msg = Vec::new();
            while let Some(l) = lines.peek() {
                if *l == REV_SEP || *l == FILE_SEP {
                    break;
                }
                msg.push(*l);
                lines.next();
            }
            rev.message = msg.join("\n");
            if !rev.date.is_empty() {
                f.revisions.push(rev);
            }
        } else if line == FILE_SEP {
            if let Some(f) = cur.take() {
                files.push(f);
            }
        }
    }
    files.extend(cur);
    files
}

/// The branch a revision is on: `1.2` → `1`, `1.2.2.1` → `1.2.2`.
fn branch_of(rev: &str) -> &str {
    rev.rsplit_once('.').map_or("", |(b, _)| b)
}

/// A branch tag's branch number: CVS's "magic" `1.2.0.2` is branch `1.2.2`;
/// `None` for a tag on a revision (and for vendor branches such as `1.1.1`,
/// which imports make and nobody builds).
pub fn magic_branch(num: &str) -> Option<String> {
    let parts: Vec<&str> = num.split('.').collect();
    let n = parts.len();
    if n >= 4 && n.is_multiple_of(2) && parts[n - 2] == "0" && parts.iter().all(|p| !p.is_empty()) {
        let mut b: Vec<&str> = parts[..n - 2].to_vec();
        b.push(parts[n - 1]);
        Some(b.join("."))
    } else {
        None
    }
}

/// The branches kha sees: HEAD (the trunk) and every branch tag.
pub fn branch_names(files: &[RcsFile]) -> Vec<String> {
    let mut names: Vec<String> = files
        .iter()
        .flat_map(|f| &f.symbols)
        .filter(|(_, num)| magic_branch(num).is_some())
        .map(|(name, _)| name.clone())
        .collect();
    names.push(TRUNK.to_string());
    names.sort();
    names.dedup();
    names
}

/// Is `rev` of file `f` part of what `branch` holds? The trunk holds the
/// trunk's revisions (and the default branch's, after an import); a branch
/// tag holds its branch's revisions and the revision it sprouted from.
fn on_branch(f: &RcsFile, branch: &str, rev: &str) -> bool {
    if branch == TRUNK {
        let b = branch_of(rev);
        return !b.contains('.') || (!f.default_branch.is_empty() && b == f.default_branch);
    }
    let Some(num) = f
        .symbols
        .iter()
        .find(|(n, _)| n == branch)
        .and_then(|(_, num)| magic_branch(num))
    else {
        return false;
    };
    branch_of(rev) == num || branch_of(&num) == rev
}

/// Each branch's latest change among the revisions rlog gave: branch →
/// canonical time. A branch whose files show no selected revision is left
/// out (with `-d`, nothing of it changed).
pub fn heads(files: &[RcsFile]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for branch in branch_names(files) {
        for f in files {
            for r in f
                .revisions
                .iter()
                .filter(|r| on_branch(f, &branch, &r.number))
            {
                let e = out.entry(branch.clone()).or_default();
                if r.date > *e {
                    *e = r.date.clone();
                }
            }
        }
    }
    out
}

/// The change a build at `time` on `branch` is: the revisions of that
/// branch made at that second (one commit touches several files), else
/// any made then. Its message and author.
pub fn change_at<'a>(files: &'a [RcsFile], branch: &str, time: &str) -> Option<&'a Revision> {
    let at = |on: bool| {
        files.iter().find_map(|f| {
            f.revisions
                .iter()
                .find(|r| r.date == time && (!on || on_branch(f, branch, &r.number)))
        })
    };
    at(true).or_else(|| at(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `cvs rlog mod` printed for a module imported, changed on the
    /// trunk, branched (`feature`) and changed on the branch.
    const RLOG: &str = "
RCS file: /tmp/root/mod/a.txt,v
head: 1.2
branch:
locks: strict
access list:
symbolic names:
\tfeature: 1.2.0.2
\tstart: 1.1.1.1
\tvendor: 1.1.1
keyword substitution: kv
total revisions: 4;\tselected revisions: 4
description:
----------------------------
revision 1.2
date: 2026-12-03 03:40:07 +0000;  author: root;  state: Exp;  lines: +1 -1;  commitid: 1006B10E497555EE243;
branches:  1.2.2;
second on head
----------------------------
revision 1.1
date: 2026-12-03 03:40:05 +0000;  author: root;  state: Exp;  commitid: 1006B10E4955548886C;
branches:  1.1.1;
Initial revision
----------------------------
revision 1.1.1.1
date: 2026-12-03 03:40:05 +0000;  author: root;  state: Exp;  lines: +0 -0;  commitid: 1006B10E4955548886C;
initial import
----------------------------
revision 1.2.2.1
date: 2026-12-03 03:40:10 +0000;  author: ann;  state: Exp;  lines: +1 -1;  commitid: 1006B10E49A5574C380;
on feature

second line [ci skip]
=============================================================================

RCS file: /tmp/root/mod/b.txt,v
head: 1.1
branch: 1.1.1
locks: strict
access list:
symbolic names:
\tfeature: 1.1.1.1.0.2
\tstart: 1.1.1.1
\tvendor: 1.1.1
keyword substitution: kv
total revisions: 2;\tselected revisions: 2
description:
----------------------------
revision 1.1
date: 2026-12-03 03:40:05 +0000;  author: root;  state: Exp;  commitid: 1006B10E4955548886C;
branches:  1.1.1;
Initial revision
----------------------------
revision 1.1.1.1
date: 2026-12-03 03:40:05 +0000;  author: root;  state: Exp;  lines: +0 -0;  commitid: 1006B10E4955548886C;
initial import
=============================================================================
";

    #[test]
    fn rlog_is_read_into_files_and_revisions() {
        let files = parse(RLOG);
        assert_eq!(files.len(), 2);
        let (a, b) = (&files[0], &files[1]);
        assert_eq!(a.rcs, "/tmp/root/mod/a.txt,v");
        assert_eq!(
            (a.default_branch.as_str(), b.default_branch.as_str()),
            ("", "1.1.1")
        );
        assert_eq!(
            a.symbols,
            [
                ("feature", "1.2.0.2"),
                ("start", "1.1.1.1"),
                ("vendor", "1.1.1")
            ]
            .map(|(n, v)| (n.to_string(), v.to_string()))
        );
        let got: Vec<_> = a
            .revisions
            .iter()
            .map(|r| {
                (
                    r.number.as_str(),
                    r.date.as_str(),
                    r.author.as_str(),
                    r.message.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("1.2", "2026-12-03 03:40:07 +0000", "root", "second on head"),
                (
                    "1.1",
                    "2026-12-03 03:40:05 +0000",
                    "root",
                    "Initial revision"
                ),
                (
                    "1.1.1.1",
                    "2026-12-03 03:40:05 +0000",
                    "root",
                    "initial import"
                ),
                (
                    "1.2.2.1",
                    "2026-12-03 03:40:10 +0000",
                    "ann",
                    "on feature\n\nsecond line [ci skip]"
                ),
            ]
        );
        assert_eq!(a.revisions[0].commitid, "1006B10E497555EE243");
        assert_eq!(a.revisions[0].state, "Exp");
        assert_eq!(b.revisions.len(), 2);
    }

    #[test]
    fn odd_output_is_tolerated() {
        for (out, files, revs) in [
            ("", 0, 0),
            ("cvs rlog: Logging mod\n", 0, 0),
            // A header only (rlog -d selected nothing), no trailing separator.
            ("RCS file: /r/m/x,v\nhead: 1.1\nsymbolic names:\n\tb: 1.1.0.2\n", 1, 0),
            // A revision with an unreadable date is dropped.
            ("RCS file: /r/m/x,v\n----------------------------\nrevision 1.1\ndate: yesterday;  author: a;\nmsg\n", 1, 0),
            // CVS 1.11's date form; a locked revision.
            ("RCS file: /r/m/x,v\n----------------------------\nrevision 1.3\tlocked by: a;\ndate: 2004/01/02 03:04:05;  author: a;  state: Exp;\nold\n", 1, 1),
        ] {
            let f = parse(out);
            assert_eq!(f.len(), files, "{out:?}");
            assert_eq!(f.iter().map(|f| f.revisions.len()).sum::<usize>(), revs, "{out:?}");
        }
        let f = parse("RCS file: /r/m/x,v\n----------------------------\nrevision 1.3\tlocked by: a;\ndate: 2004/01/02 03:04:05;  author: a;  state: Exp;\nold\n");
        assert_eq!(f[0].revisions[0].number, "1.3");
        assert_eq!(f[0].revisions[0].date, "2004-01-02 03:04:05 +0000");
    }

    #[test]
    fn branch_numbers() {
        for (num, want) in [
            ("1.2.0.2", Some("1.2.2")),
            ("1.1.1.1.0.2", Some("1.1.1.1.2")),
            ("1.2.2.1.0.4", Some("1.2.2.1.4")),
            ("1.1.1", None),
            ("1.1.1.1", None),
            ("1.2", None),
            ("1.0.2", None),
            ("1..0.2", None),
        ] {
            assert_eq!(magic_branch(num).as_deref(), want, "{num}");
        }
        for (rev, want) in [("1.2", "1"), ("1.2.2.1", "1.2.2"), ("1", "")] {
            assert_eq!(branch_of(rev), want, "{rev}");
        }
    }

    #[test]
    fn heads_and_changes() {
        let files = parse(RLOG);
        assert_eq!(branch_names(&files), ["HEAD", "feature"]);
        let h = heads(&files);
        assert_eq!(
            h,
            BTreeMap::from([
                ("HEAD".to_string(), "2026-12-03 03:40:07 +0000".to_string()),
                (
                    "feature".to_string(),
                    "2026-12-03 03:40:10 +0000".to_string()
                ),
            ])
        );
        for (branch, time, want) in [
            (
                "feature",
                "2026-12-03 03:40:10 +0000",
                Some("on feature\n\nsecond line [ci skip]"),
            ),
            ("HEAD", "2026-12-03 03:40:07 +0000", Some("second on head")),
            // The import: the trunk's revision 1.1 comes first.
            (
                "HEAD",
                "2026-12-03 03:40:05 +0000",
                Some("Initial revision"),
            ),
            // A branch's time that is its branch point's.
            (
                "feature",
                "2026-12-03 03:40:07 +0000",
                Some("second on head"),
            ),
            (
                "HEAD",
                "2026-12-03 03:40:10 +0000",
                Some("on feature\n\nsecond line [ci skip]"),
            ),
            ("HEAD", "2026-12-03 03:40:11 +0000", None),
        ] {
            assert_eq!(
                change_at(&files, branch, time).map(|r| r.message.as_str()),
                want,
                "{branch} {time}"
            );
        }
    }

    #[test]
    fn a_new_branch_without_commits_is_at_its_branch_point() {
        let out = RLOG.replace(
            "\tfeature: 1.2.0.2\n",
            "\tfeature: 1.2.0.2\n\tfresh: 1.1.0.4\n",
        );
        let h = heads(&parse(&out));
        assert_eq!(h["fresh"], "2026-12-03 03:40:05 +0000");
        // The trunk after an import follows the vendor branch.
        let b_only = parse(&out).into_iter().skip(1).collect::<Vec<_>>();
        assert_eq!(heads(&b_only)["HEAD"], "2026-12-03 03:40:05 +0000");
    }
}
