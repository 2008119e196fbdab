//! kha's wire protocol: the code generated from `proto/` and the conversions
//! between wire and `kha-core` types. Prost types appear only here and at the
//! gRPC service edges.

#![allow(clippy::all)]

pub mod agent {
    tonic::include_proto!("kha.agent.v1");
}

pub mod admin {
    tonic::include_proto!("kha.admin.v1");
}

pub mod convert;

pub use kha_core::limits::MAX_MESSAGE_BYTES;
