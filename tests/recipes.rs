//! The recipes the commands and the pipeline share: a recipe left at its defaults is what its
//! command gives without flags (the pipeline fills recipes in code from those defaults), and each
//! pipeline stage's recipe is what its own command line gives.

use clap::{Args, Parser};
use rlnet::recipe::pipeline::{PipelineRecipe, StageRecipe};
use rlnet::recipe::student::{DistillRecipe, SearchRecipe, SnlRecipe};
use rlnet::recipe::teacher::TeacherRecipe;

#[derive(Parser)]
struct Command<R: Args> {
    #[command(flatten)]
    recipe: R,
}

fn parse<R: Args>(args: &[&str]) -> R {
    let argv = std::iter::once("rlnet").chain(args.iter().copied());
    Command::<R>::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
        .recipe
}

#[test]
fn a_default_recipe_is_its_command_without_flags() {
    assert_eq!(parse::<TeacherRecipe>(&[]), TeacherRecipe::default());
    let search: SearchRecipe = parse(&["--teacher", "t.safetensors", "--budget", "6k"]);
    let mut want = SearchRecipe {
        budget: "6k".into(),
        ..SearchRecipe::default()
    };
    want.common.teacher = "t.safetensors".into();
    assert_eq!(search, want);
    let snl: SnlRecipe = parse(&["--teacher", "t.safetensors", "--budget", "6k"]);
    assert_eq!(snl.common, want.common);
    assert_eq!((snl.lambda, snl.threshold), (None, None));
    let distill: DistillRecipe = parse(&["--teacher", "t.safetensors", "--student", "s"]);
    assert_eq!(distill.common, want.common);
    assert_eq!(distill.mode, None);
}

fn pipeline(args: &[&str]) -> Vec<StageRecipe> {
    let base = ["--budget", "1500", "--out", "run", "--preset", "smoke"];
    let all: Vec<&str> = base.iter().chain(args).copied().collect();
    parse::<PipelineRecipe>(&all)
        .stages()
        .into_iter()
        .map(|s| s.recipe)
        .collect()
}

/// `rlnet distill`'s line for the pipeline's stage 3 from `second`'s best checkpoint.
fn distill_line<'a>(common: &[&'a str], second: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let student: &'static str = match second {
        "snl" => "run/snl/snl_best.safetensors",
        _ => "run/search/search_best.safetensors",
    };
    let head = [
        "--teacher",
        "run/teacher/teacher.safetensors",
        "--student",
        student,
    ];
    common.iter().chain(&head).chain(extra).copied().collect()
}

#[test]
fn each_pipeline_stage_is_its_own_command_line() {
    let common = ["--preset", "smoke", "--seed", "3", "--train-limit", "96"];
    fn joined<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<&'a str> {
        a.iter().chain(b).copied().collect()
    }
    let with = |extra: &[&'static str]| joined(&common, extra);
    let stages = pipeline(&["--seed", "3", "--train-limit", "96", "--epochs", "2"]);
    let teacher = "run/teacher/teacher.safetensors";
    let search_head = [
        "--teacher",
        teacher,
        "--budget",
        "1500",
        "--fractions",
        "auto",
    ];
    let search = |extra: &[&'static str]| with(&[&search_head[..], extra].concat());
    assert_eq!(
        stages[0],
        StageRecipe::Teacher(parse(&with(&["--epochs", "2"])))
    );
    assert_eq!(
        stages[1],
        StageRecipe::Search(parse(&search(&["--epochs", "2"])))
    );
    assert_eq!(
        stages[2],
        StageRecipe::Distill(parse(&distill_line(
            &common,
            "search",
            &["--mode", "rslad+attn+augattn+ce", "--epochs", "2"]
        )))
    );

    // SENet's recipe: a clean teacher, a natural search without AT, distillation with γ = 0.1.
    let stages = pipeline(&["--method", "senet", "--seed", "3", "--train-limit", "96"]);
    assert_eq!(
        stages[0],
        StageRecipe::Teacher(parse(&with(&["--non-robust"])))
    );
    assert_eq!(
        stages[1],
        StageRecipe::Search(parse(&search(&["--mode", "natural", "--beta", "0"])))
    );

    assert_eq!(
        stages[2],
        StageRecipe::Distill(parse(&distill_line(
            &common,
            "search",
            &["--mode", "natural", "--gamma", "0.1"]
        )))
    );

    // SNL: the linearisation takes no --epochs; the fine-tune is CE + KD at lr 1e-3, cosine.
    let stages = pipeline(&[
        "--method",
        "snl",
        "--seed",
        "3",
        "--train-limit",
        "96",
        "--epochs",
        "2",
    ]);
    assert_eq!(
        stages[1],
        StageRecipe::Snl(parse(&with(&["--teacher", teacher, "--budget", "1500"])))
    );
    assert_eq!(
        stages[2],
        StageRecipe::Distill(parse(&distill_line(
            &common,
            "snl",
            &[
                "--mode", "natural", "--gamma", "1", "--alpha", "1", "--beta", "0", "--lr",
                "0.001", "--cosine", "--epochs", "2"
            ]
        )))
    );
}

#[test]
fn the_command_line_definition_is_consistent() {
    // clap's own checks (flag names unique across flattened groups, conflicts naming real flags).
    use clap::CommandFactory;
    rlnet::cli::Cli::command().debug_assert();
}
