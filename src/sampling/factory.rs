//! Builds a scheduler from a manifest entry: the kind names the algorithm, the JSON config
//! carries its parameters (diffusers names; see each config type for fields and defaults).

use crate::manifest::{SchedulerEntry, SchedulerKind};

use super::{
    Ddim, DdimConfig, DpmSolverMultistep, DpmSolverMultistepConfig, Dpmpp2mSde, Dpmpp2mSdeConfig,
    SamplingError, Scheduler,
};

/// A boxed scheduler for `num_inference_steps` steps.
///
/// `eta` sets the stochasticity where the algorithm has one: DDIM's eta (default 0, as
/// diffusers' `step`) and the DPM++(2M) SDE's noise scale (default the config's `eta`, 1).
/// DPM-Solver++ ignores it, as diffusers' `DPMSolverMultistepScheduler.step` does (stage 1
/// of the reference passes eta = 1 to no effect).
pub fn build_scheduler(
    entry: &SchedulerEntry,
    num_inference_steps: usize,
    eta: Option<f32>,
) -> Result<Box<dyn Scheduler>, SamplingError> {
    Ok(match entry.kind {
        SchedulerKind::Ddim => {
            let config = DdimConfig::from_json(&entry.config)?;
            Box::new(Ddim::new(config, num_inference_steps, eta.unwrap_or(0.0))?)
        }
        SchedulerKind::DpmsolverMultistep => {
            let config = DpmSolverMultistepConfig::from_json(&entry.config)?;
            Box::new(DpmSolverMultistep::new(config, num_inference_steps)?)
        }
        SchedulerKind::Dpmpp2mSde => {
            let mut config = Dpmpp2mSdeConfig::from_json(&entry.config)?;
            if let Some(eta) = eta {
                config.eta = f64::from(eta);
            }
            Box::new(Dpmpp2mSde::new(config, num_inference_steps)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(kind: SchedulerKind, config: serde_json::Value) -> SchedulerEntry {
        let serde_json::Value::Object(config) = config else {
            panic!("test config must be an object")
        };
        SchedulerEntry { kind, config }
    }

    #[test]
    fn builds_every_stage_scheduler_from_diffusers_style_json() {
        let modelscope = json!({
            "_class_name": "DDIMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "beta_start": 0.00085, "clip_sample": false, "num_train_timesteps": 1000,
            "prediction_type": "epsilon", "set_alpha_to_one": false, "skip_prk_steps": true,
            "steps_offset": 1
        });
        let ddim = build_scheduler(
            &entry(SchedulerKind::Ddim, modelscope.clone()),
            50,
            Some(1.0),
        );
        assert_eq!(ddim.unwrap().timesteps()[0], 981.0);
        let dpm = build_scheduler(
            &entry(SchedulerKind::DpmsolverMultistep, modelscope),
            50,
            None,
        );
        assert_eq!(dpm.unwrap().timesteps()[0], 999.0);
        let sde = build_scheduler(&entry(SchedulerKind::Dpmpp2mSde, json!({})), 30, None).unwrap();
        assert_eq!((sde.num_steps(), sde.model_timestep(0).unwrap()), (30, 599));
    }

    #[test]
    fn ill_typed_and_unknown_fields_are_named() {
        let bad = entry(SchedulerKind::Ddim, json!({"beta_schedule": "cosine"}));
        let err = build_scheduler(&bad, 50, None).err().unwrap();
        assert!(matches!(err, SamplingError::Config { ref field, .. } if field == "beta_schedule"));
        let bad = entry(SchedulerKind::Dpmpp2mSde, json!({"t_maxx": 599}));
        let err = build_scheduler(&bad, 30, None).err().unwrap();
        assert!(matches!(err, SamplingError::Config { ref field, .. } if field == "t_maxx"));
        let bad = entry(
            SchedulerKind::DpmsolverMultistep,
            json!({"solver_order": "two"}),
        );
        let err = build_scheduler(&bad, 30, None).err().unwrap();
        assert!(matches!(err, SamplingError::Config { ref field, .. } if field == "solver_order"));
    }
}
