//! Email through an SMTP relay (lettre).

use super::{Delivery, Failure, Sent};

pub struct Mailer {}

impl Mailer {
    pub fn new(_cfg: &super::config::EmailConfig) -> anyhow::Result<Mailer> {
        Ok(Mailer {})
    }

    pub async fn send(&self, _d: &Delivery) -> Result<Sent, Failure> {
        Err(Failure::Permanent("email is not built yet".into()))
    }
}
