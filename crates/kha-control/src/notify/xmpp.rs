//! XMPP messages to JIDs and multi-user chat rooms (tokio-xmpp).

use super::{Delivery, Failure, Sent};

pub struct Xmpp {}

impl Xmpp {
    pub fn new(_cfg: &super::config::XmppConfig) -> anyhow::Result<Xmpp> {
        Ok(Xmpp {})
    }

    pub async fn send(&self, _d: &Delivery) -> Result<Sent, Failure> {
        Err(Failure::Permanent("xmpp is not built yet".into()))
    }
}
