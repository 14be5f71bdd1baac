//! Reports: the SVG charts are well-formed XML with their titles, labels and values, report.md
//! holds the tables, and `rlnet report` writes per-run reports and a comparison (on a real
//! stage-1 run and on hand-written report.json fixtures), with clear errors for bad folders.

use rlnet::eval::corrupt::{CorruptionAccuracy, NpaReport};
use rlnet::report::folders::find_runs;
use rlnet::report::markdown;
use rlnet::report::run::{LayerRelus, Run};
use rlnet::report::svg;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn rlnet(args: &[&str]) -> Output {
    let bin = std::env::var_os("RLNET_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_rlnet").into());
    Command::new(bin).args(args).output().expect("run rlnet")
}

fn tmp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("rlnet-report-{}-{name}", std::process::id()));
    std::fs::remove_dir_all(&p).ok();
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Parses `svg` (panicking on malformed XML) and returns every text node, in order.
fn svg_texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).expect("well-formed SVG");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    doc.descendants()
        .filter_map(|n| n.text())
        .map(|t| t.to_string())
        .filter(|t| !t.trim().is_empty())
        .collect()
}

fn has(texts: &[String], s: &str) -> bool {
    texts.iter().any(|t| t == s)
}

fn layers() -> Vec<LayerRelus> {
    vec![
        LayerRelus {
            name: "stem<relu>".into(),
            relus: 4096,
            kept: 1024,
        },
        LayerRelus {
            name: "layer1.0.relu1".into(),
            relus: 2048,
            kept: 0,
        },
    ]
}

fn npa_report(bn: &str, accs: &[(&str, f32)], npa: Option<f32>) -> NpaReport {
    NpaReport {
        bn: bn.into(),
        corruptions: accs
            .iter()
            .map(|&(c, a)| CorruptionAccuracy {
                corruption: c.into(),
                by_severity: vec![(1, a + 0.1), (5, a - 0.1)],
                mean: a,
            })
            .collect(),
        npa,
        npa_corruptions: accs.len(),
        mean_all: accs.iter().map(|a| a.1).sum::<f32>() / accs.len() as f32,
        skipped: vec![("frost".into(), "no textures".into())],
    }
}

#[test]
fn relus_per_layer_chart_names_layers_and_values() {
    let s = svg::relus_per_layer("resnet18", &layers());
    let t = svg_texts(&s);
    assert!(has(&t, "ReLUs kept per layer (resnet18)"), "{t:?}");
    assert!(has(&t, "ReLU layer"));
    assert!(has(&t, "ReLUs (count per image)"));
    // Names with markup characters survive escaping; values are in the tooltips.
    assert!(has(&t, "stem<relu>"));
    assert!(has(&t, "layer1.0.relu1"));
    assert!(has(&t, "stem<relu>: kept 1024 of 4096 (25.0%)"));
    assert!(has(&t, "layer1.0.relu1: kept 0 of 2048 (0.0%)"));
    assert!(has(&t, "kept") && has(&t, "total"));
    // The y axis reaches the largest layer: ticks up to 4K at a 1K step.
    assert!(has(&t, "4K") && has(&t, "1K"));
    // The same input gives the same bytes (no timestamps or random ids).
    assert_eq!(s, svg::relus_per_layer("resnet18", &layers()));
}

