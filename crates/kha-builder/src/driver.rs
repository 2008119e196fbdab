//! The driver script: one POSIX sh script per job that runs its phases with
//! Travis's semantics, written to `<workspace>/.kha/run.sh`.
//!
//! Each command is echoed as `$ command` and run with `eval` in one shell,
//! so `cd` and exported variables carry over to later commands, as on
//! Travis. A failing `before_install`, `install` or `before_script` command
//! ends the job as errored; a failing `script` command marks it failed and
//! the remaining `script` commands still run; `after_success` or
//! `after_failure` follows, then `after_script`, and none of those change
//! the result. The script records its progress in `.kha/state` so the
//! builder can tell a job that never started (container trouble) from one
//! that ended abruptly (`exit` in a command).
//!
//! The repository's own hooks, `.kha/hooks/pre-command` and
//! `.kha/hooks/post-command`, run (if present and executable) before the
//! first phase and after the last, from the repository's root, with the
//! job's environment. A failing `pre-command` errors the job; a failing
//! `post-command` is only written to the log.
//!
//! Travis's shell functions (`travis_retry`, `travis_wait`, `travis_fold`,
//! `travis_time_start`/`_finish`, `travis_terminate`) and the variables
//! only the container knows come first (`crate::travis_sh`); the control
//! node's variables (`JobSpec.vars`) follow; `TRAVIS_TEST_RESULT` is set
//! after each `script` command.
//!
//! Untrusted values (branch names, commit ids) are single-quoted; commands
//! and `env` lines are the project's own shell code and run as such.

use kha_core::shell::quote as sh_quote;
use kha_core::spec::{SecureEnv, SECURE_ENV_REMOVED_NOTICE};
use kha_core::travis::Phases;

/// Exit codes of the driver.
pub const EXIT_PASSED: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_ERRORED: i32 = 2;

pub struct DriverInput<'a> {
    pub phases: &'a Phases,
    pub env: &'a [String],
    /// Fixed variables (name, value), exported before `env`.
    pub vars: &'a [(&'a str, String)],
    /// The job's locale (`crate::travis_sh::lang`), before `vars`.
    pub lang: &'a str,
    /// Shell lines after `vars` and before `env`: what the job got (image,
    /// toolchains) said in the log, and the toolchains activated.
    pub prelude: &'a str,
    /// What the job caches (`crate::cache::shell` unpacks it before
    /// `before_install` and packs it after `script`).
    pub cache: Option<&'a kha_core::cache::CacheSpec>,
    /// Whether the job may see encrypted variables.
    pub secure_env: SecureEnv,
    /// The decrypted variables, each exported after `position` of `env`.
    pub secure: &'a [SecureVar],
}

/// An encrypted variable, decrypted, as the grant brought it.
#[derive(Debug, Clone)]
pub struct SecureVar {
    pub name: String,
    pub value: kha_core::Secret,
    pub position: u32,
}

/// Exports of the secure variables at `position`: shown as Travis shows
/// them (`export NAME=[secure]`), the value the shell word its owner
/// encrypted, evaluated by the job's shell as travis-build's `export
/// NAME=value` is (so `$OTHER` in it expands, and quotes and escapes mean
/// what Travis's docs say; like the plain `env:` lines it is the project's
/// own shell code, run in the job's container). A name that is not a
/// variable name is left out.
fn export_secure(s: &mut String, secure: &[SecureVar], position: impl Fn(u32) -> bool) {
    for v in secure.iter().filter(|v| position(v.position)) {
        if !kha_core::travis::secure::is_var_name(&v.name) {
            continue;
        }
        s.push_str(&format!(
            "printf 'export %s=[secure]\\n' {n}\nexport {n}={}\n",
            v.value.expose(),
            n = v.name
        ));
    }
}

