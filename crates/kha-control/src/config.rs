//! The control node's settings: a TOML file (every key optional), overridden
//! by flags and `KHA_…` environment variables in `main.rs`.

use kha_core::view::Role;
use kha_core::{limits, Secret};
use serde::Deserialize;
use std::path::PathBuf;

/// The default `db_cache_mib`.
pub const DB_CACHE_MIB: u64 = 32;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the database, logs and git mirrors live.
    pub data_dir: PathBuf,
    /// gRPC listen address, for builders and the `kha` CLI.
    pub grpc_listen: String,
    /// HTTP listen address for the web UI, its JSON API, webhooks, badges
    /// and `/healthz` ("off": none).
    pub http_listen: String,
    /// Builders send a heartbeat this often; leases last three of them.
    pub heartbeat_ms: u64,
    /// Per-job log cap in bytes; the rest is cut with a visible marker.
    pub log_cap_bytes: u64,
    /// Times a job lost with its builder is run again before it is errored.
    pub max_attempts: u32,
    /// Default job timeout for projects that set none.
    pub job_timeout_secs: u64,
    /// Most jobs one build may expand to.
    pub max_jobs_per_build: usize,
    /// Grace given to a canceled job between SIGTERM and SIGKILL.
    pub cancel_grace_ms: u64,
    /// TLS certificate chain (PEM) for the gRPC listener; with `tls_key`,
    /// builders and the CLI connect over `https://`.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// The event stream keeps at most this many events…
    pub events_keep: u64,
    /// …and none older than this (0: no age limit).
    pub events_max_age_secs: u64,
    /// A running job's log growth is announced at most this often.
    pub log_event_ms: u64,
    /// Memory the database may keep of its records, in MiB (sled's page
    /// cache); the rest is read from disk when needed.
    pub db_cache_mib: u64,
    /// Where people reach the web UI (`https://ci.example.org`), for links
    /// that leave the page: webhook URLs, badge snippets. Empty: taken from
    /// each request's `Host` header.
    pub public_url: String,
    /// A web session ends after this long without a request…
    pub session_idle_secs: u64,
    /// …and after this long in any case.
    pub session_max_secs: u64,
    /// GitHub sign-in (the OAuth web flow); absent: off.
    pub github: Option<GithubConfig>,
    /// Notifications, hooks and plugins.
    pub notify: crate::notify::NotifyConfig,
    /// The build cache's limits.
    pub cache: crate::cache::CacheSettings,
    /// How long finished jobs' logs are kept (`[logs]`).
    pub logs: crate::retention::LogRetention,
    /// `/metrics` answers only requests with `Authorization: Bearer
    /// <this>`; empty: anyone who reaches the HTTP listener.
    pub metrics_token: Secret,
}

/// GitHub sign-in: an OAuth app registered on GitHub (or GitHub Enterprise
/// Server, whose URLs differ) with `{public_url}/auth/github/callback` as
/// its callback URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// The OAuth app's client id.
    pub client_id: String,
    /// The OAuth app's client secret (redacted in `Debug`).
    pub client_secret: Secret,
    /// Where the browser is sent to approve the sign-in.
    #[serde(default = "github_authorize_url")]
    pub authorize_url: String,
    /// Where the control node exchanges the returned code for a token.
    #[serde(default = "github_token_url")]
    pub token_url: String,
    /// GitHub's REST API (`{api_url}/user`, …).
    #[serde(default = "github_api_url")]
    pub api_url: String,
    /// The global role of a user created by their first GitHub sign-in
    /// ("none": public projects only, until an admin gives more).
    #[serde(default)]
    pub default_role: Role,
    /// When not empty, only members of one of these organizations (their
    /// logins) may sign in with GitHub.
    #[serde(default)]
    pub orgs: Vec<String>,
}

fn github_authorize_url() -> String {
    "https://github.com/login/oauth/authorize".into()
}

fn github_token_url() -> String {
    "https://github.com/login/oauth/access_token".into()
}

fn github_api_url() -> String {
    "https://api.github.com".into()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("/var/lib/kha"),
            grpc_listen: "127.0.0.1:7700".into(),
            http_listen: "127.0.0.1:7701".into(),
            heartbeat_ms: limits::DEFAULT_HEARTBEAT_MS,
            log_cap_bytes: limits::DEFAULT_LOG_CAP_BYTES,
            max_attempts: limits::DEFAULT_MAX_ATTEMPTS,
            job_timeout_secs: limits::DEFAULT_JOB_TIMEOUT_SECS,
            max_jobs_per_build: 200,
            cancel_grace_ms: limits::DEFAULT_CANCEL_GRACE_MS,
            tls_cert: None,
            tls_key: None,
            events_keep: 1_000_000,
            events_max_age_secs: 30 * 24 * 3600,
            log_event_ms: 1000,
            db_cache_mib: DB_CACHE_MIB,
            public_url: String::new(),
            session_idle_secs: 24 * 3600,
            session_max_secs: 30 * 24 * 3600,
            github: None,
            notify: Default::default(),
            cache: Default::default(),
            logs: Default::default(),
            metrics_token: Secret::default(),
        }
    }
}