#[test]
fn corruption_chart_has_bars_and_npa_line() {
    let reports = vec![
        npa_report("clean", &[("fog", 0.5), ("snow", 0.25)], Some(0.375)),
        npa_report("adv", &[("fog", 0.4)], None),
    ];
    let t = svg_texts(&svg::accuracy_per_corruption(&reports));
    assert!(has(&t, "Accuracy per corruption (mean over severities)"));
    assert!(has(&t, "accuracy (%)") && has(&t, "corruption"));
    assert!(has(&t, "fog") && has(&t, "snow"));
    assert!(has(&t, "fog BN_clean: 50.0% (s1 60.0%, s5 40.0%)"), "{t:?}");
    assert!(has(&t, "fog BN_adv: 40.0% (s1 50.0%, s5 30.0%)"));
    assert!(has(&t, "NPA 37.5%"));
    assert!(has(&t, "NPA BN_clean: 37.5%"), "the dashed line's tooltip");
    // No NPA for BN_adv, so no line or legend entry for it.
    assert!(!t.iter().any(|x| x.contains("NPA BN_adv")));
    // The NPA label sits in the legend, right of the plot, never over the bars.
    let chart = svg::accuracy_per_corruption(&reports);
    let doc = roxmltree::Document::parse(&chart).unwrap();
    let label = doc
        .descendants()
        .find(|n| n.has_tag_name("text") && n.text() == Some("NPA 37.5%"))
        .unwrap();
    let x: f64 = label.attribute("x").unwrap().parse().unwrap();
    assert!(x > 610.0, "NPA label at x = {x}, inside the plot");
}

fn write_fixture(dir: &Path, json: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("report.json"), json).unwrap();
}

/// A stage-3 style report with every optional key.
fn distilled(kept: usize, budget: usize, ca: f32, adv: f32, npa: f32) -> String {
    format!(
        r#"{{"stage":"distill","method":"rlnet","model":"resnet18","dataset":"cifar10",
        "device":"cuda:0 (H200)","budget":{budget},"total_relus":6144,"kept_relus":{kept},
        "metrics":{{"per_bn":[
          {{"bn":"clean","images":100,"clean_acc":{ca},"pgd_acc":0.1,"pgd_steps":20}},
          {{"bn":"adv","images":100,"clean_acc":0.5,"pgd_acc":{adv},"pgd_steps":20}}]}},
        "corruptions":[{{"bn":"clean","corruptions":[
          {{"corruption":"fog","by_severity":[[1,{npa}]],"mean":{npa}}}],
          "npa":{npa},"npa_corruptions":1,"mean_all":{npa},"skipped":[]}}],
        "relu_layers":[{{"name":"relu","relus":4096,"kept":{k0}}},
                       {{"name":"layer1.0.relu1","relus":2048,"kept":{k1}}}],
        "train_secs":754.0,"images_per_sec":1234.5,
        "stages":[{{"stage":"search","secs":120.0}},{{"stage":"distill","secs":634.0,"images_per_sec":1234.5}}]}}"#,
        k0 = kept / 2,
        k1 = kept - kept / 2,
    )
}

#[test]
fn report_md_has_summary_layer_and_corruption_rows() {
    let d = tmp("md");
    write_fixture(&d, &distilled(1000, 1000, 0.8125, 0.375, 0.625));
    let run = Run::load(&d).unwrap();
    let md = markdown::run_report(&run, &["relus_per_layer.svg"]);
    for row in [
        "| stage | distill |",
        "| method | rlnet |",
        "| device | cuda:0 (H200) |",
        "| ReLU budget | 1000 (1K) |",
        "| ReLUs kept / total | 1000 / 6144 (16.28%) |",
        // 1000 ReLUs × 23 µs, × 56 µs, × 18,248 B (Delphi, baselines.md §6).
        "| PI cost (Delphi, ReLUs only, per image) | 23.0 ms online, 56.0 ms offline, 18.2 MB |",
        "| CA (BN_c) % | 81.25 |",
        "| NPA (BN_c) % | 62.50 |",
        "| AdvA (BN_a, PGD-20) % | 37.50 |",
        "| training time (stages summed) | 12.6 min |",
        "| images/s | 1234.5 |",
        "| search | 2.0 min | – |",
        "| BN_clean | 81.25 | 10.00 | 20 | 62.50 |",
        "| BN_adv | 50.00 | 37.50 | 20 | – |",
        "| 0 | relu | 4096 | 500 | 12.21 |",
        "| 1 | layer1.0.relu1 | 2048 | 500 | 24.41 |",
        "| | total | 6144 | 1000 | |",
        "| fog | 62.50 |",
        "| **NPA** | **62.50** (1 corruptions) |",
        "![relus_per_layer.svg](relus_per_layer.svg)",
    ] {
        assert!(md.contains(row), "missing {row:?} in:\n{md}");
    }
}