/// What the log masks of the secure variables: each value as written and
/// as the job prints it (quotes removed).
pub fn secure_mask_values(secure: &[SecureVar]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in secure {
        let raw = v.value.expose();
        for m in [raw.to_string(), kha_core::travis::secure::literal(raw)] {
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    out
}

pub fn script(input: &DriverInput<'_>) -> String {
    let mut s = String::from(
        "#!/bin/sh\n# Written by kha-builder: runs this job's phases.\ncd \"${0%/*}/..\" || exit 2\n_kha_ws=$PWD\n\
         kha_state() { printf '%s\\n' \"$1\" >> \"$_kha_ws/.kha/state\"; }\nkha_state started\n",
    );
    // Travis's functions and the variables only the container knows,
    // before the fixed variables so those (and `env`) can override them.
    s.push_str(crate::travis_sh::FUNCTIONS);
    s.push_str(crate::travis_sh::BUILDER_ENV);
    s.push_str(&crate::travis_sh::locale(input.lang));
    for (k, v) in input.vars {
        s.push_str(&format!("export {k}={}\n", sh_quote(v)));
    }
    s.push_str(input.prelude);
    // TRAVIS_SECURE_ENV_VARS is set by the builder, which alone knows
    // whether the grant brought any (travis-build: true only when the job
    // has encrypted variables and may see them).
    let any = input.secure_env == SecureEnv::Available && !input.secure.is_empty();
    s.push_str(&format!("export TRAVIS_SECURE_ENV_VARS={any}\n"));
    if input.secure_env == SecureEnv::Removed {
        s.push_str(&format!(
            "printf '%s\\n' {}\n",
            sh_quote(SECURE_ENV_REMOVED_NOTICE)
        ));
    }
    for (i, line) in input.env.iter().enumerate() {
        export_secure(&mut s, input.secure, |p| p as usize == i);
        s.push_str(&format!("export {line}\n"));
    }
    let n = input.env.len();
    export_secure(&mut s, input.secure, |p| p as usize >= n);
    s.push_str("kha_result=passed\n");
    s.push_str(REPO_HOOK);
    s.push_str("kha_hook pre-command || { kha_state 'result errored'; exit 2; }\n");
    let run = |s: &mut String, cmd: &str, on_fail: &str| {
        s.push_str(&format!(
            "printf '$ %s\\n' {q}\neval {q} || {{ {on_fail}; }}\n",
            q = sh_quote(cmd)
        ));
    };
    if let Some(c) = input.cache {
        s.push_str(&crate::cache::shell::restore(c));
    }
    for phase in ["before_install", "install", "before_script"] {
        for cmd in input.phases.get(phase).into_iter().flatten() {
            s.push_str(&format!("kha_state 'phase {phase}'\n"));
            run(&mut s, cmd, "kha_state 'result errored'; exit 2");
        }
    }
    s.push_str("kha_state 'phase script'\n");
    // Travis's TRAVIS_TEST_RESULT: after each `script` command, 1 once one
    // has failed, else 0; the `after_*` phases see the final value.
    for cmd in &input.phases.script {
        run(&mut s, cmd, "kha_result=failed");
        s.push_str(TEST_RESULT);
    }
    if input.phases.script.is_empty() {
        s.push_str(TEST_RESULT);
    }
    s.push_str("kha_state \"result $kha_result\"\n");
    if let Some(c) = input.cache {
        s.push_str(&crate::cache::shell::save(c, &run));
    }
    s.push_str("if [ \"$kha_result\" = passed ]; then\n  kha_state 'phase after_success'\n  :\n");
    for cmd in &input.phases.after_success {
        run(&mut s, cmd, ":");
    }
    s.push_str("else\n  kha_state 'phase after_failure'\n  :\n");
    for cmd in &input.phases.after_failure {
        run(&mut s, cmd, ":");
    }
    s.push_str("fi\nkha_state 'phase after_script'\n");
    for cmd in &input.phases.after_script {
        run(&mut s, cmd, ":");
    }
    s.push_str("kha_hook post-command || :\nkha_state done\n[ \"$kha_result\" = passed ] && exit 0\nexit 1\n");
    s
}

const TEST_RESULT: &str = "if [ \"$kha_result\" = passed ]; then TRAVIS_TEST_RESULT=0; else TRAVIS_TEST_RESULT=1; fi; export TRAVIS_TEST_RESULT\n";

/// `kha_hook NAME`: runs `.kha/hooks/NAME` if it is there and executable,
/// under a header line; returns its exit status.
const REPO_HOOK: &str = r#"kha_hook() {
  [ -x "$_kha_ws/.kha/hooks/$1" ] || return 0
  printf 'kha: running repository hook .kha/hooks/%s\n' "$1"
  kha_state "phase hook $1"
  (cd "$_kha_ws" && exec "./.kha/hooks/$1")
  _kha_rc=$?
  [ "$_kha_rc" = 0 ] || printf 'kha: repository hook .kha/hooks/%s failed (exit %s)\n' "$1" "$_kha_rc"
  return "$_kha_rc"
}
"#;

/// What the state file says about how far the driver got.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress {
    pub started: bool,
    /// The driver ran to its end.
    pub done: bool,
    pub phase: Option<String>,
    pub result: Option<String>,
    /// The resource limits the job ran into, as the container's cgroups
    /// counted them (lxc only; see the lxc executor's wrapper).
    pub limits: Vec<LimitHit>,
}

