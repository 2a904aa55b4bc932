//! Where the time of one operation goes: named steps, measured one after
//! another, for the log line of a VE start and the benchmarks that read it.

use std::fmt::Write;
use std::time::{Duration, Instant};

/// The steps of one operation so far.
#[derive(Debug)]
pub struct Steps {
    began: Instant,
    last: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Default for Steps {
    fn default() -> Self {
        Self::new()
    }
}

impl Steps {
    pub fn new() -> Steps {
        let now = Instant::now();
        Steps {
            began: now,
            last: now,
            done: Vec::new(),
        }
    }

    /// Ends step `name`: the time since the previous mark.
    pub fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.done.push((name, now - self.last));
        self.last = now;
    }

    /// Adds a step measured elsewhere (it does not move the mark).
    pub fn add(&mut self, name: &'static str, d: Duration) {
        self.done.push((name, d));
    }

    /// Since [`Steps::new`].
    pub fn total(&self) -> Duration {
        self.began.elapsed()
    }

    /// Each step's duration in microseconds, in order.
    pub fn micros(&self) -> impl Iterator<Item = (&'static str, u32)> + '_ {
        self.done
            .iter()
            .map(|(n, d)| (*n, u32::try_from(d.as_micros()).unwrap_or(u32::MAX)))
    }

    /// `name 1.2, name 0.3` (milliseconds, one decimal).
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (i, (name, d)) in self.done.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            let _ = write!(s, "{name} {:.1}", d.as_secs_f64() * 1000.0);
        }
        s
    }
}

/// Parses what [`Steps::render`] wrote back into (name, milliseconds).
pub fn parse(text: &str) -> Vec<(String, f64)> {
    text.split(", ")
        .filter_map(|item| {
            let (name, ms) = item.trim().rsplit_once(' ')?;
            Some((name.to_owned(), ms.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_render_in_order_and_parse_back() {
        let mut s = Steps::new();
        s.mark("checks");
        s.add("exec", Duration::from_micros(1500));
        s.mark("cgroup");
        let text = s.render();
        assert!(text.starts_with("checks "), "{text}");
        let back = parse(&text);
        let names: Vec<_> = back.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["checks", "exec", "cgroup"]);
        assert_eq!(back[1].1, 1.5);
        assert!(s.total() >= Duration::ZERO);
    }

    #[test]
    fn parse_skips_what_is_not_a_step() {
        assert_eq!(
            parse("a 1.0, junk, b x, c 2"),
            [("a".into(), 1.0), ("c".into(), 2.0)]
        );
    }
}
