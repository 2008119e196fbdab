//! Scheduled builds (`kha cron`): the `schedules` tree, keyed by the
//! schedule's id (big-endian), ids dense from a counter in `meta`. A backup
//! dumps the tree like every other (`dump`).

use super::records::{decode, encode, Schedule};
use super::{corrupt, Result, Store, COUNTER_SCHEDULE};

impl Store {
    /// Stores a new schedule under the next id, which it sets.
    pub fn add_schedule(&self, s: &mut Schedule) -> Result<()> {
        s.id = self.bump(COUNTER_SCHEDULE)?;
        let _gate = self.gate.enter();
        self.schedules.insert(s.id.to_be_bytes(), encode(s))?;
        Ok(())
    }

    pub fn get_schedule(&self, id: u64) -> Result<Option<Schedule>> {
        self.schedules
            .get(id.to_be_bytes())?
            .map(|v| decode(&v).map_err(corrupt("schedules")))
            .transpose()
    }

    /// Every schedule, oldest first.
    pub fn list_schedules(&self) -> Result<Vec<Schedule>> {
        self.schedules
            .iter()
            .values()
            .map(|v| decode(&v?).map_err(corrupt("schedules")))
            .collect()
    }

    /// Changes a schedule in place, unless it was removed meanwhile (a
    /// run that ends after `kha cron remove` does not bring it back).
    /// Returns the changed record, or `None` when there is none.
    pub fn update_schedule(
        &self,
        id: u64,
        change: impl Fn(&mut Schedule),
    ) -> Result<Option<Schedule>> {
        let _gate = self.gate.enter();
        let mut bad = None;
        let new = self.schedules.update_and_fetch(id.to_be_bytes(), |old| {
            let old = old?;
            match decode::<Schedule>(old) {
                Ok(mut s) => {
                    change(&mut s);
                    Some(encode(&s))
                }
                Err(e) => {
                    bad = Some(e);
                    Some(old.to_vec())
                }
            }
        })?;
        if let Some(e) = bad {
            return Err(corrupt("schedules")(e));
        }
        new.map(|v| decode(&v).map_err(corrupt("schedules")))
            .transpose()
    }

    /// Removes a schedule; returns it, or `None` if there was none.
    pub fn remove_schedule(&self, id: u64) -> Result<Option<Schedule>> {
        let _gate = self.gate.enter();
        self.schedules
            .remove(id.to_be_bytes())?
            .map(|v| decode(&v).map_err(corrupt("schedules")))
            .transpose()
    }

    /// Removes a project's schedules (the project was removed); how many.
    pub fn remove_project_schedules(&self, project: &str) -> Result<usize> {
        let mut n = 0;
        for s in self.list_schedules()? {
            if s.project == project && self.remove_schedule(s.id)?.is_some() {
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(project: &str, branch: &str) -> Schedule {
        Schedule {
            id: 0,
            project: project.into(),
            branch: branch.into(),
            interval: "daily".into(),
            cron: String::new(),
            dont_run_if_recent_build_exists: false,
            created_ms: 1_000,
            next_run_ms: 61_000,
            last_run_ms: 0,
            last_outcome: String::new(),
            last_build: 0,
        }
    }

    #[tokio::test]
    async fn schedules_survive_a_restart_and_a_backup_and_removal_is_final() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a")).unwrap();
        let (mut a, mut b, mut c) = (
            schedule("p", "main"),
            schedule("p", "dev"),
            schedule("q", "main"),
        );
        for s in [&mut a, &mut b, &mut c] {
            store.add_schedule(s).unwrap();
        }
        assert_eq!((a.id, b.id, c.id), (1, 2, 3));
        let changed = store
            .update_schedule(a.id, |s| {
                s.last_outcome = "started build 7".into();
                s.last_build = 7;
            })
            .unwrap()
            .unwrap();
        assert_eq!(changed.last_build, 7);

        // Removed: a late update does not bring it back.
        assert_eq!(store.remove_schedule(b.id).unwrap(), Some(b.clone()));
        assert_eq!(
            store.update_schedule(b.id, |s| s.last_build = 9).unwrap(),
            None
        );
        assert_eq!(store.get_schedule(b.id).unwrap(), None);
        assert_eq!(store.remove_schedule(b.id).unwrap(), None);

        // A backup holds them; the restored database numbers on.
        let mut out = Vec::new();
        let summary = store.dump(&mut out).unwrap();
        assert_eq!(summary.trees["schedules"], 2);
        super::super::dump::load(&out[..], &dir.path().join("b")).unwrap();
        store.durable().await.unwrap();
        drop(store);
        for path in ["a", "b"] {
            // The writer lets go of the database once every handle is gone.
            let mut back = None;
            for _ in 0..100 {
                if let Ok(s) = Store::open(&dir.path().join(path)) {
                    back = Some(s);
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            let back = back.expect("the database reopens");
            let all = back.list_schedules().unwrap();
            assert_eq!(all, vec![changed.clone(), c.clone()], "{path}");
            let mut d = schedule("p", "x");
            back.add_schedule(&mut d).unwrap();
            assert_eq!(d.id, 4, "ids are not reused ({path})");
            assert_eq!(back.remove_project_schedules("p").unwrap(), 2);
            assert_eq!(back.list_schedules().unwrap(), vec![c.clone()]);
        }
    }
}
