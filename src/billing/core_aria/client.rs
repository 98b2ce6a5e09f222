//! The client of core Aria's sync interface the SYNC jobs use.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::CoreError;
use crate::proto::core_v1::core_sync_service_client::CoreSyncServiceClient;
use crate::proto::core_v1::{
    CreateTrueUpOrderRequest, CreateTrueUpOrderResponse, CreateTrueUpOrdersRequest, OrderResult,
    RecordUsageTransactionsRequest, TransactionResult, TrueUpOrder, UsageTransaction,
};

/// At most this many transactions go in one RecordUsageTransactions call,
/// keeping messages well under gRPC's default 4 MB limit.
pub const MAX_TRANSACTIONS_PER_CALL: usize = 2000;

/// At most this many orders go in one CreateTrueUpOrders call.
pub const MAX_ORDERS_PER_CALL: usize = 2000;

/// How long the client waits to connect to core Aria.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call may take before it counts as unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to core Aria's sync interface. Cheap to clone (clones share
/// one lazily connected channel), so every job holds its own.
#[derive(Debug, Clone)]
pub struct CoreAriaClient {
    sync: CoreSyncServiceClient<Channel>,
    endpoint: String,
}

impl CoreAriaClient {
    /// A client of core Aria at `endpoint` (e.g. `http://core-aria:50052`).
    /// Connects on first use, and reconnects after failures, so a core that
    /// is down at startup only fails the calls made while it is down.
    pub fn lazy(endpoint: &str) -> Result<Self, CoreError> {
        let invalid = |reason: String| CoreError::InvalidEndpoint {
            endpoint: endpoint.to_string(),
            reason,
        };
        let channel = Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| invalid(e.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .connect_lazy();
        Ok(Self {
            sync: CoreSyncServiceClient::new(channel),
            endpoint: endpoint.to_string(),
        })
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends usage transactions of `client_id`, in calls of at most
    /// [`MAX_TRANSACTIONS_PER_CALL`]; one result per transaction, in order.
    /// Any call failing fails the whole send: the caller retries, and core
    /// Aria's idempotency keys make the calls that did succeed replays.
    pub async fn record_usage_transactions(
        &self,
        client_id: &str,
        transactions: Vec<UsageTransaction>,
    ) -> Result<Vec<TransactionResult>, CoreError> {
        in_calls(
            &transactions,
            MAX_TRANSACTIONS_PER_CALL,
            "transactions",
            |t| &t.idempotency_key,
            |r: &TransactionResult| &r.idempotency_key,
            |chunk| async move {
                Ok(self
                    .sync
                    .clone()
                    .record_usage_transactions(RecordUsageTransactionsRequest {
                        client_id: client_id.to_string(),
                        transactions: chunk.to_vec(),
                    })
                    .await
                    .map_err(CoreError::from_status)?
                    .into_inner()
                    .results)
            },
        )
        .await
    }

    /// Asks core Aria to create the order of one true-up.
    pub async fn create_true_up_order(
        &self,
        request: CreateTrueUpOrderRequest,
    ) -> Result<CreateTrueUpOrderResponse, CoreError> {
        Ok(self
            .sync
            .clone()
            .create_true_up_order(request)
            .await
            .map_err(CoreError::from_status)?
            .into_inner())
    }

    /// Asks core Aria to create the orders of true-ups of `client_id`, in
    /// calls of at most [`MAX_ORDERS_PER_CALL`]; one result per order, in
    /// order. Any call failing fails the whole send: the caller retries,
    /// and core Aria's idempotency keys make the orders that did go through
    /// replays.
    pub async fn create_true_up_orders(
        &self,
        client_id: &str,
        orders: Vec<TrueUpOrder>,
    ) -> Result<Vec<OrderResult>, CoreError> {
        in_calls(
            &orders,
            MAX_ORDERS_PER_CALL,
            "orders",
            |o| &o.idempotency_key,
            |r: &OrderResult| &r.idempotency_key,
            |chunk| async move {
                Ok(self
                    .sync
                    .clone()
                    .create_true_up_orders(CreateTrueUpOrdersRequest {
                        client_id: client_id.to_string(),
                        orders: chunk.to_vec(),
                    })
                    .await
                    .map_err(CoreError::from_status)?
                    .into_inner()
                    .results)
            },
        )
        .await
    }
}

/// Sends `items` in calls of at most `per_call` and joins the results,
/// checking that every call answered one result per item in request order
/// (by idempotency key). Any call failing fails the whole send.
async fn in_calls<'a, T, R, Call, Answer>(
    items: &'a [T],
    per_call: usize,
    what: &str,
    item_key: impl Fn(&T) -> &String,
    result_key: impl Fn(&R) -> &String,
    mut call: Call,
) -> Result<Vec<R>, CoreError>
where
    Call: FnMut(&'a [T]) -> Answer,
    Answer: std::future::Future<Output = Result<Vec<R>, CoreError>>,
{
    let mut results = Vec::with_capacity(items.len());
    for chunk in items.chunks(per_call.max(1)) {
        let answered = call(chunk).await?;
        if answered.len() != chunk.len()
            || answered
                .iter()
                .zip(chunk)
                .any(|(r, t)| result_key(r) != item_key(t))
        {
            return Err(CoreError::Protocol(format!(
                "{} results for {} {what}, or not in request order",
                answered.len(),
                chunk.len()
            )));
        }
        results.extend(answered);
    }
    Ok(results)
}
