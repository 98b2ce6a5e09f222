//! The stand-in's true-up orders: one decision for a whole batch (the
//! batch call, and the single call as a batch of one), so a batch costs a
//! few statements whatever its size, and each order gets its own result.

use std::collections::{HashMap, HashSet};

use tonic::Status;

use super::standin::{injected, store_failure, CoreStandIn, IDEMPOTENCY_CONFLICT, INVALID_REQUEST};
use crate::billing::core_aria::standin_store::{self as records, IncomingTrueUp, NewRejection};
use crate::proto::core_v1::{OrderResult, TrueUpOrder};

const TRUE_UP_ORDER: &str = "TRUE_UP_ORDER";

fn refused(key: &str, code: &str, message: String) -> OrderResult {
    OrderResult {
        idempotency_key: key.to_string(),
        error_code: Some(code.to_string()),
        error_message: message,
        order_id: String::new(),
        replayed: false,
    }
}

fn rejection(order: &TrueUpOrder, code: &str, message: &str) -> NewRejection {
    NewRejection {
        idempotency_key: order.idempotency_key.clone(),
        account_id: order.account_id.clone(),
        request_kind: TRUE_UP_ORDER.into(),
        error_code: code.to_string(),
        error_message: message.to_string(),
    }
}

impl CoreStandIn {
    /// Creates the orders of `client_id`, one result per order in request
    /// order: INVALID_REQUEST for an order missing its key, account or
    /// currency; the injected code for a rejected account (unless the key
    /// was accepted before: a replay gets its original order); the original
    /// order for a replay; IDEMPOTENCY_CONFLICT for a known key with other
    /// content; else a new order. A key repeated in the batch gets the
    /// result of its first occurrence. UNAVAILABLE for the whole batch when
    /// the client is set unavailable or the records cannot be reached.
    pub(super) async fn create_orders(
        &self,
        client_id: &str,
        orders: &[TrueUpOrder],
    ) -> Result<Vec<OrderResult>, Status> {
        let reject_accounts = self.check_available(client_id)?;
        let mut conn = self.conn().await?;
        let fault_keys: Vec<String> = orders
            .iter()
            .filter(|o| reject_accounts.contains_key(&o.account_id))
            .map(|o| o.idempotency_key.clone())
            .collect();
        let replays: HashSet<String> =
            records::accepted_keys(&mut conn, client_id, &fault_keys, true)
                .await
                .map_err(store_failure)?
                .into_iter()
                .collect();
        let mut results: Vec<Option<OrderResult>> = vec![None; orders.len()];
        let mut first_of_key: HashMap<&str, usize> = HashMap::new();
        let mut to_accept = Vec::new();
        let mut rejections = Vec::new();
        for (i, o) in orders.iter().enumerate() {
            if o.idempotency_key.is_empty() || o.account_id.is_empty() || o.currency.is_empty() {
                results[i] = Some(refused(
                    &o.idempotency_key,
                    INVALID_REQUEST,
                    "idempotency_key, account_id and currency are required".into(),
                ));
                continue;
            }
            if first_of_key.contains_key(o.idempotency_key.as_str()) {
                continue; // Same result as the first occurrence, below.
            }
            first_of_key.insert(&o.idempotency_key, i);
            if let Some(code) = reject_accounts
                .get(&o.account_id)
                .filter(|_| !replays.contains(&o.idempotency_key))
            {
                let message = injected(code, &o.account_id);
                rejections.push(rejection(o, code, &message));
                results[i] = Some(refused(&o.idempotency_key, code, message));
                continue;
            }
            to_accept.push((
                o,
                IncomingTrueUp {
                    idempotency_key: o.idempotency_key.clone(),
                    account_id: o.account_id.clone(),
                    amount_minor: o.amount_minor,
                    currency: o.currency.clone(),
                    period_start: o.period_start.clone(),
                    period_end: o.period_end.clone(),
                    minimum_commitment_minor: o.minimum_commitment_minor,
                    eligible_usage_minor: o.eligible_usage_minor,
                    ledger_transaction_id: o.ledger_transaction_id.clone(),
                },
            ));
        }
        let incoming: Vec<IncomingTrueUp> = to_accept.iter().map(|(_, t)| t.clone()).collect();
        let accepted = records::accept_true_ups(&mut conn, client_id, &incoming)
            .await
            .map_err(store_failure)?;
        for a in &accepted {
            if let Some(&i) = first_of_key.get(a.idempotency_key.as_str()) {
                results[i] = Some(OrderResult {
                    idempotency_key: a.idempotency_key.clone(),
                    error_code: None,
                    error_message: String::new(),
                    order_id: format!("ORD{}", a.order_no),
                    replayed: a.replayed,
                });
            }
        }
        for (o, _) in &to_accept {
            let i = first_of_key[o.idempotency_key.as_str()];
            if results[i].is_none() {
                let message = format!(
                    "idempotency key {} was accepted before with other content",
                    o.idempotency_key
                );
                rejections.push(rejection(o, IDEMPOTENCY_CONFLICT, &message));
                results[i] = Some(refused(&o.idempotency_key, IDEMPOTENCY_CONFLICT, message));
            }
        }
        records::record_rejections(&mut conn, client_id, &rejections)
            .await
            .map_err(store_failure)?;
        Ok(orders
            .iter()
            .enumerate()
            .map(|(i, o)| {
                results[i]
                    .clone()
                    .or_else(|| {
                        first_of_key
                            .get(o.idempotency_key.as_str())
                            .and_then(|&first| results[first].clone())
                    })
                    .unwrap_or_else(|| {
                        refused(
                            &o.idempotency_key,
                            INVALID_REQUEST,
                            "order not decided".into(),
                        )
                    })
            })
            .collect())
    }
}
