//! Real servers the notification tests talk to, each on loopback in its
//! own temp dir, stopped when dropped.

pub mod ngircd;
pub mod receiver;
