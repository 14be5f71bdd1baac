//! Hand-written SVG charts for the run reports: ReLUs kept per layer, accuracy per
//! corruption, and CA / NPA / AdvA against ReLU count across runs.
//!
//! Plain SVG 1.1 text with no scripts, fonts or timestamps: the same report gives the same
//! bytes, and any browser or Markdown viewer shows it. Every bar and marker carries a
//! `<title>` with its exact value (shown on hover).

use super::run::{compact_count, Headlines, Run};
use super::seeds::{MethodSummary, Stat, METRICS};
use crate::eval::corrupt::NpaReport;
use crate::eval::masking::EpsPoint;
use crate::report::run::LayerRelus;
use std::fmt::Write;

const W: f64 = 760.0;
const H: f64 = 440.0;
/// Plot area margins: room for the title (top), y labels (left), legend (right) and rotated
/// category names (bottom).
const LEFT: f64 = 80.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 110.0;
/// Colour-blind-safe (Okabe-Ito) series colours.
const COLOURS: [&str; 7] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000",
];
const GREY: &str = "#BBBBBB";

/// Escapes text for XML content and attribute values.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            _ => o.push(c),
        }
    }
    o
}

/// A step of 1, 2 or 5 × 10^k giving about `n` ticks up to `max`.
fn nice_step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(1e-12);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * mag)
}

/// A chart under construction: the plot area maps `[0, x_max] × [0, y_max]`, or with
/// `x_log` = (lo, hi) the x range `[10^lo, 10^hi]` on a log scale.
struct Chart {
    out: String,
    x_max: f64,
    x_log: Option<(f64, f64)>,
    y_max: f64,
}

