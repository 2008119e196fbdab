//! CVS's vocabulary, shared by the control node (which reads a repository's
//! history) and builders (which check a build's state out): the timestamp a
//! CVS build is pinned to, the CVSROOTs kha talks to, and the scrambled form
//! a pserver password takes in a `CVS_PASSFILE`. Pure: no process is run
//! here.

/// The one form a CVS build's "commit" takes: the UTC second of the
/// branch's latest change, as `cvs rlog` prints dates and `cvs -D` reads
/// them back (`2026-12-03 04:05:06 +0000`), so a user can copy it between
/// the two. `cvs checkout -D T` is inclusive: it gets the changes made at T.
pub const TIME_EXAMPLE: &str = "2026-12-03 04:05:06 +0000";

/// A timestamp in the canonical form, from the forms people and servers
/// write: `2026-12-03 04:05:06 +0000` (rlog of CVS 1.12), `2026/12/03
/// 04:05:06` (rlog of CVS 1.11, UTC), `2026-12-03T04:05:06Z` and
/// `20261203T040506Z`, and rlog's form in another zone (`2026-12-03
/// 13:05:06 +0900`, what a server outside UTC prints), turned into UTC.
/// `None` for anything else.
pub fn parse_time(s: &str) -> Option<String> {
    let s = s.trim();
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let fields = match b.len() {
        // 2026-12-03 04:05:06 +0000
        25 if at(4, b'-') && at(7, b'-') && at(10, b' ') && (at(20, b'+') || at(20, b'-')) => {
            (at(13, b':') && at(16, b':')).then_some([0..4, 5..7, 8..10, 11..13, 14..16, 17..19])
        }
        // 2026/12/03 04:05:06
        19 if at(4, b'/') && at(7, b'/') && at(10, b' ') && at(13, b':') && at(16, b':') => {
            Some([0..4, 5..7, 8..10, 11..13, 14..16, 17..19])
        }
        // 2026-12-03T04:05:06Z
        20 if at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':') => {
            at(19, b'Z').then_some([0..4, 5..7, 8..10, 11..13, 14..16, 17..19])
        }
        // 20261203T040506Z
        16 if at(8, b'T') && at(15, b'Z') => Some([0..4, 4..6, 6..8, 9..11, 11..13, 13..15]),
        _ => None,
    }?;
    let [y, mo, d, h, mi, se] = fields.map(digits);
    let (y, mo, d, h, mi, se) = (y?, mo?, d?, h?, mi?, se?);
    let ok = (1970..=9999).contains(&y)
        && (1..=12).contains(&mo)
        && (1..=31).contains(&d)
        && h < 24
        && mi < 60
        && se < 61;
    if !ok {
        return None;
    }
    // The zone's offset, east of UTC, in seconds (`+0000` in the usual case).
    let offset = if b.len() == 25 {
        let (oh, om) = (digits(21..23)?, digits(23..25)?);
        if oh > 14 || om > 59 {
            return None;
        }
        let secs = i64::from(oh * 3600 + om * 60);
        if at(20, b'-') {
            -secs
        } else {
            secs
        }
    } else {
        0
    };
    let at_utc = crate::time::days_from_civil(y.into(), mo.into(), d.into()) * 86_400
        + i64::from(h * 3600 + mi * 60 + se)
        - offset;
    let iso = crate::time::iso8601(u64::try_from(at_utc).ok()? * 1000);
    // 2026-12-03T04:05:06Z → 2026-12-03 04:05:06 +0000
    Some(format!("{} {} +0000", iso.get(..10)?, iso.get(11..19)?))
}

/// The branch a CVS project builds by default: the trunk, by the name CVS
/// itself gives it (`cvs update -r HEAD`, `cvs update -A`).
pub const TRUNK: &str = "HEAD";

/// A CVSROOT kha can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// A repository on this machine: `/srv/cvs` or `:local:/srv/cvs`.
    Local(String),
    /// A CVS server's password protocol:
    /// `:pserver:[user@]host[:port]/path`.
    Pserver {
        user: String,
        host: String,
        port: u16,
        path: String,
    },
}

/// CVS's pserver port.
pub const PSERVER_PORT: u16 = 2401;

