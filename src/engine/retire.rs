//! Retiring instances: stopped with their grace period (the removal kills them when it is zero)
//! and removed, all at once. The last step of every replacement, of a scale-down and of `down`;
//! below everything else in the engine, so the rollout, the traffic and the operations share it.

use std::time::Duration;

use futures::future::join_all;

use crate::backend::{instances_of, Backend, Instance};
use crate::error::{Error, Result};
use crate::events::{EventKind, EventSink};

/// Stops and removes instances, concurrently.
pub(crate) async fn retire(
    backend: &dyn Backend,
    sink: &EventSink,
    service: &str,
    instances: &[Instance],
    grace: Duration,
) -> Result<()> {
    let runtime = instances_of(backend, &format!("retire instances of `{service}`"))?;
    let results = join_all(instances.iter().map(|i| async move {
        // No grace: the removal kills it (`docker rm -f`), one call instead of two.
        if i.is_running() && !grace.is_zero() {
            runtime.stop_instance(&i.id, grace).await?;
            sink.emit(EventKind::InstanceStopped { service: service.to_string(), instance: i.name.clone() });
        }
        runtime.remove_instance(&i.id).await?;
        sink.emit(EventKind::InstanceRemoved { service: service.to_string(), instance: i.name.clone() });
        Ok::<_, Error>(())
    }))
    .await;
    results.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
}
