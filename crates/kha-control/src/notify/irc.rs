//! IRC: a short-lived connection per message, as Travis's notifier does.

use super::{Delivery, Failure, Sent};

pub struct Irc {}

impl Irc {
    pub fn new(_cfg: &super::config::IrcConfig) -> Irc {
        Irc {}
    }

    pub async fn send(&self, _d: &Delivery) -> Result<Sent, Failure> {
        Err(Failure::Permanent("irc is not built yet".into()))
    }
}
