//! Figures: samples summarised as min / p50 / p95 / p99 / max, rows of the
//! result table with their targets, the printed table and the JSON.

use serde_json::{json, Value};

/// A summary of samples (nearest-rank percentiles).
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

pub fn stat(samples: &[f64]) -> Option<Stat> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    };
    Some(Stat {
        n: v.len(),
        min: v[0],
        p50: pct(50.0),
        p95: pct(95.0),
        p99: pct(99.0),
        max: v[v.len() - 1],
        mean: v.iter().sum::<f64>() / v.len() as f64,
    })
}

/// Which figure of a row a target applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Of {
    Value,
    P50,
    P99,
    Max,
}

#[derive(Debug, Clone, Copy)]
pub enum Target {
    AtMost(Of, f64),
    AtLeast(Of, f64),
}

impl Target {
    fn of(&self) -> Of {
        match self {
            Target::AtMost(o, _) | Target::AtLeast(o, _) => *o,
        }
    }

    fn text(&self) -> String {
        let (op, o, b) = match self {
            Target::AtMost(o, b) => ("≤", o, b),
            Target::AtLeast(o, b) => ("≥", o, b),
        };
        let which = match o {
            Of::Value => "",
            Of::P50 => "p50 ",
            Of::P99 => "p99 ",
            Of::Max => "max ",
        };
        format!("{which}{op} {}", fmt_num(*b))
    }

    fn met(&self, x: f64) -> bool {
        match self {
            Target::AtMost(_, b) => x <= *b,
            Target::AtLeast(_, b) => x >= *b,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub metric: String,
    pub unit: String,
    pub stat: Option<Stat>,
    pub value: Option<f64>,
    pub target: Option<Target>,
    pub note: String,
}

impl Row {
    pub fn samples(scenario: &str, metric: &str, unit: &str, samples: &[f64]) -> Row {
        Row {
            scenario: scenario.into(),
            metric: metric.into(),
            unit: unit.into(),
            stat: stat(samples),
            value: None,
            target: None,
            note: String::new(),
        }
    }

    pub fn value(scenario: &str, metric: &str, unit: &str, v: f64) -> Row {
        Row {
            scenario: scenario.into(),
            metric: metric.into(),
            unit: unit.into(),
            stat: None,
            value: Some(v),
            target: None,
            note: String::new(),
        }
    }

    pub fn target(mut self, t: Target) -> Row {
        self.target = Some(t);
        self
    }

    pub fn note(mut self, n: impl Into<String>) -> Row {
        self.note = n.into();
        self
    }

    fn figure(&self, of: Of) -> Option<f64> {
        match (of, &self.stat) {
            (Of::Value, None) => self.value,
            (Of::Value | Of::P50, Some(s)) => Some(s.p50),
            (Of::P99, Some(s)) => Some(s.p99),
            (Of::Max, Some(s)) => Some(s.max),
            (_, None) => self.value,
        }
    }

    /// Whether the row meets its target (None: no target or no figure).
    pub fn met(&self) -> Option<bool> {
        let t = self.target?;
        Some(t.met(self.figure(t.of())?))
    }

    pub fn json(&self) -> Value {
        let mut v = json!({
            "scenario": self.scenario,
            "metric": self.metric,
            "unit": self.unit,
        });
        if let Some(s) = &self.stat {
            v["n"] = json!(s.n);
            v["min"] = json!(s.min);
            v["p50"] = json!(s.p50);
            v["p95"] = json!(s.p95);
            v["p99"] = json!(s.p99);
            v["max"] = json!(s.max);
            v["mean"] = json!(s.mean);
        }
        if let Some(x) = self.value {
            v["value"] = json!(x);
        }
        if let Some(t) = &self.target {
            v["target"] = json!(t.text());
            v["met"] = json!(self.met());
        }
        if !self.note.is_empty() {
            v["note"] = json!(self.note);
        }
        v
    }
}

pub fn fmt_num(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x.abs() >= 10_000.0 {
        format!("{x:.0}")
    } else if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

/// The table as printed (and pasted into BENCHMARKS.md: it is Markdown).
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("| scenario | metric | n | min | p50 | p95 | p99 | max | unit | target | met |\n");
    out.push_str("|---|---|--:|--:|--:|--:|--:|--:|---|---|---|\n");
    for r in rows {
        let (n, min, p50, p95, p99, max) = match (&r.stat, r.value) {
            (Some(s), _) => (
                s.n.to_string(),
                fmt_num(s.min),
                fmt_num(s.p50),
                fmt_num(s.p95),
                fmt_num(s.p99),
                fmt_num(s.max),
            ),
            (None, Some(v)) => (
                String::new(),
                String::new(),
                fmt_num(v),
                String::new(),
                String::new(),
                String::new(),
            ),
            (None, None) => Default::default(),
        };
        let target = r.target.map(|t| t.text()).unwrap_or_default();
        let met = match r.met() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        let metric = if r.note.is_empty() {
            r.metric.clone()
        } else {
            format!("{} ({})", r.metric, r.note)
        };
        out.push_str(&format!(
            "| {} | {} | {n} | {min} | {p50} | {p95} | {p99} | {max} | {} | {target} | {met} |\n",
            r.scenario, metric, r.unit
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = stat(&v).unwrap();
        assert_eq!(
            (s.min, s.p50, s.p95, s.p99, s.max),
            (1.0, 50.0, 95.0, 99.0, 100.0)
        );
        let s = stat(&[3.0]).unwrap();
        assert_eq!((s.p50, s.p99), (3.0, 3.0));
    }
}
