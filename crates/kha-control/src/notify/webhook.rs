//! Webhooks: an HTTP POST of kha's JSON or Travis's `payload` form, signed.

use super::{Delivery, Failure, Sent};
use kha_core::Secret;

pub struct Webhooks {}

impl Webhooks {
    pub fn new(_cfg: &super::config::WebhooksConfig) -> anyhow::Result<Webhooks> {
        Ok(Webhooks {})
    }

    /// `secret`: the project's webhook secret, for the HMAC-SHA256 header.
    pub async fn send(&self, _d: &Delivery, _secret: &Secret) -> Result<Sent, Failure> {
        Err(Failure::Permanent("webhooks are not built yet".into()))
    }
}