/// A limit a job ran into, from a `limit memory|pids COUNT LIMIT` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitHit {
    /// "memory" or "pids".
    pub kind: String,
    /// Processes killed for memory, or forks refused.
    pub count: u64,
    /// The limit as the cgroup gives it (bytes, a number, or "max").
    pub limit: String,
}

impl LimitHit {
    fn parse(line: &str) -> Option<LimitHit> {
        let mut w = line.strip_prefix("limit ")?.split(' ');
        let (kind, count, limit) = (w.next()?, w.next()?.parse().ok()?, w.next()?);
        Some(LimitHit {
            kind: kind.to_string(),
            count,
            limit: limit.to_string(),
        })
    }

    /// What a person reads in the job's message and log.
    pub fn describe(&self) -> String {
        let times = if self.count == 1 {
            "once".to_string()
        } else {
            format!("{} times", self.count)
        };
        match self.kind.as_str() {
            "memory" => {
                let limit = match self.limit.parse::<u64>() {
                    Ok(b) => format!("{} MiB", b >> 20),
                    Err(_) => self.limit.clone(),
                };
                format!("out of memory: the job reached its memory limit ({limit}) and the kernel killed one of its processes {times}")
            }
            "pids" => format!(
                "the job reached its process limit ({}): a fork was refused {times}",
                self.limit
            ),
            other => format!("the job reached its {other} limit ({}) {times}", self.limit),
        }
    }
}

pub fn read_progress(text: &str) -> Progress {
    let mut p = Progress::default();
    for line in text.lines() {
        if line == "started" {
            p.started = true;
        } else if line == "done" {
            p.done = true;
        } else if let Some(ph) = line.strip_prefix("phase ") {
            p.phase = Some(ph.to_string());
        } else if let Some(r) = line.strip_prefix("result ") {
            p.result = Some(r.to_string());
        } else if let Some(hit) = LimitHit::parse(line) {
            // Counted from outside at a stop and inside at the end: the
            // highest count of a kind is the latest.
            match p.limits.iter_mut().find(|h| h.kind == hit.kind) {
                Some(h) if h.count < hit.count => *h = hit,
                Some(_) => {}
                None => p.limits.push(hit),
            }
        }
    }
    p
}

