//! Running one hook or plugin executable: JSON on its stdin, `KHA_*`
//! variables in a small clean environment, a process group of its own that
//! is killed whole at the timeout (and whatever is left of it once the
//! executable exits), and its output kept up to a bound.
//!
//! Hooks (`hooks.rs`) and plugins (`plugin.rs`) differ only in what they
//! are given and how their end is read; this module is the part they share.
//!
//! The future may be dropped at any point (the outbox bounds every attempt
//! with its own timeout): the process group is then killed all the same.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::pin::pin;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Output kept of each stream by default: 64 KiB.
pub const KEEP_BYTES: usize = 64 * 1024;

/// How long output may still arrive after the executable has exited (from
/// a process that left its process group and holds the pipe open).
const DRAIN: Duration = Duration::from_secs(2);

/// Variables of the control node's own environment an executable is given;
/// every other one is left out (the control node's settings are not the
/// hook's business), and `KHA_*` ones come from the event.
const PASSED_THROUGH: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One run of an executable.
#[derive(Debug, Clone)]
pub struct Exec {
    pub program: PathBuf,
    /// Written to its stdin, which is then closed (an executable that does
    /// not read it is fine).
    pub stdin: Vec<u8>,
    /// Added to the passed-through environment.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// stdout and stderr into one stream, in the order they were written
    /// (a hook's output, read by people); otherwise apart (a plugin answers
    /// on stdout and explains on stderr).
    pub merge: bool,
    /// Bytes kept of each stream.
    pub keep: usize,
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Exited(i32),
    /// Killed by a signal it was not sent by us.
    Signaled(i32),
    /// Still running at the timeout: its process group was killed.
    TimedOut,
}

#[derive(Debug)]
pub struct Output {
    pub end: End,
    /// With `merge`, all of the output.
    pub stdout: Kept,
    pub stderr: Kept,
}

/// Why an executable could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot run {program}: {source}")]
pub struct StartError {
    pub program: String,
    pub source: std::io::Error,
}

impl Exec {
    /// Runs it to its end (or its timeout).
    pub async fn run(&self) -> Result<Output, StartError> {
        let start_error = |source| StartError {
            program: self.program.display().to_string(),
            source,
        };
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.env_clear()
            .env("PATH", DEFAULT_PATH)
            .envs(
                PASSED_THROUGH
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (*k, v))),
            )
            .envs(
                self.env
                    .iter()
                    .map(|(k, v)| (k.replace('\0', ""), v.replace('\0', ""))),
            )
            .stdin(Stdio::piped())
            .process_group(0);
        if let Some(dir) = self.program.parent().filter(|d| d.is_dir()) {
            cmd.current_dir(dir);
        }
        let merged = if self.merge {
            let (r, w) = std::io::pipe().map_err(start_error)?;
            let w2 = w.try_clone().map_err(start_error)?;
            cmd.stdout(w).stderr(w2);
            let r =
                tokio::net::unix::pipe::Receiver::from_owned_fd(r.into()).map_err(start_error)?;
            Some(r)
        } else {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            None
        };
        let mut child = spawn(&mut cmd).map_err(start_error)?;
        drop(cmd); // our copies of a merged pipe's write end
        let group = Group(child.id().map(|p| Pid::from_raw(p as i32)));

        let (mut stdout, mut stderr) = (Kept::new(self.keep), Kept::new(self.keep));
        let stdin = child.stdin.take();
        let (out, err) = (child.stdout.take(), child.stderr.take());
        let end = {
            let io = async {
                tokio::join!(
                    feed(stdin, &self.stdin),
                    async {
                        match merged {
                            Some(r) => drain(r, &mut stdout).await,
                            None => drain_opt(out, &mut stdout).await,
                        }
                    },
                    drain_opt(err, &mut stderr),
                )
            };
            let mut io = pin!(io);
            let mut io_done = false;
            let deadline = tokio::time::sleep(self.timeout);
            let mut deadline = pin!(deadline);
            let end = loop {
                tokio::select! {
                    _ = &mut io, if !io_done => io_done = true,
                    st = child.wait() => break match st {
                        Ok(st) => ended(st),
                        Err(_) => End::Signaled(0),
                    },
                    _ = &mut deadline => break End::TimedOut,
                }
            };
            // What the executable left running goes with it; then the pipes
            // close and the rest of its output is read.
            group.kill();
            if !io_done && tokio::time::timeout(DRAIN, &mut io).await.is_err() {
                tracing::debug!(program = %self.program.display(), "output still open after the end; not read further");
            }
            end
        };
        if end == End::TimedOut {
            // Reaped (the group is dead), so no zombie is left behind.
            let _ = tokio::time::timeout(DRAIN, child.wait()).await;
        }
        Ok(Output {
            end,
            stdout,
            stderr,
        })
    }
}

