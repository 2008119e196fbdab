//! Where an IRC message goes: a channel string (Travis's `irc.freenode.net#chan`,
//! `ircs://host:6697/#chan,key`) read into server, port, TLS, channel and key.

/// Travis's default port, for `irc://` and `host#chan`.
pub(super) const IRC_PORT: u16 = 6667;
/// The registered port for IRC over TLS (Travis's client would try 6667).
pub(super) const IRCS_PORT: u16 = 6697;

/// A server and channel, from a channel string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Place {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) tls: bool,
    /// With its `#`.
    pub(super) channel: String,
    /// From `#chan,key`.
    pub(super) key: Option<String>,
}

impl Place {
    /// Travis's forms: `host#chan`, `host:port#chan`, `irc://host[:port]/#chan`,
    /// `ircs://host[:port]/#chan`; the channel may end in `,key`. As in
    /// Travis, `#` is put before the name after the separating `#` (so
    /// `host##chan` is `##chan`).
    pub(super) fn parse(s: &str) -> Result<Place, String> {
        let bad = |why: &str| format!("bad IRC channel {s:?}: {why}");
        let (tls, rest) = if let Some(r) = s.strip_prefix("ircs://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("irc://") {
            (false, r)
        } else if s.contains("://") {
            return Err(bad("only irc:// and ircs:// are known"));
        } else {
            (false, s)
        };
        let (server, fragment) = rest.split_once('#').ok_or_else(|| bad("no #channel"))?;
        let server = server.trim_end_matches('/');
        let (host, port) = match server.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("the port is not a number"))?,
            ),
            None => (server, if tls { IRCS_PORT } else { IRC_PORT }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:_".contains(c))
        {
            return Err(bad("no host name"));
        }
        let fragment = percent_encoding::percent_decode_str(fragment)
            .decode_utf8()
            .map_err(|_| bad("a %-escape that is not UTF-8"))?;
        let (name, key) = match fragment.split_once(',') {
            Some((n, k)) => (n, Some(k.to_string())),
            None => (&*fragment, None),
        };
        if name.is_empty() || name.contains([' ', ',', '\x07']) || word("", name).is_err() {
            return Err(bad("the channel name"));
        }
        if let Some(k) = &key {
            if k.is_empty() || word("", k).is_err() {
                return Err(bad("the channel key"));
            }
        }
        Ok(Place {
            host: host.to_string(),
            port,
            tls,
            channel: format!("#{name}"),
            key,
        })
    }

    pub(super) fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A nick, key or password: one IRC parameter, never a second command.
pub(super) fn word(what: &str, v: &str) -> Result<(), String> {
    if v.is_empty() || v.contains(['\r', '\n', '\0', ' ']) || v.starts_with(':') {
        Err(format!(
            "the {what} is not usable on IRC (empty, or spaces or line breaks)"
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_strings() {
        let p = |host: &str, port, tls, channel: &str, key: Option<&str>| Place {
            host: host.into(),
            port,
            tls,
            channel: channel.into(),
            key: key.map(str::to_string),
        };
        let table = [
            (
                "irc.freenode.net#travis",
                p("irc.freenode.net", 6667, false, "#travis", None),
            ),
            (
                "irc.example.org:7000#ci",
                p("irc.example.org", 7000, false, "#ci", None),
            ),
            (
                "irc://irc.example.org:8000/#chan",
                p("irc.example.org", 8000, false, "#chan", None),
            ),
            (
                "irc://irc.example.org/#chan,s3cret",
                p("irc.example.org", 6667, false, "#chan", Some("s3cret")),
            ),
            (
                "ircs://irc.example.org:7070/#chan",
                p("irc.example.org", 7070, true, "#chan", None),
            ),
            (
                "ircs://irc.example.org/#chan",
                p("irc.example.org", 6697, true, "#chan", None),
            ),
            (
                "irc.libera.chat##kha",
                p("irc.libera.chat", 6667, false, "##kha", None),
            ),
            (
                "127.0.0.1:6667#a%2Bb",
                p("127.0.0.1", 6667, false, "#a+b", None),
            ),
        ];
        for (s, want) in table {
            assert_eq!(Place::parse(s), Ok(want), "{s}");
        }
        for bad in [
            "irc.example.org",
            "#chan",
            "http://irc.example.org/#chan",
            "irc://irc.example.org:99999/#chan",
            "irc://irc.example.org/#",
            "irc.example.org#chan x",
            "irc.example.org#chan\r\nQUIT",
            "irc.example.org#chan%0D%0AQUIT",
            "irc.example.org#chan,",
            "irc.example.org#chan,k y",
            "evil host#chan",
        ] {
            assert!(Place::parse(bad).is_err(), "{bad}");
        }
    }
}
