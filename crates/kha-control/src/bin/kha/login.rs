//! `kha login`, `kha logout`, `kha whoami`: signing the CLI in as a user.
//!
//! Login trades a password (or, with `--web`, a one-time code from the web
//! UI's account page) for an API token of the user's own, named after this
//! machine, and stores it with the server and its id in the CLI config
//! file; later commands send it. Logout revokes that token on the control
//! node and removes it from the file. The token is never printed.

use crate::config;
use crate::output::print_json;
use crate::prompt;
use crate::{Ctx, Failure};
use clap::Args;
use kha_core::view;
use kha_proto::admin::{
    LoginRequest, NewApiToken, RedeemCliCodeRequest, RevokeTokenRequest, WhoamiRequest,
};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct LoginArgs {
    /// The user name (asked for when not given).
    #[arg(long)]
    user: Option<String>,
    /// Sign in on the web UI instead (e.g. with GitHub) and type the code
    /// its account page shows.
    #[arg(long, conflicts_with = "user")]
    web: bool,
}

/// What `--json` prints after a sign-in (never the token).
#[derive(Serialize)]
struct Signed<'a> {
    server: &'a str,
    config: &'a Path,
    token: &'a view::ApiToken,
}

/// Where the CLI keeps what login stores.
pub struct Target {
    pub server: String,
    pub config: Option<PathBuf>,
}

/// "kha CLI on HOST": how the token shows in token lists.
fn token_name() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "an unnamed host".into());
    format!("kha CLI on {host}")
}

/// The account page for the web UI at `web_url`. A control node without
/// `public_url` reports the address its HTTP listener was configured
/// with, often every interface ("0.0.0.0:7701"): then the host the CLI
/// reached it at is the one to open.
fn account_url(web_url: &str, server: &str) -> String {
    let web = web_url.trim_end_matches('/');
    let host_of = |u: &str| {
        let rest = u.split_once("://").map_or(u, |(_, r)| r);
        let hostport = rest.split('/').next().unwrap_or(rest);
        match hostport.rsplit_once(':') {
            Some((h, _)) => h.to_string(),
            None => hostport.to_string(),
        }
    };
    let host = host_of(web);
    let web = if matches!(host.as_str(), "0.0.0.0" | "[::]") {
        web.replacen(&host, &host_of(server), 1)
    } else {
        web.to_string()
    };
    format!("{web}/account")
}

pub async fn login(ctx: &mut Ctx, a: LoginArgs, to: Target) -> Result<u8, Failure> {
    let Some(path) = to.config else {
        return Err(Failure(
            2,
            "no place for the token: set HOME or pass --config FILE".into(),
        ));
    };
    let answer = if a.web {
        let me = ctx
            .client
            .whoami(ctx.req(WhoamiRequest {}))
            .await?
            .into_inner();
        let url = account_url(&me.web_url, &to.server);
        eprintln!("Open {url}, sign in, and make a code for the CLI there.");
        let code = prompt::line("code: ", "code")?;
        let r = ctx.req(RedeemCliCodeRequest {
            code,
            token_name: token_name(),
        });
        ctx.client.redeem_cli_code(r).await?.into_inner()
    } else {
        let user = match a.user {
            Some(u) => u,
            None => prompt::line("user: ", "user name")?,
        };
        let password = prompt::secret(&format!("password for {user}: "), "password", false).await?;
        let r = ctx.req(LoginRequest {
            user,
            password,
            token_name: token_name(),
        });
        ctx.client.login(r).await?.into_inner()
    };
    let NewApiToken { info, token } = answer;
    let info: view::ApiToken = info
        .ok_or_else(|| Failure(1, "the control node answered no token".into()))?
        .into();
    config::update(
        &path,
        &[
            ("server", Some(&to.server)),
            ("token", Some(&token)),
            ("token_id", Some(&info.id)),
        ],
    )?;
    if ctx.json {
        print_json(&Signed {
            server: &to.server,
            config: &path,
            token: &info,
        });
    } else {
        out!(
            "signed in to {} as {} (token {}, {:?}); saved in {}",
            to.server,
            info.user,
            info.id,
            info.name,
            path.display()
        );
    }
    Ok(0)
}

/// Revokes the stored token and removes it from the file (the server
/// stays). A token the control node no longer knows is removed all the
/// same.
pub async fn logout(
    ctx: &mut Ctx,
    file: &config::FileConfig,
    path: Option<&Path>,
) -> Result<u8, Failure> {
    let (Some(path), Some(_)) = (path, file.token.as_ref()) else {
        out!("not signed in (no token in the config file)");
        return Ok(0);
    };
    let revoked = match &file.token_id {
        Some(id) => {
            let r = ctx.req(RevokeTokenRequest { id: id.clone() });
            match ctx.client.revoke_token(r).await {
                Ok(_) => format!("token {id} revoked"),
                Err(s)
                    if matches!(
                        s.code(),
                        tonic::Code::NotFound | tonic::Code::Unauthenticated
                    ) =>
                {
                    format!("token {id} was no longer valid")
                }
                Err(s) => return Err(s.into()),
            }
        }
        None => "the token was not revoked (its id is unknown: see `kha token list`)".into(),
    };
    config::update(path, &[("token", None), ("token_id", None)])?;
    if !ctx.json {
        out!("signed out: {revoked}; removed from {}", path.display());
    }
    Ok(0)
}

pub async fn whoami(ctx: &mut Ctx, server: &str) -> Result<u8, Failure> {
    let w = ctx
        .client
        .whoami(ctx.req(WhoamiRequest {}))
        .await?
        .into_inner();
    let w: view::Whoami = w
        .try_into()
        .map_err(|e: kha_proto::views::WireError| Failure(1, e.to_string()))?;
    if ctx.json {
        print_json(&w);
        return Ok(0);
    }
    match w.kind.as_str() {
        "user" => {
            out!("{} on {server}", w.name);
            out!("global role: {}", w.role);
            for r in &w.roles {
                out!("{} on {}", r.role, r.project);
            }
            if !w.stars.is_empty() {
                out!("starred: {}", w.stars.join(", "));
            }
        }
        "admin token" => out!("the admin token on {server}: every permission"),
        "anonymous" => {
            out!("not signed in to {server}: public projects only (`kha login` to sign in)")
        }
        other => out!("{other} {} on {server}", w.name),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::account_url;

    #[test]
    fn account_urls() {
        for (web, server, want) in [
            (
                "https://ci.example/",
                "https://ci.example:7700",
                "https://ci.example/account",
            ),
            (
                "http://0.0.0.0:7701",
                "http://ci.lan:7700",
                "http://ci.lan:7701/account",
            ),
            (
                "http://[::]:7701",
                "http://10.0.0.5:7700",
                "http://10.0.0.5:7701/account",
            ),
            (
                "http://127.0.0.1:7701",
                "http://127.0.0.1:7700",
                "http://127.0.0.1:7701/account",
            ),
        ] {
            assert_eq!(account_url(web, server), want, "{web} via {server}");
        }
    }
}
