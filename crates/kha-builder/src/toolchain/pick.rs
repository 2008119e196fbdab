//! Which image a job runs in and which toolchains it gets: a pure decision
//! from the job's requirements and this builder's [`Inventory`], tested
//! by a table.
//!
//! - `image=NAME` (the control node always sends it; the spec's image
//!   otherwise) names the image, but `image=default` means "the builder's
//!   choice, `default` first": a job that needs `arch=aarch64` or
//!   `otp_release=27`, which the default image lacks, runs in an image
//!   that has them. Left to choose, the builder never runs a job that
//!   asked for no `arch` in an emulated image.
//! - Every requirement whose key a toolchain answers (`otp_release`,
//!   `rust`) must be met inside that one image: by a host toolchain when
//!   the image is of the host's architecture (host toolchains are what the
//!   builder's owner installed for CI, as Travis activated
//!   `$HOME/otp/<release>`), else by the image's own.
//! - Other keys (`os`, `executor`, the owner's own labels) are the
//!   builder's, and the control node matched them already.

use super::{Arch, Image, Inventory, Toolchain};
use kha_core::spec::DEFAULT_IMAGE;

/// What a job gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub image: String,
    pub arch: Arch,
    /// Host toolchains to mount and activate, in the order asked.
    pub activate: Vec<Toolchain>,
    /// The image's own toolchains that met a requirement.
    pub inside: Vec<Toolchain>,
}

