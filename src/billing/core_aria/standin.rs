//! A stand-in for core Aria, for development, demos and tests: it serves
//! core Aria's sync interface, records each accepted transaction and order
//! once per idempotency key in the `core_standin` tables (a replay returns
//! the original result, even for an account now set to be rejected), and
//! injects faults on request through its control service, so errors can be
//! produced on purpose. A rejection applies nothing and is not remembered
//! against the key, so a retry after the cause is fixed is accepted.
//!
//! Faults are kept per client: a fault set for one client never touches
//! another's calls. They live in the process: each stand-in instance has
//! its own. What it records lives in the database, so instances sharing one
//! database share idempotency.
//!
//! The control service (faults, read-back of what was received) is a
//! development tool: [`serve_standin`] serves it only when asked to.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::CoreError;
use crate::billing::core_aria::standin_store::{self as records, IncomingUsage, NewRejection};
use crate::db::{Db, DbError};
use crate::proto::core_v1::core_stand_in_control_server::CoreStandInControlServer;
use crate::proto::core_v1::core_sync_service_server::{CoreSyncService, CoreSyncServiceServer};
use crate::proto::core_v1::{
    CreateTrueUpOrderRequest, CreateTrueUpOrderResponse, CreateTrueUpOrdersRequest,
    CreateTrueUpOrdersResponse, Faults, RecordUsageTransactionsRequest,
    RecordUsageTransactionsResponse, TransactionResult, TrueUpOrder,
};
use crate::proto::CORE_FILE_DESCRIPTOR_SET;

/// Code of a transaction whose key was accepted before with other content.
pub const IDEMPOTENCY_CONFLICT: &str = "IDEMPOTENCY_CONFLICT";
/// Code of a transaction or order missing a required field.
pub const INVALID_REQUEST: &str = "INVALID_REQUEST";

/// The stand-in core Aria service: both its sync interface and its control
/// service. Cheap to clone; clones share faults.
#[derive(Clone)]
pub struct CoreStandIn {
    db: Db,
    /// Injected faults by client; a client without an entry has none.
    faults: Arc<RwLock<HashMap<String, Faults>>>,
}

