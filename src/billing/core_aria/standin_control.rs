//! The stand-in core Aria's control service, a development tool: inject
//! faults for one client, read back what the stand-in received for one
//! client. Served only when the stand-in is started with its control on
//! (see [`serve_standin`](super::serve_standin)).

use tonic::{Request, Response, Status};

use super::standin::{invalid_argument, store_failure, CoreStandIn};
use super::standin_store as records;
use crate::proto::core_v1::core_stand_in_control_server::CoreStandInControl;
use crate::proto::core_v1::{
    Faults, GetFaultsRequest, ListReceivedRequest, ListReceivedResponse, ReceivedTrueUpOrder,
    ReceivedUsageTransaction, Rejection, SetFaultsRequest,
};

/// The request's client, or INVALID_ARGUMENT naming `client_id`: every
/// control call is about exactly one client.
fn required_client(client_id: &str) -> Result<String, Status> {
    if client_id.is_empty() {
        return Err(invalid_argument("client_id", "is required"));
    }
    Ok(client_id.to_string())
}

#[tonic::async_trait]
impl CoreStandInControl for CoreStandIn {
    async fn set_faults(
        &self,
        request: Request<SetFaultsRequest>,
    ) -> Result<Response<Faults>, Status> {
        let r = request.into_inner();
        let client_id = required_client(&r.client_id)?;
        let faults = Faults {
            unavailable: r.unavailable,
            reject_accounts: r.reject_accounts,
            client_id,
        };
        tracing::info!(
            client_id = %faults.client_id,
            unavailable = faults.unavailable,
            rejected_accounts = faults.reject_accounts.len(),
            "core Aria stand-in faults set"
        );
        self.set_faults(faults.clone());
        Ok(Response::new(faults))
    }

    async fn get_faults(
        &self,
        request: Request<GetFaultsRequest>,
    ) -> Result<Response<Faults>, Status> {
        let client_id = required_client(&request.into_inner().client_id)?;
        Ok(Response::new(self.faults(&client_id)))
    }

    async fn list_received(
        &self,
        request: Request<ListReceivedRequest>,
    ) -> Result<Response<ListReceivedResponse>, Status> {
        let r = request.into_inner();
        let client_id = required_client(&r.client_id)?;
        let limit = match r.limit {
            0 => 1000,
            n if n < 0 => return Err(invalid_argument("limit", "must not be negative")),
            n => i64::from(n.min(10_000)),
        };
        let mut conn = self.conn().await?;
        let (usage, orders, rejections) =
            records::list_received(&mut conn, &client_id, &r.account_id, limit)
                .await
                .map_err(store_failure)?;
        let time = |t: chrono::DateTime<chrono::Utc>| prost_types::Timestamp {
            seconds: t.timestamp(),
            nanos: t.timestamp_subsec_nanos() as i32,
        };
        Ok(Response::new(ListReceivedResponse {
            usage_transactions: usage
                .into_iter()
                .map(|u| ReceivedUsageTransaction {
                    client_id: u.client_id,
                    idempotency_key: u.idempotency_key,
                    core_transaction_id: format!("CT{}", u.core_transaction_no),
                    account_id: u.account_id,
                    transaction_type: u.transaction_type,
                    service_id: u.service_id,
                    quantity: u.quantity,
                    amount_minor: u.amount_minor,
                    currency: u.currency,
                    receive_count: u.receive_count,
                    first_receive_time: Some(time(u.first_receive_time)),
                })
                .collect(),
            true_up_orders: orders
                .into_iter()
                .map(|o| ReceivedTrueUpOrder {
                    client_id: o.client_id,
                    idempotency_key: o.idempotency_key,
                    order_id: format!("ORD{}", o.order_no),
                    account_id: o.account_id,
                    amount_minor: o.amount_minor,
                    currency: o.currency,
                    period_start: o.period_start,
                    period_end: o.period_end,
                    receive_count: o.receive_count,
                    first_receive_time: Some(time(o.first_receive_time)),
                })
                .collect(),
            rejections: rejections
                .into_iter()
                .map(|x| Rejection {
                    client_id: x.client_id,
                    idempotency_key: x.idempotency_key,
                    account_id: x.account_id,
                    request_kind: x.request_kind,
                    error_code: x.error_code,
                    error_message: x.error_message,
                    receive_time: Some(time(x.receive_time)),
                })
                .collect(),
        }))
    }
}
