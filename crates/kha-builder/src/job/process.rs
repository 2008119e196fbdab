//! The run step's process: spawning the executor's command with its output
//! pumped into the spool, and waiting for it to end, time out, or be
//! stopped.

use super::Job;
use crate::logs::SharedSpool;
use std::io::Read;
use std::time::Duration;
use tracing::warn;

/// How a run's process ended.
pub(super) enum Waited {
    Exited(Option<i32>),
    TimedOut,
    Stopped,
}

impl Job {
    /// Spawns `cmd` with stdout and stderr into the spool and waits for it.
    pub(super) async fn supervise(
        &self,
        mut cmd: std::process::Command,
        spool: &SharedSpool,
    ) -> Result<Waited, String> {
        // stdout and stderr share one pipe, so their interleaving is kept.
        let (mut reader, writer) = std::io::pipe().map_err(|e| e.to_string())?;
        let w2 = writer.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(std::process::Stdio::null())
            .stdout(writer)
            .stderr(w2);
        let mut cmd = tokio::process::Command::from(cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the job: {e}"))?;
        drop(cmd); // our copies of the pipe's write end
        if let Some(pid) = child.id() {
            self.shared.executor.spawned(&self.run, pid);
        }
        let sp = spool.clone();
        let mut pump = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Err(e) = sp.write(&buf[..n]) {
                            warn!(error = %e, "cannot write the job's output to the spool");
                            break;
                        }
                    }
                }
            }
        });
        let timeout = self.spec.timeout();
        let waited = tokio::select! {
            st = child.wait() => Waited::Exited(st.ok().and_then(|s| s.code())),
            _ = tokio::time::sleep(timeout) => Waited::TimedOut,
            _ = self.control.stop.cancelled() => Waited::Stopped,
        };
        if !matches!(waited, Waited::Exited(_)) {
            let grace = match waited {
                Waited::TimedOut => Duration::ZERO,
                _ => self.control.grace(),
            };
            let (exec, r) = (self.shared.executor.clone(), self.run.clone());
            match tokio::task::spawn_blocking(move || exec.stop(&r, grace)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(run = %self.run.name, error = %e, "stopping the run failed"),
                Err(e) => warn!(run = %self.run.name, error = %e, "stopping the run panicked"),
            }
            if tokio::time::timeout(Duration::from_secs(3), child.wait())
                .await
                .is_err()
            {
                if let Err(e) = child.kill().await {
                    warn!(run = %self.run.name, error = %e, "cannot kill the run's process");
                }
            }
            if matches!(waited, Waited::TimedOut) {
                wait_finished(&mut pump, Duration::from_secs(2)).await;
                spool.note(&format!("the job timed out after {} s", timeout.as_secs()));
            }
        }
        // Output still buffered in the pipe arrives before EOF; a process
        // that escaped and holds the pipe open is killed by cleanup.
        wait_finished(&mut pump, Duration::from_secs(5)).await;
        Ok(waited)
    }
}

/// Waits up to `within` for a blocking task to end (it cannot be aborted:
/// the pump ends at the pipe's EOF, which cleanup brings about at the
/// latest). Awaits the task itself: polling it cost up to a poll interval
/// (5 ms) of every job's run, as the pump usually ends just after the
/// process it reads from.
async fn wait_finished(task: &mut tokio::task::JoinHandle<()>, within: Duration) {
    // Awaited at most once to its end: a finished task is not polled again.
    if !task.is_finished() && tokio::time::timeout(within, task).await.is_err() {
        tracing::debug!("the output pump is still reading");
    }
}
