//! Replay results as a terminal table and as an SVG plot of cost against tasks solved.

use super::policies::PolicyResult;
use crate::ledger::{format_dollars, format_dollars_fixed};
use crate::store::MicroUsd;

/// Decimal places of every dollar column of the table: one width a column, so that amounts
/// line up and compare at a glance.
const DECIMALS: u32 = 4;

/// The results as a terminal table, in the order given. `cost` includes the verifier's cost
/// of each attempt; `spend on unsolved` is the share of `cost` spent on tasks that ended
/// unsolved.
pub fn render_text(results: &[PolicyResult]) -> String {
    let usd = |m: MicroUsd| format_dollars_fixed(m, DECIMALS);
    let mut s = format!(
        "{:<56} {:>7} {:>14} {:>9} {:>12} {:>19}\n",
        "policy", "solved", "cost", "attempts", "per solved", "spend on unsolved"
    );
    for r in results {
        s.push_str(&format!(
            "{:<56} {:>7} {:>14} {:>9} {:>12} {:>18.1}%\n",
            r.name,
            r.solved,
            usd(r.cost_micros),
            r.attempts,
            r.cost_per_solved_micros
                .map(usd)
                .unwrap_or_else(|| "-".into()),
            r.unsolved_spend_share * 100.0
        ));
    }
    s
}

/// An SVG plot of cost against tasks solved, one labelled point per policy.
pub fn render_svg(results: &[PolicyResult]) -> String {
    let (w, h, pad) = (900.0_f64, 560.0_f64, 70.0_f64);
    let max_cost = results
        .iter()
        .map(|r| r.cost_micros.get())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let max_solved = results.iter().map(|r| r.solved).max().unwrap_or(1).max(1) as f64;
    let min_solved = results.iter().map(|r| r.solved).min().unwrap_or(0) as f64;
    let span = (max_solved - min_solved).max(1.0);
    let x = |cost: MicroUsd| pad + (cost.as_f64() / max_cost) * (w - 2.0 * pad);
    let y = |solved: u32| h - pad - ((solved as f64 - min_solved) / span) * (h - 2.0 * pad);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <text x=\"{cx}\" y=\"{lx}\" text-anchor=\"middle\">cost ({} at the right edge)</text>\n\
         <text x=\"16\" y=\"{cy}\" transform=\"rotate(-90 16 {cy})\" text-anchor=\"middle\">tasks solved ({} to {})</text>\n",
        format_dollars(MicroUsd::from_f64(max_cost)),
        min_solved,
        max_solved,
        b = h - pad,
        r = w - pad,
        cx = w / 2.0,
        lx = h - 25.0,
        cy = h / 2.0,
    );
    for r in results {
        let (px, py) = (x(r.cost_micros), y(r.solved));
        let color = if r.name == "oracle" {
            "#2a9d8f"
        } else if r.name.starts_with("cascade") || r.name.starts_with("router") {
            "#e76f51"
        } else {
            "#264653"
        };
        s.push_str(&format!(
            "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"4\" fill=\"{color}\"><title>{}: {} solved, {}</title></circle>\n\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            xml_escape(&r.name),
            r.solved,
            format_dollars(r.cost_micros),
            px + 6.0,
            py - 4.0,
            xml_escape(&r.name)
        ));
    }
    s.push_str("</svg>\n");
    s
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_columns_have_one_width_and_the_share_is_named() {
        let mut a = PolicyResult::new("a");
        a.cost_micros = MicroUsd(140_191_550);
        a.solved = 2;
        a.cost_per_solved_micros = Some(MicroUsd(175_800));
        let mut b = PolicyResult::new("b");
        b.cost_micros = MicroUsd(22_000);
        b.solved = 1;
        b.cost_per_solved_micros = Some(MicroUsd(22_000));
        let text = render_text(&[a, b]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("spend on unsolved"), "{text}");
        // $140.19155 rounds half up to $140.1916; $0.1758 and $0.022 get four places.
        assert!(
            lines[1].contains("$140.1916") && lines[1].contains("$0.1758"),
            "{text}"
        );
        assert!(lines[2].contains("$0.0220"), "{text}");
        assert_eq!(lines[1].len(), lines[2].len());
    }
}