impl Chart {
    /// `categories`: the x axis names categories (rotated, so its label sits lower) rather
    /// than numbers.
    fn new(
        title: &str,
        (x_label, y_label): (&str, &str),
        categories: bool,
        x_max: f64,
        y_max: f64,
    ) -> Chart {
        let mut out = String::new();
        let _ = write!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
             viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <title>{t}</title>\n\
             <rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n\
             <text x=\"{cx}\" y=\"28\" text-anchor=\"middle\" font-size=\"16\" \
             font-weight=\"bold\">{t}</text>\n\
             <text x=\"{cx}\" y=\"{xy}\" text-anchor=\"middle\">{xl}</text>\n\
             <text transform=\"translate(18 {cy}) rotate(-90)\" text-anchor=\"middle\">{yl}</text>\n",
            t = esc(title),
            cx = LEFT + (W - LEFT - RIGHT) / 2.0,
            xy = if categories { H - 8.0 } else { H - BOTTOM + 40.0 },
            cy = TOP + (H - TOP - BOTTOM) / 2.0,
            xl = esc(x_label),
            yl = esc(y_label),
        );
        Chart {
            out,
            x_max: x_max.max(1e-12),
            x_log: None,
            y_max: y_max.max(1e-12),
        }
    }

    fn px(&self, x: f64) -> f64 {
        let f = match self.x_log {
            Some((lo, hi)) => (x.max(1e-12).log10() - lo) / (hi - lo),
            None => x / self.x_max,
        };
        LEFT + f * (W - LEFT - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        H - BOTTOM - y / self.y_max * (H - TOP - BOTTOM)
    }

    /// Horizontal grid lines and y tick labels every `step`, formatted by `fmt`.
    fn y_axis(&mut self, step: f64, fmt: impl Fn(f64) -> String) {
        let mut v = 0.0;
        while v <= self.y_max + step * 1e-6 {
            let y = self.py(v);
            let _ = writeln!(
                self.out,
                "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{x2:.1}\" y2=\"{y:.1}\" stroke=\"#E5E5E5\"/>\n\
                 <text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\">{l}</text>",
                x2 = W - RIGHT,
                tx = LEFT - 6.0,
                ty = y + 4.0,
                l = esc(&fmt(v)),
            );
            v += step;
        }
    }

    /// Vertical ticks and labels every `step` along x (at 1, 2, 5 × 10^k on a log axis).
    fn x_axis(&mut self, step: f64, fmt: impl Fn(f64) -> String) {
        let ticks: Vec<f64> = match self.x_log {
            Some((lo, hi)) => (lo.floor() as i32..hi.ceil() as i32 + 1)
                .flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k)))
                .filter(|v| (lo..=hi).contains(&v.log10()))
                .collect(),
            None => (0..)
                .map(|i| i as f64 * step)
                .take_while(|v| *v <= self.x_max + step * 1e-6)
                .collect(),
        };
        for v in ticks {
            let x = self.px(v);
            let _ = writeln!(
                self.out,
                "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{y:.1}\" stroke=\"#E5E5E5\"/>\n\
                 <text x=\"{x:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\">{l}</text>",
                y = H - BOTTOM,
                ty = H - BOTTOM + 16.0,
                l = esc(&fmt(v)),
            );
        }
    }

    /// The axis lines, drawn over the grid.
    fn frame(&mut self) {
        let (x0, y0, x1) = (LEFT, H - BOTTOM, W - RIGHT);
        let _ = writeln!(
            self.out,
            "<line x1=\"{x0}\" y1=\"{TOP}\" x2=\"{x0}\" y2=\"{y0}\" stroke=\"black\"/>\n\
             <line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"black\"/>"
        );
    }

    /// Category names under the plot, rotated so long layer names fit.
    fn category(&mut self, centre: f64, name: &str) {
        let y = H - BOTTOM + 12.0;
        let _ = writeln!(
            self.out,
            "<text transform=\"translate({centre:.1} {y:.1}) rotate(-40)\" \
             text-anchor=\"end\" font-size=\"10\">{}</text>",
            esc(name)
        );
    }

    fn bar(&mut self, x: f64, width: f64, value: f64, fill: &str, tip: &str) {
        let (top, bottom) = (self.py(value), self.py(0.0));
        let _ = writeln!(
            self.out,
            "<rect x=\"{x:.1}\" y=\"{top:.1}\" width=\"{width:.1}\" height=\"{h:.1}\" \
             fill=\"{fill}\"><title>{}</title></rect>",
            esc(tip),
            h = bottom - top,
        );
    }

    /// Legend entries at the right of the plot: (swatch SVG centred on (0,0), label).
    fn legend(&mut self, entries: &[(String, String)]) {
        let x = W - RIGHT + 14.0;
        for (i, (swatch, label)) in entries.iter().enumerate() {
            let y = TOP + 10.0 + 20.0 * i as f64;
            let _ = writeln!(
                self.out,
                "<g transform=\"translate({x} {y})\">{swatch}</g>\n\
                 <text x=\"{tx}\" y=\"{ty}\">{l}</text>",
                tx = x + 18.0,
                ty = y + 4.0,
                l = esc(label),
            );
        }
    }

    fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

fn square(fill: &str) -> String {
    format!("<rect x=\"-6\" y=\"-6\" width=\"12\" height=\"12\" fill=\"{fill}\"/>")
}

fn dashed(colour: &str) -> String {
    format!(
        "<line x1=\"-8\" y1=\"0\" x2=\"8\" y2=\"0\" stroke=\"{colour}\" stroke-width=\"2\" \
         stroke-dasharray=\"4 2\"/>"
    )
}

/// One of three marker shapes centred on (0,0), for the metric series.
fn marker(kind: usize, fill: &str) -> String {
    match kind {
        0 => format!("<circle r=\"5\" fill=\"{fill}\"/>"),
        1 => format!("<rect x=\"-4.5\" y=\"-4.5\" width=\"9\" height=\"9\" fill=\"{fill}\"/>"),
        _ => format!("<path d=\"M0 -6 L5.5 4 L-5.5 4 Z\" fill=\"{fill}\"/>"),
    }
}

fn pct(v: f64) -> String {
    format!("{v:.0}%")
}

