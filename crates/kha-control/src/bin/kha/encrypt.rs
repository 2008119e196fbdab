//! `kha encrypt PROJECT 'NAME=value'`: encrypts locally with the project's
//! public key, as Travis's CLI does (PKCS#1 v1.5, Base64 without
//! whitespace), and prints the `secure:` line to paste in `.travis.yml`.
//! The value never goes to the control node.

use crate::{Ctx, Failure};
use base64::Engine;
use kha_proto::admin::GetProjectKeyRequest;
use openssl::rsa::{Padding, Rsa};

pub async fn run(ctx: &mut Ctx, project: String, value: String) -> Result<u8, Failure> {
    if kha_core::travis::secure::parse_assignments(&value).is_err() {
        eprintln!("kha: warning: {value:?} is not NAME=value; as an env entry it will be left out");
    }
    let r = ctx.req(GetProjectKeyRequest { project });
    let key = ctx.client.get_project_key(r).await?.into_inner();
    let public = Rsa::public_key_from_pem(key.key.as_bytes())
        .map_err(|e| Failure(1, format!("the project's key is not a PEM RSA key: {e}")))?;
    let max = public.size() as usize - 11;
    if value.len() > max {
        return Err(Failure(1, format!(
            "the value is {} bytes; at most {max} fit (encrypt a file with a key kept as a secret instead)",
            value.len()
        )));
    }
    let mut out = vec![0u8; public.size() as usize];
    let n = public
        .public_encrypt(value.as_bytes(), &mut out, Padding::PKCS1)
        .map_err(|e| Failure(1, format!("encrypting: {e}")))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&out[..n]);
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({ "secure": b64, "fingerprint": key.fingerprint })
        );
    } else {
        println!("secure: \"{b64}\"");
    }
    Ok(0)
}