impl Config {
    /// The web UI's base URL without a trailing slash: `public_url`, else
    /// `http://` and the request's `Host` header, else the listen address.
    pub fn base_url(&self, host: Option<&str>) -> String {
        if !self.public_url.is_empty() {
            return self.public_url.trim_end_matches('/').to_string();
        }
        let host = host
            .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or(&self.http_listen);
        format!("http://{host}")
    }
}

impl Config {
    pub fn lease_ms(&self) -> u64 {
        self.heartbeat_ms * limits::LEASE_HEARTBEATS
    }

    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let text = include_str!("../../../deploy/control.toml");
        let c = Config::from_toml(text).unwrap();
        assert_eq!(c.grpc_listen, "0.0.0.0:7700");
        assert!(c.github.is_none(), "GitHub sign-in is off by default");
        assert_eq!(
            c.cache.max_archive_bytes,
            limits::DEFAULT_CACHE_MAX_ARCHIVE_BYTES
        );
        assert_eq!(
            c.cache.max_project_bytes,
            limits::DEFAULT_CACHE_MAX_PROJECT_BYTES
        );
    }

    /// The example's commented-out `[github]` section, uncommented, parses
    /// with exactly the keys the docs name.
    #[test]
    fn example_github_section_parses() {
        let text = include_str!("../../../deploy/control.toml");
        let section: String = text
            .lines()
            .skip_while(|l| *l != "# [github]")
            .take_while(|l| l.starts_with('#'))
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with('[') || l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(section.starts_with("[github]\n"), "{section}");
        let c = Config::from_toml(&section).unwrap();
        let gh = c.github.unwrap();
        assert_eq!(gh.client_id, "Iv1.0123456789abcdef");
        assert_eq!(gh.authorize_url, "https://github.com/login/oauth/authorize");
        assert_eq!(gh.default_role, Role::None);
        assert_eq!(gh.orgs, ["example-org"]);
    }

    /// The example's `[notify]` section, with every commented-out channel
    /// uncommented, parses with exactly the keys the docs name.
    #[test]
    fn example_notify_sections_parse() {
        let text = include_str!("../../../deploy/control.toml");
        let section: String = text
            .lines()
            .skip_while(|l| *l != "[notify]")
            .take_while(|l| !l.starts_with("# GitHub sign-in"))
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|u| u.starts_with('[') || u.contains(" = "))
                    .unwrap_or(l)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let c = Config::from_toml(&section).unwrap();
        let n = c.notify;
        assert_eq!(n.email.unwrap().tls, "starttls");
        assert_eq!(n.xmpp.unwrap().nick, "kha");
        assert_eq!(n.github.unwrap().context, "kha");
        assert_eq!(n.hooks_dir.unwrap().to_str(), Some("/etc/kha/hooks"));
        assert!(n.webhooks.rsa_private_key.is_some());
        assert_eq!(n.irc.nick, "kha-ci");
    }

    #[test]
    fn github_defaults_are_githubs_urls() {
        let c = Config::from_toml("[github]\nclient_id = \"x\"\nclient_secret = \"s\"").unwrap();
        let gh = c.github.unwrap();
        assert_eq!(gh.token_url, "https://github.com/login/oauth/access_token");
        assert_eq!(gh.api_url, "https://api.github.com");
        assert_eq!(gh.default_role, Role::None);
        assert!(gh.orgs.is_empty());
        assert_eq!(format!("{:?}", gh.client_secret), "Secret(<redacted>)");
        let e = Config::from_toml("[github]\nclient_id = \"x\"\nclient_secret = \"s\"\norg = []")
            .unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        let e = Config::from_toml("[github]\nclient_id = \"x\"").unwrap_err();
        assert!(e.contains("client_secret"), "{e}");
        let e = Config::from_toml(
            "[github]\nclient_id = \"x\"\nclient_secret = \"s\"\ndefault_role = \"owner\"",
        )
        .unwrap_err();
        assert!(e.contains("unknown variant `owner`"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = Config::from_toml("heartbeat = 5").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }
}