/// "ReLUs kept per layer": total (grey) and kept (blue) bars per ReLU layer.
pub fn relus_per_layer(model: &str, layers: &[LayerRelus]) -> String {
    let max = layers.iter().map(|l| l.relus).max().unwrap_or(1) as f64;
    let step = nice_step(max, 5.0);
    let y_max = (max / step).ceil() * step;
    let n = layers.len().max(1) as f64;
    let mut c = Chart::new(
        &format!("ReLUs kept per layer ({model})"),
        ("ReLU layer", "ReLUs (count per image)"),
        true,
        n,
        y_max,
    );
    c.y_axis(step, |v| compact_count(v as usize));
    let slot = (W - LEFT - RIGHT) / n;
    for (i, l) in layers.iter().enumerate() {
        let x = c.px(i as f64);
        let pct = 100.0 * l.kept as f64 / l.relus.max(1) as f64;
        let tip = format!("{}: kept {} of {} ({pct:.1}%)", l.name, l.kept, l.relus);
        c.bar(x + 0.1 * slot, 0.4 * slot, l.relus as f64, GREY, &tip);
        c.bar(x + 0.5 * slot, 0.4 * slot, l.kept as f64, COLOURS[0], &tip);
        c.category(x + 0.5 * slot, &l.name);
    }
    c.frame();
    c.legend(&[
        (square(GREY), "total".into()),
        (square(COLOURS[0]), "kept".into()),
    ]);
    c.finish()
}

/// "Accuracy per corruption": one bar per corruption (mean over severities) per BN set, and
/// each BN set's NPA as a dashed line.
pub fn accuracy_per_corruption(reports: &[NpaReport]) -> String {
    // Corruption names in first-seen order, so every BN set shares one axis.
    let mut names: Vec<&str> = Vec::new();
    for r in reports {
        for c in &r.corruptions {
            if !names.contains(&c.corruption.as_str()) {
                names.push(&c.corruption);
            }
        }
    }
    let n = names.len().max(1) as f64;
    let mut c = Chart::new(
        "Accuracy per corruption (mean over severities)",
        ("corruption", "accuracy (%)"),
        true,
        n,
        100.0,
    );
    c.y_axis(20.0, pct);
    let slot = (W - LEFT - RIGHT) / n;
    let k = reports.len().max(1) as f64;
    let bar_w = 0.8 * slot / k;
    let mut legend = Vec::new();
    for (j, r) in reports.iter().enumerate() {
        let colour = COLOURS[j % COLOURS.len()];
        for ca in &r.corruptions {
            let i = names.iter().position(|&s| s == ca.corruption).unwrap_or(0);
            let x = c.px(i as f64) + 0.1 * slot + j as f64 * bar_w;
            let m = 100.0 * ca.mean as f64;
            let sev: Vec<String> = ca
                .by_severity
                .iter()
                .map(|(s, a)| format!("s{s} {:.1}%", 100.0 * a))
                .collect();
            let tip = format!(
                "{} BN_{}: {m:.1}% ({})",
                ca.corruption,
                r.bn,
                sev.join(", ")
            );
            c.bar(x, bar_w, m, colour, &tip);
        }
        legend.push((square(colour), format!("BN_{}", r.bn)));
        if let Some(npa) = r.npa {
            let y = c.py(100.0 * npa as f64);
            // The value goes in the legend, after its BN set's entry and in its colour: beside the
            // line it would cover bars or run off the plot.
            let _ = writeln!(
                c.out,
                "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{x2}\" y2=\"{y:.1}\" stroke=\"{colour}\" \
                 stroke-width=\"2\" stroke-dasharray=\"6 3\"><title>NPA BN_{bn}: {v:.1}%</title></line>",
                x2 = W - RIGHT,
                bn = esc(&r.bn),
                v = 100.0 * npa,
            );
            legend.push((dashed(colour), format!("NPA {:.1}%", 100.0 * npa)));
        }
    }
    for (i, name) in names.iter().enumerate() {
        let centre = c.px(i as f64) + 0.5 * slot;
        c.category(centre, name);
    }
    c.frame();
    c.legend(&legend);
    c.finish()
}

