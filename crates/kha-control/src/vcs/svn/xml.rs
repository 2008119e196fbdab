//! What `svn info --xml`, `svn ls --xml` and `svn log --xml` answer, read
//! into plain values (pure; tested on the client's own output).

use roxmltree::{Document, Node};

/// `svn info --xml URL`: one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The revision asked about (HEAD's number when no peg was given).
    pub revision: u64,
    /// The revision the path last changed in.
    pub last_changed: u64,
    pub url: String,
    /// The repository's root URL.
    pub root: String,
    /// The repository's UUID: another repository at the same URL has
    /// another.
    pub uuid: String,
}

/// One directory entry of `svn ls --xml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub dir: bool,
    /// The revision it last changed in.
    pub last_changed: u64,
}

/// One revision of `svn log -v --xml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogEntry {
    pub revision: u64,
    /// Empty when the server hides it (no read access to every path).
    pub author: String,
    pub message: String,
    /// The paths it changed (`-v`).
    pub paths: Vec<Changed>,
}

/// A changed path: its action (`A`dded, `D`eleted, `M`odified,
/// `R`eplaced) and its absolute path in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub action: char,
    pub path: String,
}

fn doc(xml: &str) -> Result<Document<'_>, String> {
    Document::parse(xml).map_err(|e| format!("unreadable XML from svn: {e}"))
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name(name))
}

fn text(n: Option<Node<'_, '_>>) -> String {
    n.and_then(|n| n.text()).unwrap_or("").to_string()
}

fn rev(n: Option<Node<'_, '_>>, what: &str) -> Result<u64, String> {
    n.and_then(|n| n.attribute("revision"))
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| format!("svn's answer has no {what} revision"))
}

pub fn info(xml: &str) -> Result<Info, String> {
    let d = doc(xml)?;
    let e = d
        .descendants()
        .find(|n| n.has_tag_name("entry"))
        .ok_or("svn info answered no entry")?;
    Ok(Info {
        revision: rev(Some(e), "entry's")?,
        last_changed: rev(child(e, "commit"), "last changed")?,
        url: text(child(e, "url")),
        root: text(child(e, "repository").and_then(|r| child(r, "root"))),
        uuid: text(child(e, "repository").and_then(|r| child(r, "uuid"))),
    })
}

pub fn list(xml: &str) -> Result<Vec<Entry>, String> {
    let d = doc(xml)?;
    d.descendants()
        .filter(|n| n.has_tag_name("entry"))
        .map(|e| {
            Ok(Entry {
                name: text(child(e, "name")),
                dir: e.attribute("kind") == Some("dir"),
                last_changed: rev(child(e, "commit"), "entry's")?,
            })
        })
        .collect()
}

pub fn log(xml: &str) -> Result<Vec<LogEntry>, String> {
    let d = doc(xml)?;
    d.descendants()
        .filter(|n| n.has_tag_name("logentry"))
        .map(|e| {
            let paths = child(e, "paths")
                .map(|ps| {
                    ps.children()
                        .filter(|p| p.has_tag_name("path"))
                        .map(|p| Changed {
                            action: p
                                .attribute("action")
                                .and_then(|a| a.chars().next())
                                .unwrap_or('M'),
                            path: text(Some(p)),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ok(LogEntry {
                revision: rev(Some(e), "log entry's")?,
                author: text(child(e, "author")),
                message: text(child(e, "msg")),
                paths,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Answers as svn 1.14 gives them.
    const INFO: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<info>
<entry
   kind="dir"
   path="trunk"
   revision="7">
<url>svn://127.0.0.1:3690/repo/trunk</url>
<relative-url>^/trunk</relative-url>
<repository>
<root>svn://127.0.0.1:3690/repo</root>
<uuid>0b1c4a7e-6d0f-4a55-9d43-0c4a5f0d2f61</uuid>
</repository>
<commit
   revision="5">
<author>alice</author>
<date>2026-12-03T03:39:31.000000Z</date>
</commit>
</entry>
</info>
"#;

    const LIST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<lists>
<list
   path="file:///srv/svn/repo/branches">
<entry
   kind="dir">
<name>feature</name>
<commit
   revision="4">
<author>bob</author>
<date>2026-12-03T03:40:00.000000Z</date>
</commit>
</entry>
<entry
   kind="file">
<name>README</name>
<size>3</size>
<commit
   revision="2">
<date>2026-12-03T03:40:00.000000Z</date>
</commit>
</entry>
</list>
</lists>
"#;

    const LOG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<log>
<logentry
   revision="3">
<author>alice</author>
<date>2026-12-03T03:39:31.000000Z</date>
<paths>
<path
   text-mods="false"
   kind="dir"
   copyfrom-path="/trunk"
   copyfrom-rev="2"
   action="A"
   prop-mods="false">/branches/x</path>
</paths>
<msg>Branch x &amp; more

[ci skip]</msg>
</logentry>
<logentry
   revision="4">
<paths>
<path
   action="D"
   kind="dir">/branches/x</path>
<path
   action="M"
   kind="file">/trunk/a b.txt</path>
</paths>
</logentry>
</log>
"#;

    #[test]
    fn answers_are_read() {
        assert_eq!(
            info(INFO),
            Ok(Info {
                revision: 7,
                last_changed: 5,
                url: "svn://127.0.0.1:3690/repo/trunk".into(),
                root: "svn://127.0.0.1:3690/repo".into(),
                uuid: "0b1c4a7e-6d0f-4a55-9d43-0c4a5f0d2f61".into(),
            })
        );
        assert_eq!(
            list(LIST),
            Ok(vec![
                Entry {
                    name: "feature".into(),
                    dir: true,
                    last_changed: 4
                },
                Entry {
                    name: "README".into(),
                    dir: false,
                    last_changed: 2
                },
            ])
        );
        let ch = |action, path: &str| Changed {
            action,
            path: path.into(),
        };
        assert_eq!(
            log(LOG),
            Ok(vec![
                LogEntry {
                    revision: 3,
                    author: "alice".into(),
                    message: "Branch x & more\n\n[ci skip]".into(),
                    paths: vec![ch('A', "/branches/x")],
                },
                LogEntry {
                    revision: 4,
                    author: "".into(),
                    message: "".into(),
                    paths: vec![ch('D', "/branches/x"), ch('M', "/trunk/a b.txt")],
                },
            ])
        );
    }

    #[test]
    fn bad_answers_are_errors() {
        for (name, r) in [
            ("not xml", info("<info").err()),
            ("no entry", info("<info/>").err()),
            (
                "no commit",
                info(r#"<info><entry revision="1"></entry></info>"#).err(),
            ),
            (
                "bad revision",
                log(r#"<log><logentry revision="x"/></log>"#).err(),
            ),
        ] {
            assert!(r.is_some(), "{name}");
        }
        assert_eq!(log("<log>\n</log>"), Ok(vec![]));
    }
}
