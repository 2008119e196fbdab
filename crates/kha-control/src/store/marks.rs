//! A build's job marks (tree `build_marks`, keyed by build id): each job's
//! state, whether it may fail and its stage, in the build's job order. They
//! are what the build's state and its stages are decided from, and every
//! transaction that writes a job's state writes them too. So a transition
//! reads one small record instead of every job of the build: a 200-job
//! build paid 200 job-record reads (JSON, each skipping the job's spec) on
//! every transition, most of the writer thread's time while jobs were
//! being assigned.
//!
//! A build without marks (written before they existed) or with marks that
//! do not decode or do not match its jobs gets them from its job records,
//! once, in the transaction that needs them: they are derived data.
//!
//! Format: a version byte, then 4 bytes per job: the state's code, a flags
//! byte (bit 0: allowed to fail), the stage's index (u16, little-endian).

use super::records::{Build, Job, JobStateOnly};
use super::{tx_get, StoreError};
use kha_core::stages::StageJob;
use kha_core::JobState;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<StoreError>>;

const FORMAT: u8 = 1;

/// The codes of the job states: their place here. Append only.
const STATES: [JobState; 9] = [
    JobState::Waiting,
    JobState::Queued,
    JobState::Running,
    JobState::Passed,
    JobState::Failed,
    JobState::Errored,
    JobState::Canceled,
    JobState::TimedOut,
    JobState::Lost,
];

/// One job of a build as the build's state sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark {
    pub state: JobState,
    pub allow_failure: bool,
    /// Its stage's place in the build's stage order.
    pub stage: u16,
}

impl Mark {
    pub fn of(build: &Build, job: &Job) -> Mark {
        Mark::new(build, job.state, job.allow_failure, &job.stage)
    }

    fn new(build: &Build, state: JobState, allow_failure: bool, stage: &str) -> Mark {
        let stage = super::stages::stage_of(build, stage);
        Mark {
            state,
            allow_failure,
            stage: u16::try_from(stage).unwrap_or(u16::MAX),
        }
    }

    pub fn stage_job(self) -> StageJob {
        StageJob {
            stage: usize::from(self.stage),
            state: self.state,
            allow_failure: self.allow_failure,
        }
    }
}

pub(super) fn encode(marks: &[Mark]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 4 * marks.len());
    out.push(FORMAT);
    for m in marks {
        let code = STATES.iter().position(|&s| s == m.state).unwrap_or(0);
        out.push(code as u8);
        out.push(u8::from(m.allow_failure));
        out.extend_from_slice(&m.stage.to_le_bytes());
    }
    out
}

pub(super) fn decode(bytes: &[u8]) -> Option<Vec<Mark>> {
    let (&FORMAT, rest) = bytes.split_first()? else {
        return None;
    };
    if rest.len() % 4 != 0 {
        return None;
    }
    rest.chunks_exact(4)
        .map(|c| {
            Some(Mark {
                state: *STATES.get(usize::from(c[0]))?,
                allow_failure: c[1] & 1 != 0,
                stage: u16::from_le_bytes([c[2], c[3]]),
            })
        })
        .collect()
}

/// The build's marks in a transaction, and their stored form: as stored,
/// or when they are missing or do not fit its jobs, from the job records (a
/// job whose record is missing counts as lost) and no stored form.
pub(super) fn load(
    tm: &TransactionalTree,
    tj: &TransactionalTree,
    build: &Build,
) -> TxResult<(Vec<Mark>, Option<sled::IVec>)> {
    if let Some(v) = tm.get(build.id.to_be_bytes())? {
        if let Some(m) = decode(&v).filter(|m| m.len() == build.jobs.len()) {
            return Ok((m, Some(v)));
        }
    }
    let mut marks = Vec::with_capacity(build.jobs.len());
    for &jid in &build.jobs {
        marks.push(
            match tx_get::<JobStateOnly>(tj, "jobs", &jid.to_be_bytes())? {
                Some(j) => Mark::new(build, j.state, j.allow_failure, &j.stage),
                None => Mark {
                    state: JobState::Lost,
                    allow_failure: false,
                    stage: 0,
                },
            },
        );
    }
    Ok((marks, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_and_flag_survives_the_round_trip() {
        let marks: Vec<Mark> = STATES
            .iter()
            .enumerate()
            .map(|(i, &state)| Mark {
                state,
                allow_failure: i % 2 == 0,
                stage: (i as u16) * 300,
            })
            .collect();
        assert_eq!(decode(&encode(&marks)), Some(marks));
    }

    #[test]
    fn damaged_marks_are_refused_not_misread() {
        let good = encode(&[Mark {
            state: JobState::Running,
            allow_failure: false,
            stage: 1,
        }]);
        assert!(decode(&good).is_some());
        assert_eq!(decode(&good[..4]), None, "a short record");
        assert_eq!(decode(&[2, 0, 0, 0, 0]), None, "an unknown format");
        assert_eq!(decode(&[FORMAT, 99, 0, 0, 0]), None, "an unknown state");
        assert_eq!(decode(&[]), None);
    }
}
