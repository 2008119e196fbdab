use super::decrypt::DecryptError;
use super::*;
use base64::Engine;
use kha_core::travis::secure::env_line;
use openssl::rsa::{Padding, Rsa};
use std::os::unix::fs::PermissionsExt;

fn encrypt(pem: &str, plain: &str) -> String {
    let public = Rsa::public_key_from_pem(pem.as_bytes()).unwrap();
    let mut out = vec![0u8; public.size() as usize];
    let n = public
        .public_encrypt(plain.as_bytes(), &mut out, Padding::PKCS1)
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(&out[..n])
}

#[test]
fn key_made_once_private_and_4096() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyStore::new(dir.path());
    assert!(keys.private("p").unwrap().is_none());
    let a = keys.public("p").unwrap();
    let b = keys.public("p").unwrap();
    assert_eq!(a, b);
    assert!(a.pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{}", a.pem);
    assert_eq!(a.fingerprint.len(), 47);
    let k = keys.private("p").unwrap().unwrap();
    assert_eq!(k.size() * 8, 4096);
    let file = dir.path().join("secrets/keys/p.pem");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let mode = std::fs::metadata(file.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    // Round trip with the public key as others get it.
    let c = encrypt(&a.pem, "TOKEN=s3cret");
    assert_eq!(decrypt(&k, &c).unwrap().expose(), "TOKEN=s3cret");
    keys.remove("p").unwrap();
    assert!(keys.private("p").unwrap().is_none());
}

/// A value encrypted as Travis's CLI does it (Ruby's `public_encrypt`,
/// PKCS#1 v1.5), here by the `openssl` command, then Base64 folded over
/// lines as a YAML file may carry it.
#[test]
fn decrypts_what_the_openssl_command_encrypted() {
    let Ok(_) = std::process::Command::new("openssl")
        .arg("version")
        .output()
    else {
        panic!("the openssl command is needed for this test (apt-get install openssl)");
    };
    let dir = tempfile::tempdir().unwrap();
    let key = Rsa::generate(2048).unwrap();
    let pub_pem = dir.path().join("pub.pem");
    std::fs::write(&pub_pem, key.public_key_to_pem().unwrap()).unwrap();
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "A=\"two words\" B=x$y").unwrap();
    let out = std::process::Command::new("openssl")
        .args(["pkeyutl", "-encrypt", "-pubin", "-inkey"])
        .arg(&pub_pem)
        .args(["-pkeyopt", "rsa_padding_mode:pkcs1", "-in"])
        .arg(&plain)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(&out.stdout);
    let folded = format!("{}\n  {}", &b64[..40], &b64[40..]);
    let s = job_secrets(&["X=1".into(), env_line(&folded)], Some(&key));
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert_eq!(s.env, ["X=1"]);
    let got: Vec<(&str, &str, u32)> = s
        .vars
        .iter()
        .map(|v| (v.name.as_str(), v.value.expose(), v.position))
        .collect();
    // As written: the job's shell evaluates them (as on Travis).
    assert_eq!(got, [("A", "\"two words\"", 1), ("B", "x$y", 1)]);
}

#[test]
fn bad_values_are_left_out_with_a_reason() {
    let key = Rsa::generate(2048).unwrap();
    let other = Rsa::generate(2048).unwrap();
    let pem = String::from_utf8(key.public_key_to_pem().unwrap()).unwrap();
    let other_pem = String::from_utf8(other.public_key_to_pem().unwrap()).unwrap();
    assert_eq!(decrypt(&key, "not base64!"), Err(DecryptError::Base64));
    assert_eq!(
        decrypt(&key, &encrypt(&other_pem, "A=1")),
        Err(DecryptError::Rsa)
    );
    let lines = vec![
        env_line(&encrypt(&pem, "A=1")),
        "P=2".to_string(),
        env_line(&encrypt(&other_pem, "B=1")),
        env_line(&encrypt(&pem, "no assignment")),
        env_line(&encrypt(&pem, "C=3")),
    ];
    let s = job_secrets(&lines, Some(&key));
    assert_eq!(s.entries, 4);
    assert_eq!(s.env, ["P=2"]);
    let names: Vec<(&str, u32)> = s
        .vars
        .iter()
        .map(|v| (v.name.as_str(), v.position))
        .collect();
    assert_eq!(names, [("A", 0), ("C", 1)]);
    assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
    assert!(s.warnings[0].contains("variable 2"), "{}", s.warnings[0]);
    // Without a key (a fork's pull request): nothing is decrypted.
    let s = job_secrets(&lines, None);
    assert_eq!((s.entries, s.vars.len(), s.warnings.len()), (4, 0, 0));
    // `NAME: {secure: "…"}`: the plaintext is the value alone, spaces
    // and `=` included.
    let named = vec![kha_core::travis::secure::named_env_line(
        "TOKEN",
        &encrypt(&pem, "a b=c"),
    )];
    let s = job_secrets(&named, Some(&key));
    assert_eq!(s.vars.len(), 1, "{:?}", s.warnings);
    assert_eq!(
        (s.vars[0].name.as_str(), s.vars[0].value.expose()),
        ("TOKEN", "a b=c")
    );
    // Never printed.
    let s = job_secrets(&lines[..1], Some(&key));
    assert!(!format!("{:?}", s.vars).contains("A=1"));
}
