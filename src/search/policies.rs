//! The three mask policies (`policy`): the stage-2 top-k search, the frozen stage-3 mask and
//! SNL's learnable α, and the plan that picks one.

use super::plan::{initial_masks, MaskPlan, StudentInit};
use super::policy::{MaskPolicy, Resumed};
use super::snl::{
    alpha_tensors, binarise_top, count_alive, restore_alphas, SnlConfig, SnlProgress,
};
use super::{apply_top_k, set_model_masks};
use crate::autograd::EntryKind;
use crate::checkpoint::{load_search_student, load_teacher, Checkpoint};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::nn::{kept_count, Model, ModelConfig};
use crate::tensor::Tensor;
use std::path::{Path, PathBuf};

/// `--student-init teacher`: every parameter and BN statistic of `student` from the entry of
/// the same name in `teacher`, or, for a per-domain BN set (`x.BN_c.weight`), from the
/// teacher's shared one (`x.weight`); masks stay the student's. A teacher of another
/// architecture, width or class count is an error naming the tensor that does not fit.
fn copy_teacher_weights(student: &mut Model, teacher: &Model, path: &Path) -> Result<()> {
    let refuse = |what: String| {
        Error::Config(format!(
            "--student-init teacher: {what} in {}; the student must be the teacher's network \
             (same architecture, width and classes)",
            path.display()
        ))
    };
    for id in 0..student.store.len() {
        let e = student.store.entry(id);
        if e.kind == EntryKind::Mask {
            continue;
        }
        let shared = [".BN_c.", ".BN_a.", ".BN_r."]
            .iter()
            .find_map(|set| e.name.contains(set).then(|| e.name.replacen(set, ".", 1)));
        let source = teacher
            .store
            .id(&e.name)
            .or_else(|| shared.as_deref().and_then(|n| teacher.store.id(n)))
            .ok_or_else(|| refuse(format!("the teacher has no tensor for {}", e.name)))?;
        let t = teacher.store.get(source);
        if t.shape() != e.tensor.shape() {
            return Err(refuse(format!(
                "{} is {:?} in the teacher but {:?} in the student",
                e.name,
                t.shape(),
                e.tensor.shape()
            )));
        }
        let t = t.clone();
        student.store.set(id, t)?;
    }
    Ok(())
}

/// Prefix of the search's score accumulators inside a mid-epoch checkpoint.
const SCORES_PREFIX: &str = "search.scores.";

impl MaskPlan {
    /// This plan's policy for a new or resumed run.
    pub fn policy(&self) -> Box<dyn MaskPolicy> {
        match self {
            MaskPlan::Search {
                budget, ks, init, ..
            } => Box::new(TopK {
                budget: *budget,
                ks: ks.clone(),
                init: *init,
                scores: Vec::new(),
            }),
            MaskPlan::Frozen { from } => Box::new(Frozen { from: from.clone() }),
            MaskPlan::Linearize(cfg) => Box::new(Linearize::new(cfg.clone())),
        }
    }
}

/// Stage 2: after every epoch keep exactly `ks[l]` ReLUs in layer l where the teacher and the
/// student differed most (spec §5.1 step 2.3); the accumulators then start again at 0.
struct TopK {
    budget: usize,
    ks: Vec<usize>,
    init: StudentInit,
    scores: Vec<Tensor>,
}

fn zero_scores(model: &Model, device: &Device) -> Result<Vec<Tensor>> {
    model
        .relu_layers
        .iter()
        .map(|l| Tensor::zeros(&l.shape).into_device(device))
        .collect()
}

impl MaskPolicy for TopK {
    /// A randomly initialised student (or one with the teacher's weights) with the random
    /// channel-uniform mask of spec §5.1 step 1.
    fn starting_student(&self, model: &ModelConfig, seed: u64, teacher: &Path) -> Result<Model> {
        let mut m = Model::new(model.clone(), seed)?;
        if self.init == StudentInit::Teacher {
            copy_teacher_weights(&mut m, &load_teacher(teacher, &Device::Cpu)?, teacher)?;
        }
        let masks = initial_masks(&m, &self.ks, seed);
        set_model_masks(&mut m, &masks)?;
        Ok(m)
    }

    fn start(&mut self, model: &mut Model) -> Result<()> {
        self.scores = zero_scores(model, model.store.device())?;
        Ok(())
    }

    fn resume(&mut self, c: &Checkpoint, r: Resumed<'_>) -> Result<()> {
        self.scores = zero_scores(r.model, r.device)?;
        if r.mid_epoch {
            for (t, l) in self.scores.iter_mut().zip(&r.model.relu_layers) {
                let name = format!("{SCORES_PREFIX}{}", l.name);
                let v = c.tensor(&name).ok_or_else(|| Error::Checkpoint {
                    path: r.path.to_path_buf(),
                    msg: format!("mid-epoch search checkpoint without {name}"),
                })?;
                *t = v.clone().into_device(r.device)?;
            }
        }
        Ok(())
    }

    fn scores(&mut self) -> Option<&mut [Tensor]> {
        Some(&mut self.scores)
    }

