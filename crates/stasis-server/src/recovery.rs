//! Start-up reconciliation: rows left mid-operation by a crash are brought back to a
//! state that matches what the runtime has on disk. Nothing paused is ever dropped.

use stasis_runtime::SandboxState as RtState;
use stasis_store::SandboxState;

use crate::lifecycle::Lifecycle;

pub async fn reconcile(lc: &Lifecycle) -> anyhow::Result<()> {
    let store = lc.store();
    let rt = lc.runtime();
    let rows = store
        .sandboxes_in_states(&[SandboxState::Creating, SandboxState::Killing, SandboxState::Pausing, SandboxState::Resuming, SandboxState::Running])
        .await?;
    for row in rows {
        let on_disk = rt.state(&row.id).await;
        let target = match (row.state, &on_disk) {
            // Half-created or half-killed: finish the kill.
            (SandboxState::Creating | SandboxState::Killing, _) => None,
            (_, Ok(RtState::Paused)) => Some(SandboxState::Paused),
            (_, Ok(RtState::Running)) => Some(SandboxState::Running),
            (_, Err(_)) => None,
        };
        match target {
            Some(to) if to != row.state => {
                tracing::warn!(sandbox = %row.id, from = %row.state, to = %to, "recovered interrupted operation");
                store.transition(&row.id, &[row.state], to).await?;
            }
            Some(_) => {}
            None => {
                tracing::warn!(sandbox = %row.id, state = %row.state, "removing sandbox left half-made or without runtime state");
                let _ = rt.kill(&row.id).await;
                store.delete_sandbox(&row.id).await?;
            }
        }
    }
    Ok(())
}