impl Root {
    /// Reads a CVSROOT; says what is wrong and what is supported.
    pub fn parse(root: &str) -> Result<Root, String> {
        let bad_chars = |s: &str| s.chars().any(|c| c.is_control() || c.is_whitespace());
        if root.is_empty() || bad_chars(root) {
            return Err(format!("CVSROOT {root:?}: no spaces or control characters"));
        }
        let abs = |p: &str| -> Result<String, String> {
            if p.starts_with('/') && !p.split('/').any(|c| c == "..") {
                Ok(p.to_string())
            } else {
                Err(format!(
                    "CVSROOT {root:?}: the repository must be an absolute path"
                ))
            }
        };
        if let Some(p) = root.strip_prefix(":local:") {
            return Ok(Root::Local(abs(p)?));
        }
        if root.starts_with('/') {
            return Ok(Root::Local(abs(root)?));
        }
        let Some(rest) = root.strip_prefix(":pserver:") else {
            return Err(format!(
                "CVSROOT {root:?}: kha reads :local:/path, /path and :pserver:[user@]host[:port]/path"
            ));
        };
        let (user, hostpath) = match rest.rsplit_once('@') {
            Some((u, hp)) => (u, hp),
            None => ("", rest),
        };
        if user.contains(':') || user.starts_with('-') {
            return Err(format!(
                "CVSROOT {root:?}: give the password as the project's credentials, not in the CVSROOT"
            ));
        }
        let slash = hostpath
            .find('/')
            .ok_or_else(|| format!("CVSROOT {root:?}: no repository path"))?;
        let (hostport, path) = hostpath.split_at(slash);
        let (host, port) = match hostport.split_once(':') {
            Some((h, "")) => (h, PSERVER_PORT),
            Some((h, p)) => (
                h,
                p.parse()
                    .map_err(|_| format!("CVSROOT {root:?}: bad port {p:?}"))?,
            ),
            None => (hostport, PSERVER_PORT),
        };
        if host.is_empty() || host.starts_with('-') || host.contains(';') {
            return Err(format!("CVSROOT {root:?}: bad host {host:?}"));
        }
        Ok(Root::Pserver {
            user: user.to_string(),
            host: host.to_string(),
            port,
            path: abs(path)?,
        })
    }

    /// The CVSROOT to give `cvs -d`, as `user` when one is given (the
    /// project's credentials name who logs in).
    pub fn arg(&self, user: Option<&str>) -> String {
        match self {
            Root::Local(p) => format!(":local:{p}"),
            Root::Pserver {
                user: u,
                host,
                port,
                path,
            } => {
                let who = match user.filter(|u| !u.is_empty()) {
                    Some(u) => u,
                    None => u.as_str(),
                };
                let at = if who.is_empty() {
                    String::new()
                } else {
                    format!("{who}@")
                };
                format!(":pserver:{at}{host}:{port}{path}")
            }
        }
    }

    /// The `CVS_PASSFILE` line that logs `user` in with `password`, as
    /// `cvs login` writes it; `None` for a local root or a password with
    /// characters the scrambling has no place for.
    pub fn passfile_line(&self, user: &str, password: &str) -> Option<String> {
        match self {
            Root::Local(_) => None,
            Root::Pserver { .. } => Some(format!(
                "/1 {} {}\n",
                self.arg(Some(user)),
                scramble(password)?
            )),
        }
    }
}

