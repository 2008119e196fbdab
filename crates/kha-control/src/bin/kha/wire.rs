//! The control node's answers read into kha-core's views, at the edge: the
//! one place the CLI decodes the wire. Commands decide on kha-core's types
//! (`BuildState::is_final`, …) and print the views, so `--json` shows each
//! concept in the one shape the service layer and HTTP API use.

use crate::Failure;
use kha_core::view;
use kha_proto::admin as w;

fn bad(e: kha_proto::views::WireError) -> Failure {
    Failure(1, e.to_string())
}

pub fn project(p: w::Project) -> view::Project {
    p.into()
}

pub fn build(b: w::Build) -> Result<view::Build, Failure> {
    b.try_into().map_err(bad)
}

pub fn builds(bs: Vec<w::Build>) -> Result<Vec<view::Build>, Failure> {
    bs.into_iter().map(build).collect()
}

pub fn branch(b: w::Branch) -> Result<view::Branch, Failure> {
    b.try_into().map_err(bad)
}

pub fn builder(b: w::Builder) -> Result<view::Builder, Failure> {
    b.try_into().map_err(bad)
}

pub fn token(t: w::EnrolmentToken) -> view::EnrolmentToken {
    t.into()
}

/// A job's state as a log stream's last message reports it; `None` when
/// absent (the stream ended early) or unknown to this CLI.
pub fn job_state(d: &w::LogData) -> Option<kha_core::JobState> {
    d.state().try_into().ok()
}