impl CoreStandIn {
    /// A stand-in recording in `db`, with no faults.
    pub fn new(db: Db) -> Self {
        Self {
            db,
            faults: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    /// The faults in effect for `client_id` (none: the default).
    pub fn faults(&self, client_id: &str) -> Faults {
        let faults = self.faults.read().unwrap_or_else(|e| e.into_inner());
        faults.get(client_id).cloned().unwrap_or_else(|| Faults {
            client_id: client_id.to_string(),
            ..Faults::default()
        })
    }

    /// Replaces the faults of `faults.client_id`; other clients keep theirs.
    pub fn set_faults(&self, faults: Faults) {
        let mut all = self.faults.write().unwrap_or_else(|e| e.into_inner());
        if !faults.unavailable && faults.reject_accounts.is_empty() {
            all.remove(&faults.client_id);
        } else {
            all.insert(faults.client_id.clone(), faults);
        }
    }

    /// The accounts of `client_id` to reject, or UNAVAILABLE when the
    /// client's calls are set to fail as a whole.
    pub(super) fn check_available(
        &self,
        client_id: &str,
    ) -> Result<HashMap<String, String>, Status> {
        let faults = self.faults(client_id);
        if faults.unavailable {
            return Err(Status::unavailable(
                "core Aria stand-in is set unavailable (fault injected)",
            ));
        }
        Ok(faults.reject_accounts)
    }

    pub(super) async fn conn(&self) -> Result<crate::db::Conn, Status> {
        self.db.conn().await.map_err(store_failure)
    }
}

/// A failure of the stand-in's own records: UNAVAILABLE when the database
/// cannot be reached (the caller retries), INTERNAL otherwise.
pub(super) fn store_failure(e: DbError) -> Status {
    match e {
        DbError::Pool(reason) => {
            tracing::warn!(%reason, "core Aria stand-in: database unavailable");
            Status::unavailable("core Aria stand-in: database unavailable")
        }
        other => {
            tracing::error!(error = %other, "core Aria stand-in store failure");
            Status::internal("core Aria stand-in: internal error")
        }
    }
}

/// INVALID_ARGUMENT naming the bad `field`, with a `google.rpc.BadRequest`
/// field violation.
pub(super) fn invalid_argument(field: &str, description: &str) -> Status {
    use tonic_types::{ErrorDetails, StatusExt};
    let mut details = ErrorDetails::new();
    details.add_bad_request_violation(field, description);
    Status::with_error_details(
        tonic::Code::InvalidArgument,
        format!("{field}: {description}"),
        details,
    )
}

fn rejected(key: &str, code: &str, message: String) -> TransactionResult {
    TransactionResult {
        idempotency_key: key.to_string(),
        error_code: Some(code.to_string()),
        error_message: message,
        core_transaction_id: String::new(),
        replayed: false,
    }
}

/// The message of an injected rejection.
pub(super) fn injected(code: &str, account_id: &str) -> String {
    format!("account {account_id} rejected by core Aria stand-in with {code} (fault injected)")
}

#[tonic::async_trait]
impl CoreSyncService for CoreStandIn {
    async fn record_usage_transactions(
        &self,
        request: Request<RecordUsageTransactionsRequest>,
    ) -> Result<Response<RecordUsageTransactionsResponse>, Status> {
        let request = request.into_inner();
        if request.client_id.is_empty() {
            return Err(invalid_argument("client_id", "is required"));
        }
        let reject_accounts = self.check_available(&request.client_id)?;
        let mut conn = self.conn().await?;
        // Keys of rejected accounts accepted before are replays: they get
        // their original result, as from real core Aria.
        let fault_keys: Vec<String> = request
            .transactions
            .iter()
            .filter(|t| reject_accounts.contains_key(&t.account_id))
            .map(|t| t.idempotency_key.clone())
            .collect();
        let replays: HashSet<String> =
            records::accepted_keys(&mut conn, &request.client_id, &fault_keys, false)
                .await
                .map_err(store_failure)?
                .into_iter()
                .collect();
        // Decide each transaction: invalid, rejected by fault, or to accept.
        let mut results: Vec<Option<TransactionResult>> = vec![None; request.transactions.len()];
        let mut to_accept = Vec::new();
        let mut first_of_key: HashMap<&str, usize> = HashMap::new();
        let mut rejections = Vec::new();
        for (i, t) in request.transactions.iter().enumerate() {
            if t.idempotency_key.is_empty() || t.account_id.is_empty() || t.currency.is_empty() {
                results[i] = Some(rejected(
                    &t.idempotency_key,
                    INVALID_REQUEST,
                    "idempotency_key, account_id and currency are required".into(),
                ));
                continue;
            }
            if first_of_key.contains_key(t.idempotency_key.as_str()) {
                continue; // Same result as the first occurrence, below.
            }
            first_of_key.insert(&t.idempotency_key, i);
            if let Some(code) = reject_accounts
                .get(&t.account_id)
                .filter(|_| !replays.contains(&t.idempotency_key))
            {
                let message = injected(code, &t.account_id);
                rejections.push(NewRejection {
                    idempotency_key: t.idempotency_key.clone(),
                    account_id: t.account_id.clone(),
                    request_kind: "USAGE_TRANSACTION".into(),
                    error_code: code.clone(),
                    error_message: message.clone(),
                });
                results[i] = Some(rejected(&t.idempotency_key, code, message));
                continue;
            }
            to_accept.push(IncomingUsage {
                idempotency_key: t.idempotency_key.clone(),
                account_id: t.account_id.clone(),
                transaction_type: t.transaction_type.clone(),
                service_id: t.service_id.clone(),
                quantity: t.quantity,
                amount_minor: t.amount_minor,
                currency: t.currency.clone(),
                ledger_transaction_id: t.ledger_transaction_id.clone(),
            });
        }
        let accepted = records::accept_usage(&mut conn, &request.client_id, &to_accept)
            .await
            .map_err(store_failure)?;
        let accepted_keys: HashSet<&str> = accepted
            .iter()
            .map(|a| a.idempotency_key.as_str())
            .collect();
        for a in &accepted {
            results[first_of_key[a.idempotency_key.as_str()]] = Some(TransactionResult {
                idempotency_key: a.idempotency_key.clone(),
                error_code: None,
                error_message: String::new(),
                core_transaction_id: format!("CT{}", a.core_transaction_no),
                replayed: a.replayed,
            });
        }
        for t in &to_accept {
            if !accepted_keys.contains(t.idempotency_key.as_str()) {
                let message = format!(
                    "idempotency key {} was accepted before with other content",
                    t.idempotency_key
                );
                rejections.push(NewRejection {
                    idempotency_key: t.idempotency_key.clone(),
                    account_id: t.account_id.clone(),
                    request_kind: "USAGE_TRANSACTION".into(),
                    error_code: IDEMPOTENCY_CONFLICT.into(),
                    error_message: message.clone(),
                });
                results[first_of_key[t.idempotency_key.as_str()]] =
                    Some(rejected(&t.idempotency_key, IDEMPOTENCY_CONFLICT, message));
            }
        }
        records::record_rejections(&mut conn, &request.client_id, &rejections)
            .await
            .map_err(store_failure)?;
        let results = request
            .transactions
            .iter()
            .zip(&results)
            .map(|(t, r)| match r {
                Some(r) => r.clone(),
                // Invariant: a repeated key's first occurrence was decided
                // above, so its result is there.
                #[allow(clippy::expect_used)]
                None => results[first_of_key[t.idempotency_key.as_str()]]
                    .clone()
                    .expect("first occurrence decided"),
            })
            .collect();
        Ok(Response::new(RecordUsageTransactionsResponse { results }))
    }

    async fn create_true_up_order(
        &self,
        request: Request<CreateTrueUpOrderRequest>,
    ) -> Result<Response<CreateTrueUpOrderResponse>, Status> {
        let r = request.into_inner();
        if r.client_id.is_empty() {
            return Err(invalid_argument("client_id", "is required"));
        }
        let order = TrueUpOrder {
            idempotency_key: r.idempotency_key,
            account_id: r.account_id,
            amount_minor: r.amount_minor,
            currency: r.currency,
            period_start: r.period_start,
            period_end: r.period_end,
            minimum_commitment_minor: r.minimum_commitment_minor,
            eligible_usage_minor: r.eligible_usage_minor,
            ledger_transaction_id: r.ledger_transaction_id,
        };
        let result = self
            .create_orders(&r.client_id, std::slice::from_ref(&order))
            .await?
            .pop()
            .ok_or_else(|| Status::internal("core Aria stand-in: no result for the order"))?;
        Ok(Response::new(CreateTrueUpOrderResponse {
            error_code: result.error_code,
            error_message: result.error_message,
            order_id: result.order_id,
            replayed: result.replayed,
        }))
    }

    async fn create_true_up_orders(
        &self,
        request: Request<CreateTrueUpOrdersRequest>,
    ) -> Result<Response<CreateTrueUpOrdersResponse>, Status> {
        let r = request.into_inner();
        if r.client_id.is_empty() {
            return Err(invalid_argument("client_id", "is required"));
        }
        let results = self.create_orders(&r.client_id, &r.orders).await?;
        Ok(Response::new(CreateTrueUpOrdersResponse { results }))
    }
}

/// Serves the stand-in core Aria on `listener`, recording in `db`, until
/// `shutdown` is cancelled: the sync interface, health and reflection (v1
/// and v1alpha), and, only when `control` is true, the control service
/// (fault injection and read-back, a development tool: off unless the
/// stand-in runs in-process for development). Without it, control calls
/// answer UNIMPLEMENTED and reflection does not list the service. The
/// database must be migrated. The main service starts it in-process on its
/// own port; tests start it on port 0.
pub async fn serve_standin(
    db: Db,
    listener: TcpListener,
    control: bool,
    shutdown: CancellationToken,
) -> Result<(), CoreError> {
    use tonic::server::NamedService;
    let standin = CoreStandIn::new(db);
    let addr = listener
        .local_addr()
        .map_err(|e| CoreError::Serve(e.to_string()))?;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<CoreSyncServiceServer<CoreStandIn>>()
        .await;
    let mut listed = vec![
        CoreSyncServiceServer::<CoreStandIn>::NAME,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];
    if control {
        listed.push(CoreStandInControlServer::<CoreStandIn>::NAME);
    }
    let reflection = || {
        listed.iter().fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(CORE_FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
            |builder, name| builder.with_service_name(*name),
        )
    };
    let reflection_error = |e: tonic_reflection::server::Error| CoreError::Serve(e.to_string());
    let reflection_v1 = reflection().build_v1().map_err(reflection_error)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(reflection_error)?;
    tracing::info!(%addr, control, "serving the core Aria stand-in");
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(CoreSyncServiceServer::new(standin.clone()))
        .add_optional_service(control.then(|| CoreStandInControlServer::new(standin)))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled())
        .await
        .map_err(|e| CoreError::Serve(e.to_string()))
}
