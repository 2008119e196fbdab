//! Builder labels (`os=linux`, `arch=x86_64`, `image=default`, …) and job
//! requirements. A job runs only on a builder that has every label it
//! requires with exactly the same value. A builder may offer several values
//! of one key (`python=3.11` and `python=3.12`, kept as `python=3.11,3.12`):
//! any of them matches.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Labels(pub BTreeMap<String, String>);

impl Labels {
    /// Parses `key=value` items; a bare `key` means `key=true`.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut m: BTreeMap<String, String> = BTreeMap::new();
        for item in items {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (k, v) = item.split_once('=').unwrap_or((item, "true"));
            let k = k.trim();
            if k.is_empty()
                || !k
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
            {
                return Err(format!(
                    "label {item:?}: a key is letters, digits, '-', '_', '.' or '/'"
                ));
            }
            let v = v.trim().to_string();
            match m.get_mut(k) {
                Some(old) if !Labels::values(old).any(|x| x == v) => {
                    let joined = format!("{old},{v}");
                    *old = joined;
                }
                Some(_) => {}
                None => {
                    m.insert(k.to_string(), v);
                }
            }
        }
        Ok(Labels(m))
    }

    pub fn insert(&mut self, k: impl Into<String>, v: impl Into<String>) {
        self.0.insert(k.into(), v.into());
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    fn values(v: &str) -> impl Iterator<Item = &str> {
        v.split(',').map(str::trim)
    }

    fn offers(&self, k: &str, v: &str) -> bool {
        self.0
            .get(k)
            .is_some_and(|have| have == v || Labels::values(have).any(|x| x == v))
    }

    /// Does a builder with these labels satisfy `required`?
    pub fn satisfies(&self, required: &Labels) -> bool {
        required.0.iter().all(|(k, v)| self.offers(k, v))
    }

    /// The requirements a builder with these labels lacks, for "why is this
    /// job not running" answers.
    pub fn missing<'a>(&self, required: &'a Labels) -> Vec<(&'a str, &'a str)> {
        required
            .0
            .iter()
            .filter(|(k, v)| !self.offers(k, v))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vec().join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let builder = Labels::parse(["os=linux", "arch=x86_64", "image=default", "gpu"]).unwrap();
        let table = [
            (vec![], true),
            (vec!["os=linux"], true),
            (vec!["os=linux", "gpu=true"], true),
            (vec!["os=osx"], false),
            (vec!["arch=arm64", "os=linux"], false),
            (vec!["image=erlang-26"], false),
        ];
        for (req, ok) in table {
            let req = Labels::parse(req.iter().copied()).unwrap();
            assert_eq!(builder.satisfies(&req), ok, "{req}");
            assert_eq!(builder.missing(&req).is_empty(), ok);
        }
    }

    #[test]
    fn several_values_of_one_key() {
        let builder =
            Labels::parse(["python=3.11", "python=3.12", "python=3.11", "os=linux"]).unwrap();
        assert_eq!(builder.get("python"), Some("3.11,3.12"));
        for (v, ok) in [
            ("3.11", true),
            ("3.12", true),
            ("3.1", false),
            ("3.11,3.12", true),
        ] {
            let req = Labels::parse([format!("python={v}").as_str()]).unwrap();
            assert_eq!(builder.satisfies(&req), ok, "{v}");
        }
    }

    #[test]
    fn bad_labels() {
        assert!(Labels::parse(["=x"]).is_err());
        assert!(Labels::parse(["a b=c"]).is_err());
        assert_eq!(Labels::parse([" a = b ", ""]).unwrap().get("a"), Some("b"));
    }
}
