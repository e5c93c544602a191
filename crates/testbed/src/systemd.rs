//! Reading what systemd's tools print.

/// The overall exposure `systemd-analyze security` printed for ecr-credd.service.
pub fn exposure_score(report: &str) -> f64 {
    report
        .lines()
        .find_map(|l| l.split("ecr-credd.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no score in {report}"))
}