/// The outcome a driver run comes to, from its exit code and progress.
pub fn outcome(code: Option<i32>, p: &Progress) -> (kha_core::JobOutcome, String) {
    use kha_core::JobOutcome::*;
    if !p.started {
        return (
            Infrastructure,
            format!(
                "the job did not start (exit {})",
                code.map_or("by signal".into(), |c| c.to_string())
            ),
        );
    }
    let from_result = |r: &str| match r {
        "passed" => Passed,
        "failed" => Failed,
        _ => Errored,
    };
    if p.done {
        let o = p.result.as_deref().map_or(Errored, from_result);
        let detail = match o {
            Passed => String::new(),
            Failed => "script failed".into(),
            _ => "setup failed".into(),
        };
        return (o, detail);
    }
    // The driver ended early: `exit` in a command, or killed.
    let code = code.map_or("a signal".to_string(), |c| format!("exit {c}"));
    match p.phase.as_deref() {
        Some("hook pre-command") => (
            Errored,
            "the repository hook .kha/hooks/pre-command failed".into(),
        ),
        Some("hook post-command") => (
            p.result.as_deref().map_or(Errored, from_result),
            format!("the repository hook .kha/hooks/post-command ended the job ({code})"),
        ),
        Some("before_install" | "install" | "before_script") | None => (
            Errored,
            format!(
                "{} ended the job ({code})",
                p.phase.as_deref().unwrap_or("setup")
            ),
        ),
        Some("script") => (Failed, format!("script ended the job ({code})")),
        Some(_) => (
            p.result.as_deref().map_or(Errored, from_result),
            format!("an after_* command ended the job ({code})"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn phases(f: impl FnOnce(&mut Phases)) -> Phases {
        let mut p = Phases::default();
        f(&mut p);
        p
    }

    /// Runs a driver in a temp workspace with the host's sh.
    fn run(p: &Phases, env: &[String]) -> (i32, String, Progress) {
        run_with_hooks(p, env, &[])
    }

    /// … with repository hooks (name, body; a body starting with `-` is
    /// written without the executable bit).
    fn run_with_hooks(
        p: &Phases,
        env: &[String],
        hooks: &[(&str, &str)],
    ) -> (i32, String, Progress) {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join(".kha/hooks")).unwrap();
        for (name, body) in hooks {
            let path = d.path().join(".kha/hooks").join(name);
            let (mode, body) = match body.strip_prefix('-') {
                Some(b) => (0o644, b),
                None => (0o755, *body),
            };
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let vars = [("TRAVIS_BRANCH", "it's; $(x)".to_string())];
        let text = script(&DriverInput {
            cache: None,
            prelude: "",
            lang: "C.UTF-8",
            phases: p,
            env,
            vars: &vars,
            secure_env: SecureEnv::Available,
            secure: &[],
        });
        std::fs::write(d.path().join(".kha/run.sh"), text).unwrap();
        let out = Command::new("/bin/sh")
            .arg(d.path().join(".kha/run.sh"))
            .output()
            .unwrap();
        let state = std::fs::read_to_string(d.path().join(".kha/state")).unwrap_or_default();
        let mut all = out.stdout;
        all.extend(out.stderr);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(all).unwrap(),
            read_progress(&state),
        )
    }

    #[test]
    fn secure_variables_in_place_evaluated_and_shown_as_secure() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join(".kha")).unwrap();
        let v = |name: &str, value: &str, position| SecureVar {
            name: name.into(),
            value: value.into(),
            position,
        };
        // Values as their owner wrote them after `NAME=`, evaluated by
        // the job's shell as on Travis.
        let secure = [
            v("TOKEN", r#"'it'\''s $(rm -rf x) `y`'"#, 0),
            v("REMOTE", "https://$TOKEN@h", 0),
            v("BAD-NAME", "x", 0),
            v("LAST", "z", 9),
        ];
        assert_eq!(
            secure_mask_values(&secure[..1]),
            [r#"'it'\''s $(rm -rf x) `y`'"#, "it's $(rm -rf x) `y`"]
        );
        let p = phases(|p| {
            p.script = vec![r#"echo "$URL $REMOTE $LAST $TRAVIS_SECURE_ENV_VARS""#.into()]
        });
        let env = ["URL=\"u:$TOKEN\"".to_string()];
        let text = script(&DriverInput {
            prelude: "",
            lang: "C.UTF-8",
            phases: &p,
            env: &env,
            vars: &[],
            secure_env: SecureEnv::Available,
            secure: &secure,
            cache: None,
        });
        std::fs::write(d.path().join(".kha/run.sh"), text).unwrap();
        let out = Command::new("/bin/sh")
            .arg(d.path().join(".kha/run.sh"))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "export TOKEN=[secure]\nexport REMOTE=[secure]\nexport LAST=[secure]\n$ echo \"$URL $REMOTE $LAST $TRAVIS_SECURE_ENV_VARS\"\nu:it's $(rm -rf x) `y` https://it's $(rm -rf x) `y`@h z true\n"
        );
        // A fork's pull request: the notice, and false.
        let text = script(&DriverInput {
            prelude: "",
            lang: "C.UTF-8",
            phases: &phases(|p| p.script = vec!["echo $TRAVIS_SECURE_ENV_VARS".into()]),
            env: &[],
            vars: &[],
            secure_env: SecureEnv::Removed,
            secure: &[],
            cache: None,
        });
        std::fs::write(d.path().join(".kha/run.sh"), text).unwrap();
        let out = Command::new("/bin/sh")
            .arg(d.path().join(".kha/run.sh"))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "Encrypted environment variables have been removed for security reasons.\n$ echo $TRAVIS_SECURE_ENV_VARS\nfalse\n"
        );
    }

    #[test]
    fn limits_reached_are_read_and_said() {
        let p = read_progress(
            "started\nphase script\nlimit pids 12 4096\nlimit memory 1 134217728\n\
             limit pids 40 4096\nlimit pids 30 4096\nlimit cpu x y\n",
        );
        let said: Vec<String> = p.limits.iter().map(LimitHit::describe).collect();
        assert_eq!(
            said,
            [
                "the job reached its process limit (4096): a fork was refused 40 times",
                "out of memory: the job reached its memory limit (128 MiB) and the kernel killed one of its processes once",
            ]
        );
        let max = read_progress("limit memory 2 max\n");
        assert!(max.limits[0].describe().contains("(max)"));
    }

    #[test]
    fn passing_job_echoes_commands() {
        let p = phases(|p| p.script = vec!["echo hello".into()]);
        let (code, out, prog) = run(&p, &[]);
        assert_eq!(code, EXIT_PASSED);
        assert_eq!(out, "$ echo hello\nhello\n");
        assert_eq!(prog.result.as_deref(), Some("passed"));
        assert!(prog.started && prog.done);
    }

    #[test]
    fn script_failure_fails_but_runs_the_rest() {
        let p = phases(|p| {
            p.script = vec!["false".into(), "echo still".into()];
            p.after_success = vec!["echo nope".into()];
            p.after_failure = vec!["echo after_failure".into()];
            p.after_script = vec!["echo after_script".into(), "false".into()];
        });
        let (code, out, _) = run(&p, &[]);
        assert_eq!(code, EXIT_FAILED);
        assert_eq!(out, "$ false\n$ echo still\nstill\n$ echo after_failure\nafter_failure\n$ echo after_script\nafter_script\n$ false\n");
    }

    #[test]
    fn install_failure_errors_and_stops() {
        let p = phases(|p| {
            p.install = vec!["exit 3".into()];
            p.script = vec!["echo never".into()];
        });
        let (code, out, prog) = run(&p, &[]);
        // `exit` in a command ends the driver itself: the state file says where.
        assert_eq!(code, 3);
        assert_eq!(prog.phase.as_deref(), Some("install"));
        assert!(!out.contains("never"));
        let p = phases(|p| {
            p.before_install = vec!["false".into()];
            p.script = vec!["echo never".into()];
        });
        let (code, out, prog) = run(&p, &[]);
        assert_eq!(code, EXIT_ERRORED);
        assert_eq!(out, "$ false\n");
        assert_eq!(prog.result.as_deref(), Some("errored"));
    }

    #[test]
    fn state_carries_over_and_values_are_quoted() {
        let p = phases(|p| {
            p.before_script = vec![
                "mkdir -p sub && cd sub".into(),
                "export X=from_before".into(),
            ];
            p.script = vec![
                "basename \"$PWD\"; echo $X $A \"$B\"".into(),
                "printf '%s\\n' \"$TRAVIS_BRANCH\"".into(),
            ];
        });
        let (code, out, _) = run(&p, &["A=1 B=\"two words\"".into()]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("\nsub\nfrom_before 1 two words\n"), "{out}");
        assert!(out.ends_with("it's; $(x)\n"), "{out}");
    }

    #[test]
    fn travis_functions_and_test_result_in_every_phase() {
        let p = phases(|p| {
            p.before_install = vec!["travis_retry true".into()];
            p.script = vec![
                "echo \"r=$TRAVIS_TEST_RESULT\"".into(),
                "false".into(),
                "echo \"r=$TRAVIS_TEST_RESULT\"".into(),
                "true".into(),
            ];
            p.after_failure = vec!["echo \"after r=$TRAVIS_TEST_RESULT\"".into()];
            p.after_script =
                vec!["travis_fold end x; echo \"$TRAVIS_BUILD_DIR\" | grep -c /".into()];
        });
        let (code, out, _) = run(&p, &[]);
        assert_eq!(code, EXIT_FAILED, "{out}");
        assert!(
            out.contains("$ echo \"r=$TRAVIS_TEST_RESULT\"\nr=\n$ false\n"),
            "{out}"
        );
        assert!(out.contains("r=1\n$ true\n"), "{out}");
        assert!(out.contains("\nafter r=1\n"), "{out}");
        assert!(out.ends_with("travis_fold:end:x\r\x1b[0K1\n"), "{out}");
    }

    #[test]
    fn travis_terminate_ends_the_job_with_its_result() {
        let p = phases(|p| {
            p.install = vec!["travis_terminate 0".into()];
            p.script = vec!["echo never".into()];
        });
        let (code, out, prog) = run(&p, &[]);
        assert_eq!(code, EXIT_PASSED);
        assert!(!out.contains("never"), "{out}");
        assert_eq!(outcome(Some(code), &prog).0, kha_core::JobOutcome::Passed);
        let p = phases(|p| p.script = vec!["travis_terminate 1".into(), "echo never".into()]);
        let (code, _, prog) = run(&p, &[]);
        assert_eq!(outcome(Some(code), &prog).0, kha_core::JobOutcome::Failed);
    }

    #[test]
    fn repository_hooks_run_around_the_phases() {
        let p = phases(|p| {
            p.before_install = vec!["mkdir -p sub && cd sub".into()];
            p.script = vec!["echo script".into(), "false".into()];
        });
        let hooks = [
            ("pre-command", "echo \"pre in $(basename \"$PWD\") $A\""),
            (
                "post-command",
                "echo \"post in $(basename \"$PWD\")\"; exit 4",
            ),
        ];
        let (code, out, prog) = run_with_hooks(&p, &["A=1".into()], &hooks);
        assert_eq!(code, EXIT_FAILED);
        let root = out
            .lines()
            .nth(1)
            .unwrap()
            .split(' ')
            .nth(2)
            .unwrap()
            .to_string();
        assert_eq!(
            out,
            format!(
                "kha: running repository hook .kha/hooks/pre-command\npre in {root} 1\n\
                 $ mkdir -p sub && cd sub\n$ echo script\nscript\n$ false\n\
                 kha: running repository hook .kha/hooks/post-command\npost in {root}\n\
                 kha: repository hook .kha/hooks/post-command failed (exit 4)\n"
            )
        );
        assert_eq!(outcome(Some(code), &prog).0, kha_core::JobOutcome::Failed);

        let hooks = [("pre-command", "echo no; exit 3")];
        let (code, out, prog) = run_with_hooks(&p, &[], &hooks);
        assert_eq!(code, EXIT_ERRORED);
        assert!(!out.contains("script"), "{out}");
        assert!(out.ends_with("kha: repository hook .kha/hooks/pre-command failed (exit 3)\n"));
        assert_eq!(
            outcome(Some(code), &prog),
            (
                kha_core::JobOutcome::Errored,
                "the repository hook .kha/hooks/pre-command failed".into()
            )
        );

        // Not executable: not a hook.
        let hooks = [("pre-command", "-echo never")];
        let (code, out, _) = run_with_hooks(&p, &[], &hooks);
        assert_eq!(code, EXIT_FAILED);
        assert!(!out.contains("never") && !out.contains("kha: "), "{out}");
    }
}