/// `distilled` with its teacher measured beside it, as a pipeline writes it.
fn with_teacher(student: &str, ca: f32, adv: f32, npa: f32) -> String {
    let teacher = format!(
        r#","teacher":{{"total_relus":6144,"kept_relus":6144,
        "metrics":{{"per_bn":[{{"bn":"clean","clean_acc":{ca},"pgd_acc":0.2,"pgd_steps":20}},
                              {{"bn":"adv","clean_acc":0.7,"pgd_acc":{adv},"pgd_steps":20}}]}},
        "corruptions":[{{"bn":"clean","corruptions":[],"npa":{npa},"npa_corruptions":15,
                         "mean_all":{npa},"skipped":[]}}]}}}}"#
    );
    format!("{}{teacher}", student.trim_end().strip_suffix('}').unwrap())
}

#[test]
fn report_md_puts_teacher_and_student_side_by_side() {
    let d = tmp("side");
    let json = with_teacher(&distilled(1000, 1000, 0.8125, 0.375, 0.625), 0.9, 0.5, 0.75);
    write_fixture(&d, &json);
    let md = markdown::run_report(&Run::load(&d).unwrap(), &[]);
    for row in [
        "## Teacher and student",
        "| model | ReLUs | PI online ms | PI comm MB | CA % | NPA % | AdvA (BN_a, PGD-20) % |",
        // 6144 × 23 µs and × 18,248 B; the student's 1000 as in the summary.
        "| teacher (all-ReLU) | 6144 | 141.3 | 112.1 | 90.00 | 75.00 | 50.00 |",
        "| student | 1000 | 23.0 | 18.2 | 81.25 | 62.50 | 37.50 |",
        "| change | ÷6.1 | ÷6.1 | ÷6.1 | -8.75 | -12.50 | -12.50 |",
    ] {
        assert!(md.contains(row), "missing {row:?} in:\n{md}");
    }
    // A stage report without a teacher has no such section.
    write_fixture(&d, &distilled(1000, 1000, 0.8125, 0.375, 0.625));
    let md = markdown::run_report(&Run::load(&d).unwrap(), &[]);
    assert!(!md.contains("Teacher and student"));
}

#[test]
fn seeds_are_summarised_per_method_with_error_bars() {
    let root = tmp("seeds");
    // Two methods over two seeds; only seed 1 of "a" has AutoAttack (on fewer images).
    for (seed, a_ca, b_ca) in [(0, 0.6, 0.5), (1, 0.8, 0.5)] {
        let dir = root.join(format!("seed{seed}"));
        write_fixture(
            &dir.join("a"),
            &with_teacher(&distilled(1000, 1000, a_ca, 0.25, 0.5), 0.9, 0.5, 0.75),
        );
        write_fixture(
            &dir.join("b"),
            &with_teacher(&distilled(1000, 1000, b_ca, 0.125, 0.5), 0.9, 0.5, 0.75),
        );
    }
    std::fs::write(
        root.join("seed1/a/attacks.json"),
        r#"{"images":50,"results":[{"bn":"adv","images":50,"clean_acc":0.5,
            "attacks":[{"attack":"AA","eps":0.031,"acc":0.2,"secs":9.0}]}]}"#,
    )
    .unwrap();
    let runs = find_runs(&[root.join("seed0"), root.join("seed1")]).unwrap();
    assert_eq!(runs.len(), 4);
    let aa = runs[2].report.metrics.per_bn[1]
        .attacks
        .iter()
        .find(|a| a.attack.starts_with("AA"));
    assert_eq!(aa.unwrap().attack, "AA on 50 images", "the subset is named");
    let md = markdown::comparison(&runs, &vec![String::new(); 4]);
    for row in [
        "## Mean ± standard deviation over seeds",
        "| method | runs | ReLUs | CA % | NPA % | AdvA % | AA % | teacher CA % |",
        // CA 60 and 80: mean 70, sample deviation 14.14; AA from the one run that has it.
        "| a | 2 | 1000 | 70.00 ± 14.14 | 50.00 ± 0.00 | 25.00 ± 0.00 | 20.00 ± 0.00 | 90.00 ± 0.00 |",
        "| b | 2 | 1000 | 50.00 ± 0.00 | 50.00 ± 0.00 | 12.50 ± 0.00 | – | 90.00 ± 0.00 | 75.00 ± 0.00 | 50.00 ± 0.00 | – |",
    ] {
        assert!(md.contains(row), "missing {row:?} in:\n{md}");
    }
    let methods = rlnet::report::seeds::by_method(&runs).unwrap();
    let chart = svg::seeds_chart(&methods);
    let t = svg_texts(&chart);
    assert!(has(&t, "a CA: 70.0 ± 14.1% over 2 runs"), "{t:?}");
    // a and b share one teacher: one group, named after a, its tooltips naming both.
    assert!(has(
        &t,
        "teacher of a CA: 90.0 ± 0.0% over 2 runs (shared by a, b)"
    ));
    assert!(!t.iter().any(|x| x.starts_with("teacher of b")));
    assert!(has(&t, "AA") && has(&t, "teacher of a"));
    // One error bar per bar drawn: a, b and their teacher × the metrics each has.
    let bars = chart.matches("<rect x=").count() - 4; // less the legend's 4 swatches
    assert_eq!(chart.matches("<path d=\"M").count(), bars);
    assert_eq!(bars, 4 + 3 + 3);
    // Distinct folder names: nothing to summarise.
    assert!(rlnet::report::seeds::by_method(&runs[..2]).is_none());
}

