//! The process-wide Prometheus recorder behind `/metrics`. Installed once per process (the
//! `metrics` facade allows one global recorder); later calls reuse it, so several servers
//! in one test process share it.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder if needed and returns the handle that renders the text format.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; the handle then renders
            // an empty page rather than taking the process down.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
