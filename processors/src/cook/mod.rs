//! The cook processor: phases, predictions and alerts.
//!
//! ```text
//!  probe.readings ─┐
//!  device.events  ─┼─► merge by server time ─► CookBrain (pure fold, per device)
//!  cook.commands  ─┘   (ties: topic, partition,     │
//!                       offset)                     ├─► derived.predictions (PredictionUpdated)
//!                                                   ├─► alerts (AlertRaised / AlertCleared)
//!                                                   └─► projections: state, predictions,
//!                                                       alerts, rules, applied positions
//! ```
//!
//! * [`phase`]: pit and probe phases (heating, holding, lid open, fire out; idle, heating,
//!   stall, done, probe out).
//! * [`predict`]: time to target by Newton's law fitted online, stall-aware.
//! * [`forecast`]: the estimate: Newton's, the meat's own curve and its recent rate, blended
//!   by how well each has done on the cook so far, with a calibrated 80 % interval.
//! * [`learn`]: per-smoker profiles learnt from completed cooks on a device (heating
//!   coefficient, stall, pit behaviour, timing bias), which the next cook starts from.
//! * [`learning`]: the evaluation of that learning: a device's cooks replayed in time order,
//!   each predicted from what the earlier ones taught, beside no learning.
//! * [`alerts`]: rules and the per-rule state machine (hysteresis, minimum duration, one
//!   raise per episode, repeats, acknowledgements, snoozes).
//! * [`behind_plan`]: a cook with a serving time re-checked against its predictions, and
//!   what to do when it runs late.
//! * [`intel`]: the fold that ties them together per device.
//! * [`run`]: the processor loop: a deterministic merge of the input topics, the fold,
//!   and exactly-once writes.
//!
//! Determinism: the fold reads no clock; its time is the latest server time of its inputs
//! (reading receive times, command times and the [`ClockTick`](emberline_schemas::events::ClockTick)s
//! written to the log while Emberline runs). Inputs are merged by that time with a fixed
//! tie-break, so the same log always gives the same outputs; the state and the applied
//! positions are written in one batch, and every output carries its input's sequence number,
//! so a restart neither repeats nor skips an output.

pub mod alerts;
pub mod behind_plan;
pub mod eval;
pub mod forecast;
pub mod intel;
pub mod learn;
pub mod learning;
pub mod phase;
pub mod plan;
pub mod predict;
pub mod run;
