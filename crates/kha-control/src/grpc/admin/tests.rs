//! The adapter called as tonic calls it (the service trait, metadata
//! and all), on a real App in a temp dir: sign-in by password and by a
//! web UI code, and the bearer of later calls.
use super::*;
use crate::config::Config;
use tokio_util::sync::CancellationToken;

fn with_bearer<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

#[tokio::test]
async fn sign_in_by_password_and_by_code() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    let app = App::open(cfg, CancellationToken::new()).unwrap();
    let svc = AdminSvc { app: app.clone() };
    let admin = crate::admin_token(&dir.path().join("data")).unwrap();
    let mut add = AddUserRequest {
        name: "alice".into(),
        password: "correct horse".into(),
        role: 0,
        email: String::new(),
    };
    add.set_role(Role::Viewer);
    let added = svc.add_user(with_bearer(add, &admin)).await.unwrap();
    assert_eq!(added.get_ref().generated_password, "");
    assert_eq!(added.get_ref().user.as_ref().unwrap().role(), Role::Viewer);

    // Anonymous: no token is not an error, and it is told where the web UI is.
    let me = svc.whoami(Request::new(WhoamiRequest {})).await.unwrap();
    assert_eq!(me.get_ref().kind(), CallerKind::Anonymous);
    assert!(me.get_ref().web_url.starts_with("http"));

    let login = |password: &str| LoginRequest {
        user: "alice".into(),
        password: password.into(),
        token_name: "kha CLI on test".into(),
    };
    let e = svc.login(Request::new(login("wrong"))).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let t = svc
        .login(Request::new(login("correct horse")))
        .await
        .unwrap()
        .into_inner();
    assert!(t.token.starts_with("khau_"));
    let info = t.info.unwrap();
    assert_eq!(
        (info.user.as_str(), info.name.as_str()),
        ("alice", "kha CLI on test")
    );
    let me = svc
        .whoami(with_bearer(WhoamiRequest {}, &t.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((me.name.as_str(), me.kind()), ("alice", CallerKind::User));

    // A code made on the web UI (as alice) signs another CLI in, once.
    let alice = api::auth::from_bearer(&app, Some(&t.token)).unwrap();
    let code = api::auth::cli_code(&app, &alice).unwrap();
    let redeem = || RedeemCliCodeRequest {
        code: code.to_lowercase(),
        token_name: "kha CLI on laptop".into(),
    };
    let t2 = svc.redeem_cli_code(Request::new(redeem())).await.unwrap();
    assert_eq!(t2.get_ref().info.as_ref().unwrap().user, "alice");
    let again = svc.redeem_cli_code(Request::new(redeem())).await;
    assert_eq!(again.unwrap_err().code(), tonic::Code::Unauthenticated);

    // Signing out is revoking one's own token by its id.
    let listed = svc
        .list_tokens(with_bearer(ListTokensRequest {}, &t.token))
        .await
        .unwrap()
        .into_inner()
        .tokens;
    assert_eq!(listed.len(), 2);
    let r = RevokeTokenRequest { id: info.id };
    svc.revoke_token(with_bearer(r, &t.token)).await.unwrap();
    let e = svc
        .whoami(with_bearer(WhoamiRequest {}, &t.token))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
}
