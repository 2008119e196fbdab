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

pub mod client;
pub mod codec;
pub mod convert;
pub mod users;
pub mod views;

pub use kha_core::limits::MAX_MESSAGE_BYTES;

/// An endpoint for a control node address (`host:port`, `http://…` or
/// `https://…`). `https` verifies the server against the system's roots,
/// plus `ca` (a PEM file) when given.
pub fn endpoint(
    addr: &str,
    ca: Option<&std::path::Path>,
) -> Result<tonic::transport::Endpoint, String> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let url = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let mut ep = Endpoint::from_shared(url.clone())
        .map_err(|e| format!("bad control node address {url:?}: {e}"))?;
    if url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).map_err(|e| format!("reading {}: {e}", ca.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        ep = ep.tls_config(tls).map_err(|e| format!("TLS setup: {e}"))?;
    } else if ca.is_some() {
        return Err(format!("--ca is for https:// addresses, not {url}"));
    }
    Ok(ep)
}