/// "Robust accuracy against ε": one line per series (a BN set, or a run and BN set in a
/// comparison), PGD accuracy at each ε of the sweep, ε in units of 1/255.
pub fn accuracy_vs_eps(series: &[(String, Vec<EpsPoint>)]) -> String {
    let lines: Vec<Line> = series
        .iter()
        .map(|(name, pts)| Line {
            name: name.clone(),
            points: pts
                .iter()
                .map(|p| (255.0 * p.eps as f64, 100.0 * p.acc as f64))
                .collect(),
            tip: |n, x, y| format!("{n}: {y:.1}% at eps {x:.1}/255"),
        })
        .collect();
    line_chart(
        "Robust accuracy against eps (PGD)",
        "eps (L-inf, units of 1/255)",
        0.0,
        &lines,
    )
}

/// One epoch of a stage's history, as the training-curve chart reads it.
pub struct EpochCurve {
    pub epoch: usize,
    pub loss: f32,
    pub clean_train_acc: f32,
    pub adv_train_acc: f32,
    /// Validation accuracies measured that epoch: (label, accuracy).
    pub val: Vec<(String, f32)>,
}

/// "Training curves": per epoch (from 1) the train accuracy on clean and adversarial batches,
/// each validation accuracy measured, and the loss drawn as a share of its largest value.
pub fn training_curves(stage: &str, history: &[EpochCurve]) -> String {
    let max_loss = history
        .iter()
        .map(|e| e.loss as f64)
        .fold(f64::MIN_POSITIVE, f64::max);
    let epoch = |e: &EpochCurve| (e.epoch + 1) as f64;
    let mut lines = vec![
        Line {
            name: "train acc (clean)".into(),
            points: history
                .iter()
                .map(|e| (epoch(e), 100.0 * e.clean_train_acc as f64))
                .collect(),
            tip: |n, x, y| format!("{n}: {y:.1}% at epoch {x}"),
        },
        Line {
            name: "train acc (adv)".into(),
            points: history
                .iter()
                .map(|e| (epoch(e), 100.0 * e.adv_train_acc as f64))
                .collect(),
            tip: |n, x, y| format!("{n}: {y:.1}% at epoch {x}"),
        },
    ];
    let mut labels: Vec<&str> = Vec::new();
    for e in history {
        for (l, _) in &e.val {
            if !labels.contains(&l.as_str()) {
                labels.push(l);
            }
        }
    }
    for label in labels {
        lines.push(Line {
            name: label.to_string(),
            points: history
                .iter()
                .filter_map(|e| {
                    let v = e.val.iter().find(|(l, _)| l == label)?.1;
                    Some((epoch(e), 100.0 * v as f64))
                })
                .collect(),
            tip: |n, x, y| format!("{n}: {y:.1}% at epoch {x}"),
        });
    }
    lines.push(Line {
        name: format!("loss (% of {max_loss:.3})"),
        points: history
            .iter()
            .map(|e| (epoch(e), 100.0 * e.loss as f64 / max_loss))
            .collect(),
        tip: |n, x, y| format!("{n}: {y:.1}% at epoch {x}"),
    });
    line_chart(&format!("Training curves: {stage}"), "epoch", 1.0, &lines)
}

/// A named series of (x, y) points, y in percent; `tip` writes a point's hover text.
struct Line {
    name: String,
    points: Vec<(f64, f64)>,
    tip: fn(&str, f64, f64) -> String,
}

/// Lines with markers over x from 0 and y from 0 to 100 %; x ticks at least `min_step` apart
/// (1 for epochs).
fn line_chart(title: &str, x_label: &str, min_step: f64, lines: &[Line]) -> String {
    let max_x = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let step = nice_step(max_x, 6.0).max(min_step);
    let x_max = (max_x / step).ceil() * step;
    let mut c = Chart::new(title, (x_label, "accuracy (%)"), false, x_max, 100.0);
    c.y_axis(20.0, pct);
    c.x_axis(step, |v| format!("{v}"));
    c.frame();
    let mut legend = Vec::new();
    for (k, line) in lines.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let path: Vec<String> = line
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", c.px(x), c.py(y)))
            .collect();
        let _ = writeln!(
            c.out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>",
            path.join(" ")
        );
        for &(x, y) in &line.points {
            let _ = writeln!(
                c.out,
                "<g transform=\"translate({:.1} {:.1})\">{m}<title>{t}</title></g>",
                c.px(x),
                c.py(y),
                m = marker(k % 3, colour),
                t = esc(&(line.tip)(&line.name, x, y)),
            );
        }
        legend.push((marker(k % 3, colour), line.name.clone()));
    }
    c.legend(&legend);
    c.finish()
}

