//! `ExecutionService`: actions on executions, their statistics and the live
//! status stream.

use crate::engine::Engine;
use crate::proto::v1::execution_service_server::ExecutionService;

/// Serves executions from the engine.
pub struct ExecutionApi {
    #[allow(dead_code)]
    engine: Engine,
}

impl ExecutionApi {
    /// An execution service on `engine`.
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

#[tonic::async_trait]
impl ExecutionService for ExecutionApi {}
