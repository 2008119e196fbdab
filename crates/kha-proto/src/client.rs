//! What every gRPC client of kha attaches to its calls: the bearer token,
//! as `authorization: Bearer <token>` metadata, through one tonic
//! interceptor instead of a header inserted by hand at each call (or
//! nothing, for a CLI that has no token: its calls are anonymous).

use std::fmt;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;

/// A channel whose every call carries a bearer token.
pub type AuthChannel = InterceptedService<Channel, BearerAuth>;

/// Adds `authorization: Bearer <token>` to every request (nothing when
/// made with [`BearerAuth::anonymous`]). Cheap to clone (the value is
/// shared); its `Debug` never shows the token.
#[derive(Clone)]
pub struct BearerAuth {
    value: Option<AsciiMetadataValue>,
}

/// The token cannot be sent as metadata (it holds characters other than
/// visible ASCII).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidToken;

impl fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the token holds characters that cannot be sent in a header (only visible ASCII, spaces and tabs can)",
        )
    }
}

impl std::error::Error for InvalidToken {}

impl BearerAuth {
    pub fn new(token: &str) -> Result<BearerAuth, InvalidToken> {
        // Metadata parsing lets bytes past ASCII through; a token never has
        // them, and the server would read them differently.
        if !token
            .bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            return Err(InvalidToken);
        }
        let mut value: AsciiMetadataValue = format!("Bearer {token}")
            .parse()
            .map_err(|_| InvalidToken)?;
        // Kept out of HPACK's dynamic table and of h2's debug output.
        value.set_sensitive(true);
        Ok(BearerAuth { value: Some(value) })
    }

    /// No token: the control node treats the calls as anyone's.
    pub fn anonymous() -> BearerAuth {
        BearerAuth { value: None }
    }

    /// `channel` with this token on every call.
    pub fn channel(self, channel: Channel) -> AuthChannel {
        InterceptedService::new(channel, self)
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.value {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

impl fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerAuth(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attaches_the_token() {
        let mut auth = BearerAuth::new("b-1:s3cret").unwrap();
        let req = auth.call(tonic::Request::new(())).unwrap();
        assert_eq!(
            req.metadata().get("authorization").unwrap(),
            "Bearer b-1:s3cret"
        );
        // A second call replaces, never appends.
        let req = auth.call(req).unwrap();
        assert_eq!(req.metadata().get_all("authorization").iter().count(), 1);
        assert_eq!(format!("{auth:?}"), "BearerAuth(<redacted>)");
        let req = BearerAuth::anonymous()
            .call(tonic::Request::new(()))
            .unwrap();
        assert!(req.metadata().get("authorization").is_none());
    }

    #[test]
    fn refuses_what_a_header_cannot_carry() {
        for bad in ["a\nb", "cr\r", "ünï"] {
            assert_eq!(BearerAuth::new(bad).err(), Some(InvalidToken), "{bad:?}");
        }
    }
}
