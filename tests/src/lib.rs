//! Helpers for kha's end-to-end tests: start the real `kha-control`,
//! `kha-builder` and `kha` binaries as separate processes on loopback, each
//! test in its own temp dir with ports its processes bind themselves, and
//! clean up processes and containers even when a test fails.
//!
//! A test starts with a [`Fixture`] (the running cluster it needs), makes
//! [`Repo`]s, serves them with a [`GitDaemon`] or [`GitHttp`] when a URL
//! must be remote, and posts webhooks with [`http_post`]. GitHub sign-in
//! talks to a [`GithubStub`]. The web UI's tests drive a real headless
//! chromium with a [`Browser`]. Notifications go to real servers on
//! loopback ([`servers`]). Subversion repositories are [`SvnRepo`]s, served
//! by `file://` or an [`Svnserve`].

mod browser;
mod certs;
mod cluster;
mod cvs_repo;
mod fault_proxy;
mod fixture;
mod git_server;
mod github_stub;
mod http;
mod lxc;
mod netns;
mod process;
mod prom;
mod repo;
pub mod servers;
mod svn_server;
mod toolchains;

pub use browser::{browser_available, require_browser, Browser, BrowserOpts, Tab};
pub use certs::make_certificates;
pub use cluster::{free_bytes, Builder, Cluster};
pub use cvs_repo::CvsRepo;
pub use fault_proxy::FaultProxy;
pub use fixture::Fixture;
pub use git_server::{GitDaemon, GitHttp};
pub use github_stub::{GithubStub, Seen, StubEmail, StubStatus, StubUser};
pub use http::{github_fixture, github_signature, http_get, http_post, http_request, Response};
pub use lxc::{lxc_available, require_lxc};
pub use netns::{ip, listen_in, nft_in, Netns};
pub use nix::sys::signal::Signal;
pub use process::{bin, test_dir, wait_for, Proc};
pub use prom::{parse_openmetrics, sample, Sample};
pub use repo::Repo;
pub use svn_server::{SvnRepo, Svnserve};
pub use toolchains::{
    host_rust_toolchain, link_rust_toolchain, link_test_image, make_kerl_installation,
    test_images_dir, TEST_IMAGES,
};
