//! `kha lint [FILE] [--expand]`: checks a `.travis.yml` with kha-core's
//! reader, no control node needed. Exit 1 when the file has errors.

use crate::output::{self, print_json};
use crate::Failure;
use std::io::Read;
use std::path::Path;

pub fn run(file: &Path, expand: bool, as_json: bool) -> Result<u8, Failure> {
    let mut text = String::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(file).map(|t| text = t)
    };
    read.map_err(|e| Failure(2, format!("reading {}: {e}", file.display())))?;
    let r = kha_core::travis::lint(&text);
    if as_json {
        print_json(&output::lint(&r));
    } else if expand {
        out!("{}", r.render().trim_end());
    } else {
        for e in &r.errors {
            out!("{}: error: {e}", file.display());
        }
        for w in &r.warnings {
            out!("{}: warning: {w}", file.display());
        }
        if r.is_ok() {
            let n = r.jobs.len();
            out!(
                "{}: ok, {n} job{} ({} warning{}); --expand lists them",
                file.display(),
                if n == 1 { "" } else { "s" },
                r.warnings.len(),
                if r.warnings.len() == 1 { "" } else { "s" }
            );
        }
    }
    Ok(if r.is_ok() { 0 } else { 1 })
}
