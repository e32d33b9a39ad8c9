//! Sampling addresses: each sample checks one page per region, picked at random within it,
//! and the check of one sample goes to the operations together with the preparation of the
//! next ([`step`]).
use rand::Rng;
use rand::rngs::SmallRng;

use super::ops::{Access, Operations, OpsError, StepTarget, Steps, TargetStep};
use super::region::{PAGE_SIZE, Region};
use super::target::Target;

/// A random page of `r`, the page its next sample checks.
fn random_page(rng: &mut SmallRng, r: &Region) -> u64 {
    let pages = (r.size() / PAGE_SIZE).max(1);
    r.start + rng.random_range(0..pages) * PAGE_SIZE
}

impl StepTarget for Target {
    fn step(&mut self, idx: usize) -> TargetStep<'_> {
        TargetStep {
            target: self.target_ref(idx),
            regions: &self.regions,
            next: &mut self.next,
            found: &mut self.found,
            gone: &mut self.gone,
            seed: self.seed,
        }
    }
}

/// One call of [`Operations::sample`] over every target: checks the sample in flight when
/// `check`, and when `prepare` picks every region's next sampling page first (and a seed for
/// the alternatives the operations may pick instead) and makes the prepared pages the
/// sampling pages after.
pub(super) fn step(
    targets: &mut [Target],
    rng: &mut SmallRng,
    ops: &mut dyn Operations,
    check: bool,
    prepare: bool,
) -> Result<(), OpsError> {
    for t in targets.iter_mut() {
        t.gone = false;
        t.found.clear();
        t.found.resize(t.regions.len(), Access::None);
        t.next.clear();
        if prepare {
            t.next.extend(t.regions.iter().map(|r| random_page(rng, r)));
            t.seed = rng.random();
        } else {
            t.next.resize(t.regions.len(), 0);
        }
    }
    ops.sample(&mut Steps {
        check,
        prepare,
        targets,
    })?;
    if prepare {
        for t in targets.iter_mut() {
            for (r, &page) in t.regions.iter_mut().zip(t.next.iter()) {
                r.sampling_addr = page;
            }
            t.layout_changed = false;
        }
    }
    Ok(())
}
