//! The gRPC services: one for builders, one for admins (the `kha` CLI).

pub mod admin;
pub mod agent;
pub mod incoming;