/// "CA / NPA / AdvA against ReLU count": one marker series per metric, each point labelled
/// with its run's method and budget. Runs missing a metric simply have no point for it. The
/// x axis is logarithmic when the counts span 20× or more (an all-ReLU teacher next to
/// searched budgets), linear otherwise.
pub fn metrics_vs_relus(runs: &[Run]) -> String {
    let counts = runs.iter().map(|r| r.report.kept_relus as f64);
    let max = counts.clone().fold(1.0, f64::max);
    let min = counts.fold(f64::INFINITY, f64::min);
    let step = nice_step(max, 5.0);
    let x_max = (max / step).floor() * step + step;
    let log = min >= 1.0 && max / min >= 20.0;
    let mut c = Chart::new(
        "CA / NPA / AdvA against ReLU count",
        (
            if log {
                "ReLUs kept (count per image, log scale)"
            } else {
                "ReLUs kept (count per image)"
            },
            "accuracy (%)",
        ),
        false,
        x_max,
        100.0,
    );
    if log {
        // A fifth of a decade of room either side keeps the end markers off the frame.
        c.x_log = Some((min.log10() - 0.2, max.log10() + 0.2));
    }
    c.y_axis(20.0, pct);
    c.x_axis(step, |v| compact_count(v as usize));
    c.frame();
    type Metric = fn(&Run) -> Option<f32>;
    let metrics: [(&str, Metric); 3] = [
        ("CA", |r| r.report.ca()),
        ("NPA", |r| r.report.npa()),
        ("AdvA", |r| r.report.adva().map(|a| a.0)),
    ];
    let mut legend = Vec::new();
    for (k, (name, get)) in metrics.iter().enumerate() {
        let colour = COLOURS[k];
        for run in runs {
            let Some(v) = get(run) else { continue };
            let (x, y) = (c.px(run.report.kept_relus as f64), c.py(100.0 * v as f64));
            let label = run.label();
            // Labels of points in the right quarter go to their left, clear of the legend.
            let right = x > W - RIGHT - 0.25 * (W - LEFT - RIGHT);
            let (tx, anchor) = if right {
                (x - 7.0, "end")
            } else {
                (x + 7.0, "start")
            };
            let _ = writeln!(
                c.out,
                "<g transform=\"translate({x:.1} {y:.1})\">{m}<title>{name} {l}: {v:.1}% at {r} ReLUs</title></g>\n\
                 <text x=\"{tx:.1}\" y=\"{ty:.1}\" font-size=\"10\" fill=\"{colour}\" \
                 text-anchor=\"{anchor}\">{l}</text>",
                m = marker(k, colour),
                l = esc(&label),
                v = 100.0 * v,
                r = run.report.kept_relus,
                ty = y + 3.5,
            );
        }
        legend.push((marker(k, colour), name.to_string()));
    }
    c.legend(&legend);
    c.finish()
}