/// The pserver protocol's password scrambling (CVS's `src/scramble.c`,
/// scheme "A"): an obfuscation, not encryption, which is why the passfile
/// is private and removed after each command. Printable ASCII only.
pub fn scramble(password: &str) -> Option<String> {
    const SHIFTS: [u8; 128] = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
        25, 26, 27, 28, 29, 30, 31, 114, 120, 53, 79, 96, 109, 72, 108, 70, 64, 76, 67, 116, 74,
        68, 87, 111, 52, 75, 119, 49, 34, 82, 81, 95, 65, 112, 86, 118, 110, 122, 105, 41, 57, 83,
        43, 46, 102, 40, 89, 38, 103, 45, 50, 42, 123, 91, 35, 125, 55, 54, 66, 124, 126, 59, 47,
        92, 71, 115, 78, 88, 107, 106, 56, 36, 121, 117, 104, 101, 100, 69, 73, 99, 63, 94, 93, 39,
        37, 61, 48, 58, 113, 32, 90, 44, 98, 60, 51, 33, 97, 62, 77, 84, 80, 85, 223,
    ];
    let mut out = String::from("A");
    for b in password.bytes() {
        if !(b' '..=b'~').contains(&b) {
            return None;
        }
        out.push(char::from(SHIFTS[usize::from(b)]));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_every_form_come_out_canonical() {
        let t = "2026-12-03 04:05:06 +0000";
        for (input, want) in [
            (t, Some(t)),
            (" 2026-12-03 04:05:06 +0000 ", Some(t)),
            ("2026/12/03 04:05:06", Some(t)),
            ("2026-12-03T04:05:06Z", Some(t)),
            ("20261203T040506Z", Some(t)),
            // Other zones, as a server outside UTC prints them.
            ("2026-12-03 05:05:06 +0100", Some(t)),
            ("2026-12-03 13:35:06 +0930", Some(t)),
            ("2026-12-02 23:05:06 -0500", Some(t)),
            (
                "2027-01-01 08:59:59 +0900",
                Some("2026-12-31 23:59:59 +0000"),
            ),
            ("2026-12-03 04:05:06 +1500", None),
            ("2026-12-03 04:05:06 +01x0", None),
            ("2026-13-03 04:05:06 +0000", None),
            ("2026-12-03 24:05:06 +0000", None),
            ("2026-12-03 04:05:06", None),
            ("-D", None),
            ("", None),
            ("0123456789abcdef0123456789abcdef01234567", None),
            ("2026-12-0x 04:05:06 +0000", None),
        ] {
            assert_eq!(parse_time(input).as_deref(), want, "{input:?}");
        }
        // The canonical form reads back as itself, and sorts by time.
        assert_eq!(parse_time(TIME_EXAMPLE).as_deref(), Some(TIME_EXAMPLE));
        assert!("2026-12-03 04:05:06 +0000" < "2026-12-03 04:05:07 +0000");
    }

    #[test]
    fn roots() {
        let ps = |user: &str, port| Root::Pserver {
            user: user.into(),
            host: "cvs.example.org".into(),
            port,
            path: "/cvsroot".into(),
        };
        for (input, want) in [
            ("/srv/cvs", Ok(Root::Local("/srv/cvs".into()))),
            (":local:/srv/cvs", Ok(Root::Local("/srv/cvs".into()))),
            (
                ":pserver:anon@cvs.example.org:/cvsroot",
                Ok(ps("anon", 2401)),
            ),
            (":pserver:cvs.example.org:2402/cvsroot", Ok(ps("", 2402))),
            (":pserver:cvs.example.org/cvsroot", Ok(ps("", 2401))),
            (":local:srv/cvs", Err("absolute")),
            (":local:/srv/../etc", Err("absolute")),
            ("/srv/my cvs", Err("spaces")),
            (":ext:host:/cvs", Err(":pserver:")),
            (":fork:/cvs", Err(":pserver:")),
            (":pserver:u:pw@host:/cvs", Err("credentials")),
            (":pserver:-oProxy@host:/cvs", Err("credentials")),
            (":pserver:u@-host:/cvs", Err("bad host")),
            (":pserver:u@host:x/cvs", Err("bad port")),
            (":pserver:u@host", Err("no repository path")),
        ] {
            match (Root::parse(input), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{input}"),
                (Err(e), Err(part)) => assert!(e.contains(part), "{input}: {e}"),
                (got, want) => panic!("{input}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn root_arguments_and_the_passfile() {
        let local = Root::parse("/srv/cvs").unwrap();
        assert_eq!(local.arg(Some("bob")), ":local:/srv/cvs");
        assert_eq!(local.passfile_line("bob", "pw"), None);
        let r = Root::parse(":pserver:anon@cvs.example.org:/cvsroot").unwrap();
        assert_eq!(r.arg(None), ":pserver:anon@cvs.example.org:2401/cvsroot");
        assert_eq!(
            r.arg(Some("bob")),
            ":pserver:bob@cvs.example.org:2401/cvsroot"
        );
        // `cvs login` with password "secret" writes "AZdh d," (scheme A).
        assert_eq!(
            r.passfile_line("bob", "secret").as_deref(),
            Some("/1 :pserver:bob@cvs.example.org:2401/cvsroot AZdh d,\n")
        );
        // CVS's table is its own inverse on printable ASCII: a check that
        // it was copied whole.
        let all: String = (b' '..=b'~').map(char::from).collect();
        let once = scramble(&all).unwrap();
        assert_eq!(scramble(&once[1..]).unwrap()[1..], all);
        assert_eq!(scramble(""), Some("A".into()));
        assert_eq!(scramble("é"), None);
        assert_eq!(scramble("a\nb"), None);
    }
}