/// Spawns, retrying a moment while the file is still open for writing
/// somewhere (ETXTBSY: a hook being installed as it is run).
fn spawn(cmd: &mut tokio::process::Command) -> std::io::Result<tokio::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

fn ended(st: std::process::ExitStatus) -> End {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => End::Exited(c),
        (None, Some(s)) => End::Signaled(s),
        (None, None) => End::Signaled(0),
    }
}

/// The executable's process group, killed when the run ends or is dropped.
struct Group(Option<Pid>);

impl Group {
    fn kill(&self) {
        if let Some(pg) = self.0 {
            // ESRCH: nothing left of it.
            let _ = killpg(pg, Signal::SIGKILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn feed(stdin: Option<tokio::process::ChildStdin>, data: &[u8]) {
    if let Some(mut s) = stdin {
        // An executable that exits without reading it all: EPIPE, fine.
        let _ = s.write_all(data).await;
        let _ = s.shutdown().await;
    }
}

async fn drain_opt<R: AsyncRead + Unpin>(r: Option<R>, kept: &mut Kept) {
    if let Some(r) = r {
        drain(r, kept).await;
    }
}

async fn drain<R: AsyncRead + Unpin>(mut r: R, kept: &mut Kept) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => kept.push(&buf[..n]),
        }
    }
}

/// A stream's output, bounded: its first and its last `limit / 2` bytes,
/// and how much was cut between them.
#[derive(Debug, Clone, Default)]
pub struct Kept {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    cut: u64,
    half: usize,
}

impl Kept {
    pub fn new(limit: usize) -> Kept {
        Kept {
            half: limit / 2,
            ..Kept::default()
        }
    }

    pub fn push(&mut self, mut data: &[u8]) {
        let room = self.half.saturating_sub(self.head.len());
        let n = room.min(data.len());
        self.head.extend_from_slice(&data[..n]);
        data = &data[n..];
        if data.len() > self.half {
            self.cut += (self.tail.len() + data.len() - self.half) as u64;
            self.tail.clear();
            data = &data[data.len() - self.half..];
        } else {
            let over = (self.tail.len() + data.len()).saturating_sub(self.half);
            self.tail.drain(..over);
            self.cut += over as u64;
        }
        self.tail.extend(data);
    }

    /// Bytes seen in all.
    pub fn total(&self) -> u64 {
        (self.head.len() + self.tail.len()) as u64 + self.cut
    }

    /// All that was kept, as text (invalid UTF-8 replaced), with a line
    /// saying how much was cut.
    pub fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.head).into_owned();
        if self.cut > 0 {
            s.push_str(&format!("\n[… {} bytes cut …]\n", self.cut));
        }
        let tail: Vec<u8> = self.tail.iter().copied().collect();
        s.push_str(&String::from_utf8_lossy(&tail));
        s
    }

    /// The first line, trimmed.
    pub fn first_line(&self) -> String {
        self.text().lines().next().unwrap_or("").trim().to_string()
    }

    /// The text trimmed, and at most its last `max` bytes (cut at a
    /// character, marked with "…").
    pub fn tail(&self, max: usize) -> String {
        tail_of(self.text().trim(), max)
    }
}