    fn end_epoch(&mut self, model: &mut Model, _: usize, _: bool) -> Result<()> {
        let kept = apply_top_k(model, &self.scores, &self.ks)?;
        assert_eq!(kept, self.budget, "the per-layer counts sum to the budget");
        assert_eq!(
            model.kept_relus(),
            self.budget,
            "the search keeps exactly the budget after every epoch"
        );
        self.scores = zero_scores(model, model.store.device())?;
        Ok(())
    }

    fn tensors<'a>(&'a self, model: &'a Model, mid_epoch: bool) -> Vec<(String, &'a Tensor)> {
        if !mid_epoch {
            return Vec::new();
        }
        model
            .relu_layers
            .iter()
            .zip(&self.scores)
            .map(|(l, t)| (format!("{SCORES_PREFIX}{}", l.name), t))
            .collect()
    }
}

/// Stage 3: the mask of the stage-2 (or binarised SNL) checkpoint `from`, never changed.
struct Frozen {
    from: PathBuf,
}

impl MaskPolicy for Frozen {
    fn starting_student(&self, _: &ModelConfig, _: u64, _: &Path) -> Result<Model> {
        load_search_student(&self.from)
    }

    fn start(&mut self, _: &mut Model) -> Result<()> {
        Ok(())
    }

    fn resume(&mut self, _: &Checkpoint, _: Resumed<'_>) -> Result<()> {
        Ok(())
    }

    fn end_epoch(&mut self, _: &mut Model, _: usize, _: bool) -> Result<()> {
        Ok(())
    }

    fn tensors<'a>(&'a self, _: &'a Model, _: bool) -> Vec<(String, &'a Tensor)> {
        Vec::new()
    }
}

/// The SNL linearisation at work: learnable α until at most `budget` sites remain (or the epoch
/// cap), then exactly `budget` binary sites.
struct Linearize {
    cfg: SnlConfig,
    progress: Option<SnlProgress>,
}

impl Linearize {
    fn new(cfg: SnlConfig) -> Linearize {
        Linearize {
            cfg,
            progress: None,
        }
    }

    fn progress_mut(&mut self) -> &mut SnlProgress {
        self.progress
            .as_mut()
            .expect("an SNL run carries its progress once started or resumed")
    }

    fn binarised(&self) -> bool {
        self.progress
            .as_ref()
            .is_some_and(|p| p.binarised_after.is_some())
    }
}

impl MaskPolicy for Linearize {
    fn starting_student(&self, _: &ModelConfig, _: u64, teacher: &Path) -> Result<Model> {
        // The student starts as the teacher itself (every α = 1), read on the host.
        load_teacher(teacher, &Device::Cpu)
    }

    fn start(&mut self, model: &mut Model) -> Result<()> {
        self.cfg.validate(model.total_relus())?;
        // SNL starts from the all-ReLU network: every α = 1.
        for l in &model.relu_layers {
            if kept_count(&model.mask(l)) != l.count() {
                return Err(Error::Config(
                    "SNL starts from an all-ReLU network; the starting model has linear sites"
                        .into(),
                ));
            }
        }
        model.soft_masks = true;
        self.progress = Some(SnlProgress::start(&self.cfg, model.total_relus()));
        Ok(())
    }

    fn resume(&mut self, c: &Checkpoint, r: Resumed<'_>) -> Result<()> {
        let p = r.progress.ok_or_else(|| Error::Checkpoint {
            path: r.path.to_path_buf(),
            msg: "an SNL checkpoint without its progress".into(),
        })?;
        if p.binarised_after.is_none() {
            restore_alphas(c, r.model, r.path)?;
        }
        self.progress = Some(p);
        Ok(())
    }

    fn penalty(&self) -> Option<f32> {
        self.progress.as_ref().map(|p| p.lambda)
    }

    /// Count, adjust λ, and binarise once the count is within the budget or the epoch cap is
    /// reached.
    fn end_epoch(&mut self, model: &mut Model, epoch: usize, last_epoch: bool) -> Result<()> {
        let count = count_alive(model, self.cfg.threshold)?;
        let cfg = self.cfg.clone();
        let p = self.progress_mut();
        p.end_epoch(&cfg, epoch, count);
        if p.reached || last_epoch {
            binarise_top(model, cfg.budget)?;
            p.binarised_after = Some(epoch);
            assert_eq!(model.kept_relus(), cfg.budget);
        }
        Ok(())
    }

    /// Until binarised: the sites with α above the threshold.
    fn kept_relus(&self, model: &Model) -> usize {
        match &self.progress {
            Some(p) if p.binarised_after.is_none() => p.count,
            _ => model.kept_relus(),
        }
    }

    /// Only the binarised network is at the budget.
    fn at_budget(&self) -> bool {
        self.binarised()
    }

    fn ended(&self) -> bool {
        self.binarised()
    }

    /// The real α while they are still learned (their mask entries hold only 0/1 on disk).
    fn tensors<'a>(&'a self, model: &'a Model, _: bool) -> Vec<(String, &'a Tensor)> {
        match model.soft_masks {
            true => alpha_tensors(model),
            false => Vec::new(),
        }
    }

    fn progress(&self) -> Option<&SnlProgress> {
        self.progress.as_ref()
    }

    fn progress_mut(&mut self) -> Option<&mut SnlProgress> {
        self.progress.as_mut()
    }
}