#[test]
fn comparison_chart_places_points_by_relus_and_accuracy() {
    let root = tmp("cmpsvg");
    write_fixture(&root.join("a"), &distilled(1000, 1000, 0.6, 0.25, 0.5));
    write_fixture(&root.join("b"), &distilled(4000, 4000, 0.8, 0.375, 0.7));
    let runs = vec![
        Run::load(&root.join("a")).unwrap(),
        Run::load(&root.join("b")).unwrap(),
    ];
    let s = svg::metrics_vs_relus(&runs);
    let t = svg_texts(&s);
    assert!(has(&t, "CA / NPA / AdvA against ReLU count"));
    assert!(has(&t, "ReLUs kept (count per image)") && has(&t, "accuracy (%)"));
    for l in ["CA", "NPA", "AdvA", "rlnet 1K", "rlnet 4K"] {
        assert!(has(&t, l), "missing {l:?}");
    }
    assert!(has(&t, "CA rlnet 4K: 80.0% at 4000 ReLUs"));
    assert!(has(&t, "AdvA rlnet 1K: 25.0% at 1000 ReLUs"));
    // The marker groups' positions: more ReLUs lie right, more accuracy lies higher.
    let doc = roxmltree::Document::parse(&s).unwrap();
    let pos = |title: &str| -> (f64, f64) {
        let g = doc
            .descendants()
            .find(|n| {
                n.tag_name().name() == "g" && n.descendants().any(|c| c.text() == Some(title))
            })
            .unwrap_or_else(|| panic!("no marker {title}"));
        let tr = g.attribute("transform").unwrap();
        let nums: Vec<f64> = tr
            .trim_start_matches("translate(")
            .trim_end_matches(')')
            .split(' ')
            .map(|v| v.parse().unwrap())
            .collect();
        (nums[0], nums[1])
    };
    let ca_a = pos("CA rlnet 1K: 60.0% at 1000 ReLUs");
    let ca_b = pos("CA rlnet 4K: 80.0% at 4000 ReLUs");
    let adv_a = pos("AdvA rlnet 1K: 25.0% at 1000 ReLUs");
    assert!(ca_b.0 > ca_a.0, "{ca_a:?} {ca_b:?}");
    assert!(ca_b.1 < ca_a.1, "higher accuracy is drawn higher");
    assert_eq!(ca_a.0, adv_a.0, "one run's metrics share an x");
    assert!(adv_a.1 > ca_a.1);
}

