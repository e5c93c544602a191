//! FLEET.md's table rows and plots, from fleet runs.

use std::fmt::Write as _;

use super::FleetResult;

/// A case's name: who (when not this checkout), nodes, arrival spread and
/// bucket, or denied.
pub fn case_name(r: &FleetResult) -> String {
    let s = &r.spec;
    let mut what = String::new();
    if s.ecr.rejected_costs {
        what += ", rejections cost a credit";
    }
    if s.ecr.rejection == crate::fault_proxy::Rejection::Http429 {
        what += ", HTTP 429";
    }
    if s.denied {
        what += ", AssumeRole denied";
    }
    if s.registries.start() == s.registries.end() {
        let n = *s.registries.start();
        what += &format!(", {n} {} each", if n == 1 { "registry" } else { "registries" });
    }
    let who = match &s.contender {
        super::Contender::Ours => String::new(),
        other => format!("{}: ", contender(other)),
    };
    format!(
        "{who}{} nodes, spread {} s, bucket {}/s burst {}{what}",
        s.nodes,
        s.spread.as_secs(),
        s.ecr.rate,
        s.ecr.burst
    )
}

/// Who ran the nodes, in a plot's legend.
fn contender(c: &super::Contender) -> String {
    match c {
        super::Contender::Ours => "ecr-credd (this policy)".to_owned(),
        super::Contender::Baseline { commit, .. } => format!("ecr-credd at {commit}"),
        super::Contender::EcrLogin => "ecr-login".to_owned(),
    }
}

fn secs(t: Option<f64>) -> String {
    t.map_or_else(|| "never".to_owned(), |t| format!("{t:.1}"))
}

/// One table row: T50/T90/T99/T100 to a token (and the bound), to the first
/// client success, efficiency, calls per node, memory.
pub fn row(r: &FleetResult) -> String {
    let q = [0.5, 0.9, 0.99, 1.0];
    let tokens: Vec<String> = q.iter().map(|&x| secs(r.token_quantile(x))).collect();
    let bounds: Vec<String> = q.iter().map(|&x| format!("{:.1}", r.bound(x))).collect();
    let clients: Vec<String> = q.iter().map(|&x| secs(r.client_quantile(x))).collect();
    let efficiency = r.token_quantile(1.0).map_or_else(
        || "-".to_owned(),
        |t| if t > 0.0 { format!("{:.2}", (r.bound(1.0) / t).min(1.0)) } else { "1.00".to_owned() },
    );
    let (gat, gat_no) = r.calls_per_node("GetAuthorizationToken");
    let (sts, sts_no) = r.calls_per_node("AssumeRole");
    let mut pss: Vec<u64> = r.nodes.iter().map(|n| n.pss_kib).collect();
    pss.sort_unstable();
    let mut rss: Vec<u64> = r.nodes.iter().map(|n| n.rss_kib).collect();
    rss.sort_unstable();
    let median = |v: &[u64]| v.get(v.len() / 2).copied().unwrap_or(0);
    format!(
        "| {} | {} | {} | {} | {} | {gat:.2} + {gat_no:.2} | {sts:.2} + {sts_no:.2} | {} | {} / {} |",
        case_name(r),
        tokens.join(" / "),
        bounds.join(" / "),
        clients.join(" / "),
        efficiency,
        r.max_calls_per_node("GetAuthorizationToken"),
        median(&rss),
        median(&pss),
    )
}

/// The table's header.
pub const HEADER: &str = "| case | T50 / T90 / T99 / T100 to a token (s) | bound (s) | to the first client success (s) | efficiency (bound ÷ T100) | GetAuthorizationToken per node: admitted + rejected | AssumeRole per node: admitted + rejected | most GetAuthorizationToken calls by one node | RSS / PSS per daemon (KiB, median) |\n|---|---|---|---|---|---|---|---|---|";

/// Nodes holding a token over time for each run of one case (this policy,
/// the baseline, ecr-login), the first run's clients served, and the
/// bound's line. `runs` is not empty and its runs share nodes and buckets.
pub fn plot(runs: &[&FleetResult]) -> String {
    let Some(r) = runs.first() else { return String::new() };
    let (w, h, left, bottom) = (760.0, 360.0, 60.0, 40.0);
    let n = r.spec.nodes as f64;
    let ends = runs
        .iter()
        .map(|r| r.token_quantile(1.0).unwrap_or(r.wall).max(r.client_quantile(1.0).unwrap_or(0.0)));
    let end = ends.fold(1.0, f64::max) * 1.1;
    let x = |t: f64| left + t / end * (w - left - 20.0);
    let y = |k: f64| (h - bottom) - k / n * (h - bottom - 20.0);
    let legend = 2 + runs.len();
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        h + 8.0 + 16.0 * legend as f64
    );
    for i in 0..=5 {
        let t = end * f64::from(i) / 5.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"20\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#ddd\"/><text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{t:.0} s</text>",
            x(t),
            h - bottom,
            h - bottom + 16.0
        );
    }
    let _ = writeln!(svg, "<text x=\"{:.1}\" y=\"24\" text-anchor=\"end\">{n}</text>", left - 6.0);
    let _ =
        writeln!(svg, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">0</text>", left - 6.0, y(0.0) + 4.0);
    let steps = |times: Vec<f64>| {
        let mut sorted = times;
        sorted.sort_by(f64::total_cmp);
        let mut pts = vec![format!("{:.1},{:.1}", x(0.0), y(0.0))];
        for (k, t) in sorted.iter().enumerate() {
            pts.push(format!("{:.1},{:.1}", x(*t), y(k as f64)));
            pts.push(format!("{:.1},{:.1}", x(*t), y((k + 1) as f64)));
        }
        pts.join(" ")
    };
    let bound: Vec<String> = (0..=100)
        .map(|i| {
            let frac = f64::from(i) / 100.0;
            format!("{:.1},{:.1}", x(r.bound(frac)), y(frac * n))
        })
        .collect();
    const COLORS: [&str; 4] = ["#1b7837", "#2166ac", "#d6604d", "#762a83"];
    let mut lines = vec![("#888".to_owned(), "the bound".to_owned(), bound.join(" "))];
    for (k, run) in runs.iter().enumerate() {
        let color = COLORS[k % COLORS.len()].to_owned();
        let label = format!("{}: nodes holding a token", contender(&run.spec.contender));
        lines.push((color, label, steps(run.nodes.iter().filter_map(|n| n.token).collect())));
    }
    let clients = steps(r.nodes.iter().filter_map(|n| n.client).collect());
    lines.push(("#c51b7d".to_owned(), format!("{}: clients served", contender(&r.spec.contender)), clients));
    for (i, (color, label, points)) in lines.iter().enumerate() {
        let dash = if i == 0 { " stroke-dasharray=\"6 4\"" } else { "" };
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{dash} points=\"{points}\"/>"
        );
        let _ = writeln!(
            svg,
            "<text x=\"{left}\" y=\"{:.1}\" fill=\"{color}\">{label}</text>",
            h + 4.0 + 16.0 * i as f64
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
        w / 2.0,
        h - 6.0,
        case_name(r)
    );
    svg.push_str("</svg>\n");
    svg
}
