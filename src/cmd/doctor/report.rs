//! The report doctor builds, and the one way a network step is run: within
//! [`STEP_TIMEOUT`], its answer judged into a pass or a failure with a fix.

use std::future::Future;

use super::{Check, STEP_TIMEOUT};

impl Check {
    pub(super) fn pass(check: &str, registry: Option<&str>, detail: String) -> Self {
        Check { check: check.into(), registry: registry.map(Into::into), ok: true, detail, fix: None }
    }
    pub(super) fn fail(check: &str, registry: Option<&str>, detail: String, fix: String) -> Self {
        Check { check: check.into(), registry: registry.map(Into::into), ok: false, detail, fix: Some(fix) }
    }
}

/// `fut`'s output, or `None` once [`STEP_TIMEOUT`] has passed.
pub(super) async fn within<T>(fut: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(STEP_TIMEOUT, fut).await.ok()
}

/// A step that passed: the value later steps use, and what to report.
pub(super) struct Passed<T> {
    value: T,
    detail: String,
}

/// A step that failed: what failed, and how to fix it.
pub(super) struct Failed {
    detail: String,
    fix: String,
}

impl<T> Passed<T> {
    /// `value`, reported as `detail`.
    pub(super) fn new(value: T, detail: String) -> Self {
        Passed { value, detail }
    }
}

impl Failed {
    /// What failed, and the fix to print under it.
    pub(super) fn new(detail: String, fix: impl Into<String>) -> Self {
        Failed { detail, fix: fix.into() }
    }
}

/// What to report when `service` does not answer in time.
pub(super) fn silent(service: &str) -> Failed {
    Failed::new(format!("{service} did not answer in time"), format!("check outbound HTTPS to {service}"))
}

/// The checks so far.
#[derive(Default)]
pub(super) struct Report {
    checks: Vec<Check>,
}

impl Report {
    /// Records a passed check.
    pub(super) fn pass(&mut self, check: &str, registry: Option<&str>, detail: String) {
        self.checks.push(Check::pass(check, registry, detail));
    }

    /// Records a failed check with its fix.
    pub(super) fn fail(&mut self, check: &str, registry: Option<&str>, detail: String, fix: String) {
        self.checks.push(Check::fail(check, registry, detail, fix));
    }

    /// Runs one network step. `judge` turns its answer into the value and
    /// the detail to report, or into what failed and the fix; no answer
    /// within [`STEP_TIMEOUT`] is reported as `late`.
    pub(super) async fn step<T, A>(
        &mut self,
        check: &str,
        registry: Option<&str>,
        call: impl Future<Output = A>,
        late: Failed,
        judge: impl FnOnce(A) -> Result<Passed<T>, Failed>,
    ) -> Option<T> {
        match within(call).await.map_or(Err(late), judge) {
            Ok(Passed { value, detail }) => {
                self.pass(check, registry, detail);
                Some(value)
            }
            Err(Failed { detail, fix }) => {
                self.fail(check, registry, detail, fix);
                None
            }
        }
    }

    /// The checks, in the order they ran.
    pub(super) fn into_checks(self) -> Vec<Check> {
        self.checks
    }
}