#[test]
fn cli_reports_a_real_stage1_run() {
    let out = tmp("stage1");
    let run = out.join("teacher");
    let o = rlnet(&[
        "teacher",
        "--preset",
        "smoke",
        "--epochs",
        "1",
        "--train-limit",
        "200",
        "--test-limit",
        "50",
        "--width-mult",
        "0.125",
        "--eval-pgd-steps",
        "1",
        "--quiet",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = rlnet(&["report", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = read(&run.join("report.md"));
    assert!(md.contains("| stage | teacher |"), "{md}");
    assert!(md.contains("| model | resnet18 |"));
    // Stage 1 keeps every ReLU; ResNet18 at width 0.125 on 32 px has 69,632 (1/8 of 557,056).
    assert!(
        md.contains("| ReLUs kept / total | 69632 / 69632 (100.00%) |"),
        "{md}"
    );
    assert!(md.contains("| NPA (BN_c) % | – |"));
    assert!(md.contains("| 0 | relu | 8192 | 8192 | 100.00 |"), "{md}");
    assert!(!md.contains("ReLU budget"));
    assert!(!md.contains("Accuracy per corruption"));
    let t = svg_texts(&read(&run.join("relus_per_layer.svg")));
    assert!(has(&t, "layer4.1.relu2"));
    assert!(!run.join("accuracy_per_corruption.svg").exists());

    // `rlnet eval --corruptions .. --json > eval.json` adds the corruption results.
    let ckpt = run.join("teacher.safetensors");
    let o = rlnet(&[
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--test-limit",
        "20",
        "--pgd-steps",
        "1",
        "--corruptions",
        "fog,gaussian_noise",
        "--severity",
        "1,5",
        "--json",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(run.join("eval.json"), &o.stdout).unwrap();
    let o = rlnet(&["report", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = read(&run.join("report.md"));
    assert!(md.contains("| corruption | BN_clean | BN_adv |"), "{md}");
    assert!(md.contains("| fog |") && md.contains("| gaussian_noise |"));
    assert!(md.contains("(2 corruptions)"));
    assert!(!md.contains("| NPA (BN_c) % | – |"), "{md}");
    assert!(md.contains("![accuracy_per_corruption.svg](accuracy_per_corruption.svg)"));
    let t = svg_texts(&read(&run.join("accuracy_per_corruption.svg")));
    assert!(has(&t, "fog") && t.iter().any(|x| x.starts_with("NPA BN_clean: ")));
}

#[test]
fn cli_compares_runs_in_a_folder_and_with_out() {
    let root = tmp("cmp");
    write_fixture(&root.join("b1k"), &distilled(1000, 1000, 0.6, 0.25, 0.5));
    write_fixture(&root.join("b4k"), &distilled(4000, 4000, 0.8, 0.375, 0.7));
    // A folder of runs: reports in each, comparison in the folder.
    let o = rlnet(&["report", root.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "report.md",
        "relus_per_layer.svg",
        "accuracy_per_corruption.svg",
    ] {
        assert!(root.join("b1k").join(f).is_file(), "{f}");
    }
    let md = read(&root.join("comparison.md"));
    assert!(
        md.contains("| b1k | distill | rlnet | resnet18 | cifar10 | 1000 | 1000 | 60.00 | 50.00 | 25.00 | 23.0 | 18.2 | [report.md](b1k/report.md) |"),
        "{md}"
    );
    assert!(md.contains("| b4k |"));
    svg_texts(&read(&root.join("comparison.svg")));
    // Two run folders and --out: links go from --out back to the runs.
    let out = root.join("cmp_out");
    let o = rlnet(&[
        "report",
        root.join("b1k").to_str().unwrap(),
        root.join("b4k").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = read(&out.join("comparison.md"));
    assert!(md.contains("[report.md](../b4k/report.md)"), "{md}");
    assert!(out.join("comparison.svg").is_file());
}

fn assert_clean_error(o: &Output, needle: &str) {
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure: {e}");
    assert!(!e.contains("panicked"), "panic: {e}");
    assert!(e.contains(needle), "error does not mention {needle:?}: {e}");
}

#[test]
fn cli_errors_name_the_file() {
    let root = tmp("err");
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = rlnet(&["report", empty.to_str().unwrap()]);
    assert_clean_error(&o, "holds no report.json");
    let bad = root.join("bad");
    write_fixture(&bad, r#"{"stage":"teacher","model":"resnet18"}"#);
    let o = rlnet(&["report", bad.to_str().unwrap()]);
    assert_clean_error(&o, &bad.join("report.json").display().to_string());
    assert_clean_error(&o, "dataset");
    let o = rlnet(&["report", root.join("missing").to_str().unwrap()]);
    assert_clean_error(&o, "is not a folder");
    let (a, b) = (root.join("a"), root.join("b"));
    write_fixture(&a, &distilled(1000, 1000, 0.6, 0.25, 0.5));
    write_fixture(&b, &distilled(1000, 1000, 0.6, 0.25, 0.5));
    let o = rlnet(&["report", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_clean_error(&o, "--out");
    std::fs::write(a.join("eval.json"), "not json").unwrap();
    std::fs::write(
        a.join("report.json"),
        r#"{"stage":"teacher","model":"m","dataset":"d","total_relus":5,"kept_relus":5}"#,
    )
    .unwrap();
    let o = rlnet(&["report", a.to_str().unwrap()]);
    assert_clean_error(&o, &a.join("eval.json").display().to_string());
}

#[test]
fn comparison_chart_uses_a_log_axis_for_wide_relu_ranges() {
    let root = tmp("logx");
    write_fixture(&root.join("b1k"), &distilled(1000, 1000, 0.6, 0.25, 0.5));
    write_fixture(
        &root.join("teacher"),
        r#"{"stage":"teacher","model":"resnet18","dataset":"cifar10","total_relus":557056,
            "kept_relus":557056,"metrics":{"per_bn":[{"bn":"clean","clean_acc":0.9},
            {"bn":"adv","clean_acc":0.8,"pgd_acc":0.5,"pgd_steps":20}]}}"#,
    );
    let runs = vec![
        Run::load(&root.join("b1k")).unwrap(),
        Run::load(&root.join("teacher")).unwrap(),
    ];
    let s = svg::metrics_vs_relus(&runs);
    let t = svg_texts(&s);
    assert!(has(&t, "ReLUs kept (count per image, log scale)"), "{t:?}");
    assert!(
        has(&t, "teacher"),
        "a run without a budget is labelled by its stage"
    );
    for tick in ["1K", "2K", "10K", "100K", "500K"] {
        assert!(has(&t, tick), "missing tick {tick}");
    }
    let doc = roxmltree::Document::parse(&s).unwrap();
    let tick_x = |label: &str| -> f64 {
        doc.descendants()
            .find(|n| n.tag_name().name() == "text" && n.text() == Some(label))
            .and_then(|n| n.attribute("x"))
            .unwrap()
            .parse()
            .unwrap()
    };
    let marker_x = |title: &str| -> f64 {
        let g = doc
            .descendants()
            .find(|n| {
                n.tag_name().name() == "g" && n.descendants().any(|c| c.text() == Some(title))
            })
            .unwrap();
        let tr = g.attribute("transform").unwrap();
        tr["translate(".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    // Decades are equally wide, and the 1K run sits on the 1K tick.
    let (x1, x10, x100) = (tick_x("1K"), tick_x("10K"), tick_x("100K"));
    assert!(((x10 - x1) - (x100 - x10)).abs() < 0.2, "{x1} {x10} {x100}");
    assert!((marker_x("CA rlnet 1K: 60.0% at 1000 ReLUs") - x1).abs() < 0.2);
    let xt = marker_x("CA teacher: 90.0% at 557056 ReLUs");
    assert!(xt > tick_x("500K") && xt < 760.0 - 150.0);
    // Room either side: no tick beyond the data's fifth of a decade.
    assert!(!has(&t, "1M") && !has(&t, "500"));
}
