//! Named stages of one long end-to-end test that shares an expensive set-up
//! (a booted machine): a failing stage is recorded and the next still runs,
//! so the first failure does not hide the rest.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

/// The stages run so far, and which failed.
pub struct Stages {
    what: String,
    failed: Vec<String>,
}

impl Stages {
    /// Stages of `what` (e.g. the machine they run on).
    pub fn new(what: &str) -> Stages {
        Stages { what: what.to_owned(), failed: Vec::new() }
    }

    /// Runs one stage; a failure is recorded (its panic message is already
    /// printed) and the test goes on.
    pub fn run(&mut self, stage: &str, f: impl FnOnce()) {
        let start = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(f));
        let took = start.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => eprintln!("{}: stage {stage}: ok ({took:.1}s)", self.what),
            Err(_) => {
                eprintln!("{}: stage {stage}: FAILED ({took:.1}s)", self.what);
                self.failed.push(stage.to_owned());
            }
        }
    }

    /// Fails the test if any stage failed, naming each.
    pub fn finish(self) {
        assert!(self.failed.is_empty(), "{}: stages failed: {}", self.what, self.failed.join(", "));
    }
}
