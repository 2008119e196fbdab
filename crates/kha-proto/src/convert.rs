//! Conversions between wire types and kha-core types.

use crate::agent::{self, Outcome};
use kha_core::travis::Phases;
use kha_core::JobOutcome;

impl From<JobOutcome> for Outcome {
    fn from(o: JobOutcome) -> Self {
        match o {
            JobOutcome::Passed => Outcome::Passed,
            JobOutcome::Failed => Outcome::Failed,
            JobOutcome::Errored => Outcome::Errored,
            JobOutcome::Canceled => Outcome::Canceled,
            JobOutcome::TimedOut => Outcome::TimedOut,
            JobOutcome::Infrastructure => Outcome::Infrastructure,
        }
    }
}

impl TryFrom<Outcome> for JobOutcome {
    type Error = &'static str;
    fn try_from(o: Outcome) -> Result<Self, Self::Error> {
        Ok(match o {
            Outcome::Passed => JobOutcome::Passed,
            Outcome::Failed => JobOutcome::Failed,
            Outcome::Errored => JobOutcome::Errored,
            Outcome::Canceled => JobOutcome::Canceled,
            Outcome::TimedOut => JobOutcome::TimedOut,
            Outcome::Infrastructure => JobOutcome::Infrastructure,
            Outcome::Unspecified => return Err("outcome is unspecified"),
        })
    }
}

impl agent::JobSpec {
    /// The phases carried by a job spec.
    pub fn phases(&self) -> Phases {
        Phases {
            before_install: self.before_install.clone(),
            install: self.install.clone(),
            before_script: self.before_script.clone(),
            script: self.script.clone(),
            after_success: self.after_success.clone(),
            after_failure: self.after_failure.clone(),
            after_script: self.after_script.clone(),
        }
    }

    /// Fills the phase fields from kha-core's phases.
    pub fn set_phases(&mut self, p: Phases) {
        self.before_install = p.before_install;
        self.install = p.install;
        self.before_script = p.before_script;
        self.script = p.script;
        self.after_success = p.after_success;
        self.after_failure = p.after_failure;
        self.after_script = p.after_script;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip() {
        for o in [
            JobOutcome::Passed,
            JobOutcome::Failed,
            JobOutcome::Errored,
            JobOutcome::Canceled,
            JobOutcome::TimedOut,
            JobOutcome::Infrastructure,
        ] {
            assert_eq!(JobOutcome::try_from(Outcome::from(o)), Ok(o));
        }
        assert!(JobOutcome::try_from(Outcome::Unspecified).is_err());
    }
}