/// "Mean ± standard deviation over seeds": per method a bar for each headline number
/// measured (its mean) with an error bar of one standard deviation, then the teachers'
/// groups (one per distinct teacher: methods that share a teacher share its group).
pub fn seeds_chart(methods: &[MethodSummary]) -> String {
    let mut groups: Vec<(String, [Option<Stat>; 4])> = methods
        .iter()
        .map(|m| (m.name.clone(), m.student))
        .collect();
    let mut teachers: Vec<(Vec<&str>, [Option<Stat>; 4])> = Vec::new();
    for m in methods
        .iter()
        .filter(|m| m.teacher.iter().any(Option::is_some))
    {
        match teachers.iter_mut().find(|t| t.1 == m.teacher) {
            Some(t) => t.0.push(&m.name),
            None => teachers.push((vec![&m.name], m.teacher)),
        }
    }
    // Named after its first method, so the rotated label stays inside the chart; the bars'
    // tooltips name every method that shares it.
    let mut shared_by = vec![String::new(); groups.len()];
    for (names, t) in teachers {
        groups.push((format!("teacher of {}", names[0]), t));
        shared_by.push(match names.len() {
            1 => String::new(),
            _ => format!(" (shared by {})", names.join(", ")),
        });
    }
    let shown: Vec<usize> = (0..METRICS.len())
        .filter(|&k| groups.iter().any(|g| g.1[k].is_some()))
        .collect();
    let n = groups.len().max(1) as f64;
    let mut c = Chart::new(
        "Mean ± standard deviation over seeds",
        ("method", "accuracy (%)"),
        true,
        n,
        100.0,
    );
    c.y_axis(20.0, pct);
    let slot = (W - LEFT - RIGHT) / n;
    let bar_w = 0.8 * slot / shown.len().max(1) as f64;
    for (i, (name, stats)) in groups.iter().enumerate() {
        for (j, &k) in shown.iter().enumerate() {
            let Some(st) = stats[k] else { continue };
            let colour = COLOURS[j % COLOURS.len()];
            let x = c.px(i as f64) + 0.1 * slot + j as f64 * bar_w;
            let tip = format!(
                "{name} {}: {:.1} ± {:.1}% over {} runs{}",
                METRICS[k], st.mean, st.std, st.n, shared_by[i]
            );
            c.bar(x, bar_w, st.mean, colour, &tip);
            let (cx, lo, hi) = (
                x + bar_w / 2.0,
                c.py((st.mean - st.std).max(0.0)),
                c.py((st.mean + st.std).min(100.0)),
            );
            let _ = writeln!(
                c.out,
                "<path d=\"M{cx:.1} {lo:.1}V{hi:.1}M{a:.1} {lo:.1}H{b:.1}M{a:.1} {hi:.1}H{b:.1}\" \
                 stroke=\"black\" fill=\"none\"/>",
                a = cx - bar_w / 4.0,
                b = cx + bar_w / 4.0,
            );
        }
        c.category(c.px(i as f64) + 0.5 * slot, name);
    }
    c.frame();
    let legend: Vec<(String, String)> = shown
        .iter()
        .enumerate()
        .map(|(j, &k)| (square(COLOURS[j % COLOURS.len()]), METRICS[k].to_string()))
        .collect();
    c.legend(&legend);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(100.0, 5.0), 20.0);
        assert_eq!(nice_step(65_536.0, 5.0), 20_000.0);
        assert_eq!(nice_step(7.0, 5.0), 2.0);
        assert_eq!(nice_step(0.5, 5.0), 0.1);
    }

    #[test]
    fn training_curves_draw_one_line_per_series_with_whole_epoch_ticks() {
        let epoch = |e: usize, val: Vec<(String, f32)>| EpochCurve {
            epoch: e,
            loss: 2.0 - e as f32 * 0.5,
            clean_train_acc: 0.3 + 0.1 * e as f32,
            adv_train_acc: 0.2,
            val,
        };
        let history = vec![
            epoch(0, vec![("val BN_clean clean".into(), 0.4)]),
            epoch(
                1,
                vec![
                    ("val BN_clean clean".into(), 0.5),
                    ("val BN_adv PGD".into(), 0.1),
                ],
            ),
            epoch(2, vec![("val BN_clean clean".into(), 0.55)]),
        ];
        let svg = training_curves("search", &history);
        // Train clean, train adv, two validation series and the loss.
        assert_eq!(svg.matches("<polyline").count(), 5);
        assert!(svg.contains("Training curves: search") && svg.contains("loss (% of 2.000)"));
        assert!(svg.contains("val BN_adv PGD: 10.0% at epoch 2"));
        assert!(!svg.contains(">0.5<"), "epoch ticks are whole numbers");
        assert_eq!(
            svg,
            training_curves("search", &history),
            "same input, same bytes"
        );
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(esc("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
