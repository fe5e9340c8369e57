//! Where a create's time goes (issue 19): named phases timed one after another, for the
//! create's log line. Costs a clock read per phase; owns no policy.

use std::time::{Duration, Instant};

pub(super) struct Phases {
    start: Instant,
    last: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Phases {
    pub(super) fn new() -> Self {
        let now = Instant::now();
        Self { start: now, last: now, done: Vec::new() }
    }

    /// Ends phase `name` now (it began where the previous one ended).
    pub(super) fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.done.push((name, now - self.last));
        self.last = now;
    }

    /// Moves `part` of the last phase into a phase of its own, `name` (a step timed
    /// inside it: the network device's move happens during the agent's boot).
    pub(super) fn split_last(&mut self, name: &'static str, part: Duration) {
        if let Some((_, d)) = self.done.last_mut() {
            let part = part.min(*d);
            *d -= part;
            self.done.push((name, part));
        }
    }

    /// `total=105.2 cgroups=1.1 disk_image=12.0 ...`, in milliseconds.
    pub(super) fn summary(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut s = format!("total={:.1}", ms(self.start.elapsed()));
        for (name, d) in &self.done {
            s.push_str(&format!(" {name}={:.1}", ms(*d)));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_add_up_and_a_split_moves_time_out_of_the_last_phase() {
        let mut p = Phases::new();
        std::thread::sleep(Duration::from_millis(2));
        p.mark("a");
        std::thread::sleep(Duration::from_millis(4));
        p.mark("b");
        p.split_last("c", Duration::from_millis(1));
        let s = p.summary();
        let names: Vec<&str> = s.split(' ').map(|kv| kv.split('=').next().unwrap()).collect();
        assert_eq!(names, ["total", "a", "b", "c"]);
        let b: f64 = s.split(" b=").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        assert!(b >= 2.9, "{s}");
        // A split never takes more than the phase had.
        p.split_last("d", Duration::from_secs(9));
        assert!(p.summary().ends_with(" c=0.0 d=1.0"), "{}", p.summary());
    }
}