/// At most the last `max` bytes of `s`, cut at a character and marked.
pub fn tail_of(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut from = s.len() - max + "…".len();
    while !s.is_char_boundary(from) {
        from += 1;
    }
    format!("…{}", &s[from..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Instant;

    fn script(dir: &std::path::Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn exec(program: PathBuf) -> Exec {
        Exec {
            program,
            stdin: b"{\"hello\":1}".to_vec(),
            env: vec![("KHA_EVENT".into(), "build_finished".into())],
            timeout: Duration::from_secs(10),
            merge: false,
            keep: KEEP_BYTES,
        }
    }

    fn alive(pid: i32) -> bool {
        // A zombie is dead for our purpose.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(s) => !s
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z'),
            Err(_) => false,
        }
    }

    #[tokio::test]
    async fn stdin_env_and_exit_codes() {
        let d = tempfile::tempdir().unwrap();
        let p = script(
            d.path(),
            "h",
            "cat; echo; echo \"event=$KHA_EVENT secret=${KHA_ADMIN_TOKEN:-none} cwd=$(pwd)\"; echo oops >&2; exit 3",
        );
        std::env::set_var("KHA_ADMIN_TOKEN", "s3cret");
        let o = exec(p).run().await.unwrap();
        assert_eq!(o.end, End::Exited(3));
        let cwd = d.path().canonicalize().unwrap();
        assert_eq!(
            o.stdout.text(),
            format!(
                "{{\"hello\":1}}\nevent=build_finished secret=none cwd={}\n",
                cwd.display()
            )
        );
        assert_eq!(o.stderr.text(), "oops\n");
        assert_eq!(o.stdout.first_line(), "{\"hello\":1}");

        let p = script(
            d.path(),
            "m",
            "echo one; echo two >&2; echo three; kill -TERM $$",
        );
        let mut e = exec(p);
        e.merge = true;
        let o = e.run().await.unwrap();
        assert_eq!(o.end, End::Signaled(15));
        assert_eq!(o.stdout.text(), "one\ntwo\nthree\n");
        assert_eq!(o.stderr.text(), "");
    }

    #[tokio::test]
    async fn a_missing_or_unrunnable_program_does_not_start() {
        let d = tempfile::tempdir().unwrap();
        let e = exec(d.path().join("nope")).run().await.unwrap_err();
        assert!(e.to_string().starts_with("cannot run "), "{e}");
        let p = d.path().join("plain");
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        let e = exec(p).run().await.unwrap_err();
        assert_eq!(e.source.kind(), std::io::ErrorKind::PermissionDenied);
    }

    #[tokio::test]
    async fn the_timeout_kills_the_whole_process_group() {
        let d = tempfile::tempdir().unwrap();
        let pids = d.path().join("pids");
        // A child and a grandchild that ignore SIGTERM, all holding stdout.
        let p = script(
            d.path(),
            "hang",
            &format!(
                "trap '' TERM; (trap '' TERM; sleep 300 & echo $! >> {pids}; wait) & echo $! >> {pids}; echo $$ >> {pids}; echo started; sleep 300",
                pids = pids.display()
            ),
        );
        let mut e = exec(p);
        e.timeout = Duration::from_millis(500);
        let t = Instant::now();
        let o = e.run().await.unwrap();
        assert_eq!(o.end, End::TimedOut);
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert_eq!(o.stdout.text(), "started\n");
        let pids: Vec<i32> = std::fs::read_to_string(&pids)
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(pids.len(), 3);
        std::thread::sleep(Duration::from_millis(100));
        for pid in pids {
            assert!(!alive(pid), "process {pid} survived the timeout");
        }
    }

    #[tokio::test]
    async fn what_an_executable_leaves_behind_is_killed_when_it_exits() {
        let d = tempfile::tempdir().unwrap();
        let pid = d.path().join("pid");
        let p = script(
            d.path(),
            "bg",
            &format!("sleep 300 & echo $! > {}; echo done", pid.display()),
        );
        let t = Instant::now();
        let o = exec(p).run().await.unwrap();
        assert_eq!(o.end, End::Exited(0));
        assert_eq!(o.stdout.text(), "done\n");
        assert!(t.elapsed() < Duration::from_secs(3));
        let pid: i32 = std::fs::read_to_string(&pid)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(!alive(pid), "the background sleep survived");
    }

    #[tokio::test]
    async fn a_dropped_run_kills_its_group() {
        let d = tempfile::tempdir().unwrap();
        let pid = d.path().join("pid");
        let p = script(
            d.path(),
            "slow",
            &format!("echo $$ > {}; sleep 300", pid.display()),
        );
        let e = exec(p);
        let r = tokio::time::timeout(Duration::from_millis(500), e.run()).await;
        assert!(r.is_err());
        let pid: i32 = std::fs::read_to_string(&pid)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(!alive(pid), "the dropped run's process survived");
    }

    #[tokio::test]
    async fn output_is_bounded_and_big_stdin_does_not_block() {
        let d = tempfile::tempdir().unwrap();
        // Reads none of its 1 MiB of stdin, writes 1 MB.
        let p = script(
            d.path(),
            "big",
            "head -c 1000000 /dev/zero | tr '\\0' x; echo; echo end",
        );
        let mut e = exec(p);
        e.stdin = vec![b'y'; 1 << 20];
        e.keep = 1000;
        let o = e.run().await.unwrap();
        assert_eq!(o.end, End::Exited(0));
        assert_eq!(o.stdout.total(), 1_000_005);
        let text = o.stdout.text();
        assert!(text.starts_with(&"x".repeat(500)), "{text}");
        assert!(text.contains("\n[… 999005 bytes cut …]\n"), "{text}");
        assert!(text.ends_with("xxx\nend\n"), "{text}");
        assert!(text.len() < 1100);
    }

    #[test]
    fn kept_keeps_head_and_tail() {
        let mut k = Kept::new(6);
        for chunk in [&b"ab"[..], b"cd", b"efgh", b"ij"] {
            k.push(chunk);
        }
        assert_eq!(k.text(), "abc\n[… 4 bytes cut …]\nhij");
        assert_eq!(k.total(), 10);
        let mut k = Kept::new(6);
        k.push(b"abcdefghijklmnop");
        assert_eq!(k.text(), "abc\n[… 10 bytes cut …]\nnop");
        let mut k = Kept::new(100);
        k.push(b"  first\nsecond\n\n");
        assert_eq!(
            (k.first_line(), k.tail(100)),
            ("first".into(), "first\nsecond".into())
        );
        assert_eq!(tail_of("ééééé", 7), "…éé");
        assert_eq!(tail_of("abc", 3), "abc");
    }
}
