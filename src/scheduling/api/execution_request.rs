//! What every `ExecutionService` request about one execution carries, decoded
//! once: the (client, configuration, date) key with the client checked
//! against the calling key, and for actions the acting key and its reason.
//! The handlers in `executions.rs` start from here instead of repeating it.

use tonic::Request;

use super::{actor, authorized_client, date, uuid};
use crate::proto::v1 as pb;
use crate::scheduling::usecases::{Actor, ExecutionKey};
use crate::scheduling::Error;

/// A request naming one execution by client, configuration and date.
pub trait ExecutionRequest {
    /// The `client_id`, `config_id` and `business_date` fields as sent.
    fn key_fields(&self) -> [&str; 3];
}

/// A request that acts on an execution and says why.
pub trait ActionRequest: ExecutionRequest {
    /// The `reason` field as sent.
    fn reason(&self) -> &str;
}

macro_rules! execution_requests {
    ($($t:ty),* $(,)?) => {$(
        impl ExecutionRequest for $t {
            fn key_fields(&self) -> [&str; 3] {
                [&self.client_id, &self.config_id, &self.business_date]
            }
        }
    )*};
}

macro_rules! action_requests {
    ($($t:ty),* $(,)?) => {$(
        execution_requests!($t);
        impl ActionRequest for $t {
            fn reason(&self) -> &str {
                &self.reason
            }
        }
    )*};
}

action_requests!(
    pb::CreateExecutionRequest,
    pb::RecreateExecutionRequest,
    pb::ProcessExecutionRequest,
    pb::ReprocessExecutionRequest,
    pb::ResetExecutionRequest,
    pb::TriggerJobRequest,
    pb::RetryJobRequest,
);

execution_requests!(
    pb::GetExecutionRequest,
    pb::GetJobStatsRequest,
    pb::ListJobErrorCodesRequest,
    pb::ListErroredWorkItemsRequest,
    pb::ListExecutionActionsRequest,
);

/// Decodes the (client, config, date) of `r`, the client checked against
/// the calling key.
pub fn key_of(
    extensions: &tonic::Extensions,
    r: &impl ExecutionRequest,
) -> Result<ExecutionKey, Error> {
    let [client, config_id, business_date] = r.key_fields();
    Ok(ExecutionKey {
        client_id: authorized_client(extensions, client)?,
        config_id: uuid("config_id", config_id)?,
        business_date: date("business_date", business_date)?,
    })
}

/// Decodes a read about one execution: its key and the request.
pub fn read<R: ExecutionRequest>(request: Request<R>) -> Result<(ExecutionKey, R), Error> {
    let (_, extensions, r) = request.into_parts();
    Ok((key_of(&extensions, &r)?, r))
}

/// Decodes an action: the execution's key, who acts and why, and the
/// request for its own fields.
pub fn action<R: ActionRequest>(request: Request<R>) -> Result<(ExecutionKey, Actor, R), Error> {
    let (_, extensions, r) = request.into_parts();
    let key = key_of(&extensions, &r)?;
    let actor = actor(&extensions, r.reason())?;
    Ok((key, actor, r))
}