/// The image and toolchains for a job requiring `requires` (`key=value`
/// items) whose spec names `spec_image`, or why no image here fits, in
/// one line.
pub fn pick(inv: &Inventory, requires: &[String], spec_image: &str) -> Result<Choice, String> {
    let reqs: Vec<(&str, &str)> = requires
        .iter()
        .filter_map(|r| r.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let wanted = reqs
        .iter()
        .find(|(k, _)| *k == "image")
        .map(|(_, v)| *v)
        .filter(|v| !v.is_empty())
        .unwrap_or(if spec_image.is_empty() {
            DEFAULT_IMAGE
        } else {
            spec_image
        });
    let arch = reqs.iter().find(|(k, _)| *k == "arch").map(|(_, v)| *v);
    let keys = inv.toolchain_keys();
    let given = kha_core::Labels::parse(inv.given.iter().map(String::as_str)).unwrap_or_default();
    let tools: Vec<(&str, &str)> = reqs
        .iter()
        .copied()
        .filter(|(k, v)| keys.contains(k) && !given.satisfies(&one(k, v)))
        .collect();

    let builders_choice = wanted == DEFAULT_IMAGE;
    let mut candidates: Vec<&Image> = inv
        .images
        .iter()
        .filter(|i| builders_choice || i.name == wanted)
        .collect();
    candidates.sort_by_key(|i| (i.name != DEFAULT_IMAGE, i.name.clone()));
    if candidates.is_empty() {
        return Err(if builders_choice {
            "no image on this builder (create one with `kha-builder image create`)".into()
        } else {
            format!("no image {wanted} on this builder")
        });
    }
    let mut why = Vec::new();
    for image in &candidates {
        match fits(inv, image, arch, &tools, builders_choice) {
            Ok(c) => return Ok(c),
            Err(e) => why.push(e),
        }
    }
    if why.len() == 1 {
        return Err(why.remove(0));
    }
    let asked: Vec<String> = arch
        .map(|a| format!("arch={a}"))
        .into_iter()
        .chain(tools.iter().map(|(k, v)| format!("{k}={v}")))
        .collect();
    Err(format!(
        "no single image here has {}: {}",
        asked.join(" and "),
        why.join("; ")
    ))
}

fn one(k: &str, v: &str) -> kha_core::Labels {
    let mut l = kha_core::Labels::default();
    l.insert(k, v);
    l
}

/// Does `image` fit, and with which toolchains?
fn fits(
    inv: &Inventory,
    image: &Image,
    arch: Option<&str>,
    tools: &[(&str, &str)],
    builders_choice: bool,
) -> Result<Choice, String> {
    let name = &image.name;
    if let Some(why) = &image.unusable {
        return Err(format!("image {name}: {why}"));
    }
    match arch {
        Some(a) if a != image.arch.label => {
            return Err(format!("image {name} is arch={}", image.arch.label))
        }
        None if builders_choice && !image.arch.is_native() => {
            return Err(format!(
                "image {name} is emulated (arch={})",
                image.arch.label
            ))
        }
        _ => {}
    }
    let mut choice = Choice {
        image: name.clone(),
        arch: image.arch,
        activate: vec![],
        inside: vec![],
    };
    for (k, v) in tools {
        let host = image
            .arch
            .is_native()
            .then(|| inv.host.iter().find(|t| t.offers(k, v)));
        if let Some(Some(t)) = host {
            choice.activate.push(t.clone());
        } else if let Some(t) = image.toolchains.iter().find(|t| t.offers(k, v)) {
            choice.inside.push(t.clone());
        } else {
            return Err(format!("image {name} has no {k}={v}"));
        }
    }
    Ok(choice)
}

#[cfg(test)]
mod tests {
    use super::super::{version_values, Kind, OTP_KEY, RUST_KEY};
    use super::*;
    use std::path::PathBuf;

    fn tc(kind: Kind, key: &'static str, name: &str, version: &str) -> Toolchain {
        let mut values = if key == OTP_KEY {
            version_values(version)
        } else {
            vec![name.into(), version.into()]
        };
        values.dedup();
        Toolchain {
            kind,
            name: name.into(),
            version: version.into(),
            path: PathBuf::from(format!("/t/{name}")),
            key,
            values,
        }
    }

    fn image(name: &str, arch: &str, tools: Vec<Toolchain>, unusable: Option<&str>) -> Image {
        Image {
            name: name.into(),
            about: String::new(),
            arch: Arch::find(arch).unwrap(),
            unusable: unusable.map(Into::into),
            toolchains: tools,
        }
    }

    /// Which image, which host toolchains activated, which found inside;
    /// or the reason.
    type Want<'a> = Result<(&'a str, &'a [&'a str], &'a [&'a str]), &'a str>;

    #[test]
    fn table() {
        let native = Arch::native().unwrap().debian;
        let foreign = if native == "arm64" { "amd64" } else { "arm64" };
        let (nl, fl) = (
            Arch::find(native).unwrap().label,
            Arch::find(foreign).unwrap().label,
        );
        let inv = Inventory {
            images: vec![
                image(
                    "default",
                    native,
                    vec![tc(Kind::Image, OTP_KEY, "debian", "25.2.3")],
                    None,
                ),
                image(
                    "trixie",
                    native,
                    vec![tc(Kind::Image, OTP_KEY, "debian", "27.3.4")],
                    None,
                ),
                image(
                    "arm",
                    foreign,
                    vec![tc(Kind::Image, OTP_KEY, "debian", "25.2.3")],
                    None,
                ),
                image(
                    "broken",
                    foreign,
                    vec![],
                    Some("no binfmt handler for qemu"),
                ),
            ],
            host: vec![
                tc(Kind::Kerl, OTP_KEY, "25.2.3", "25.2.3"),
                tc(Kind::Rustup, RUST_KEY, "stable", "1.95.0"),
            ],
            given: vec!["otp_release=26.0".into(), "python=3.12".into()],
        };
        let a_native = format!("arch={nl}");
        let a_foreign = format!("arch={fl}");
        let no_both = format!(
            "no single image here has {a_foreign} and rust=stable: image default is arch={nl}; \
             image arm has no rust=stable; image broken: no binfmt handler for qemu; image trixie is arch={nl}"
        );
        let cases: Vec<(Vec<&str>, &str, Want)> = vec![
            // Nothing asked: the default image.
            (
                vec!["os=linux", "image=default"],
                "",
                Ok(("default", &[], &[])),
            ),
            (vec![], "", Ok(("default", &[], &[]))),
            // A host toolchain first, even where the image has its own.
            (
                vec!["image=default", "otp_release=25"],
                "",
                Ok(("default", &["25.2.3"], &[])),
            ),
            (
                vec!["otp_release=25.2.3", "rust=stable"],
                "",
                Ok(("default", &["25.2.3", "stable"], &[])),
            ),
            (vec!["rust=1.95.0"], "", Ok(("default", &["stable"], &[]))),
            // What the default image lacks, another image has.
            (
                vec!["image=default", "otp_release=27"],
                "",
                Ok(("trixie", &[], &["debian"])),
            ),
            (
                vec!["otp_release=27", "rust=stable"],
                "",
                Ok(("trixie", &["stable"], &["debian"])),
            ),
            // Another arch: only in its image, with its own toolchains.
            (
                vec!["image=default", a_foreign.as_str()],
                "",
                Ok(("arm", &[], &[])),
            ),
            (
                vec![a_foreign.as_str(), "otp_release=25"],
                "",
                Ok(("arm", &[], &["debian"])),
            ),
            (vec![a_native.as_str()], "", Ok(("default", &[], &[]))),
            // A named image is that image, emulated or not.
            (vec!["image=arm"], "", Ok(("arm", &[], &[]))),
            (
                vec!["image=trixie", "otp_release=25"],
                "",
                Ok(("trixie", &["25.2.3"], &[])),
            ),
            (vec![], "trixie", Ok(("trixie", &[], &[]))),
            (vec!["image=trixie"], "arm", Ok(("trixie", &[], &[]))),
            // What the owner promised by hand needs nothing from an image.
            (vec!["otp_release=26.0"], "", Ok(("default", &[], &[]))),
            (
                vec!["otp_release=26.0", "rust=stable", "python=3.12"],
                "",
                Ok(("default", &["stable"], &[])),
            ),
            // Unknown keys are the builder's, not the image's.
            (
                vec!["executor=lxc", "gpu=yes"],
                "",
                Ok(("default", &[], &[])),
            ),
            // Why not.
            (
                vec!["image=trixie", "otp_release=26"],
                "",
                Err("image trixie has no otp_release=26"),
            ),
            (vec!["image=nope"], "", Err("no image nope on this builder")),
            (
                vec!["image=broken"],
                "",
                Err("image broken: no binfmt handler for qemu"),
            ),
            (
                vec!["image=arm", "rust=stable"],
                "",
                Err("image arm has no rust=stable"),
            ),
            (
                vec![a_foreign.as_str(), "rust=stable"],
                "",
                Err(no_both.as_str()),
            ),
        ];
        for (requires, spec_image, want) in cases {
            let requires: Vec<String> = requires.iter().map(|s| s.to_string()).collect();
            let got = pick(&inv, &requires, spec_image);
            let got = match &got {
                Ok(c) => Ok((
                    c.image.as_str(),
                    c.activate
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>(),
                    c.inside.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
                )),
                Err(e) => Err(e.as_str()),
            };
            let want = want.map(|(i, a, n)| (i, a.to_vec(), n.to_vec()));
            assert_eq!(got, want, "{requires:?} {spec_image:?}");
        }
        let empty = Inventory::default();
        assert_eq!(
            pick(&empty, &[], "").unwrap_err(),
            "no image on this builder (create one with `kha-builder image create`)"
        );
    }
}
