//! The stand-in core Aria's control service as a development tool: served
//! only when asked for, every call about exactly one client, faults that
//! touch only the client they were set for. A real stand-in on a real
//! socket, recording in a real database.

use std::collections::{BTreeSet, HashMap};

use allegro_scheduler::billing::core_aria::serve_standin;
use allegro_scheduler::db::Db;
use allegro_scheduler::proto::core_v1 as core;
use core::core_stand_in_control_client::CoreStandInControlClient;
use core::core_sync_service_client::CoreSyncServiceClient;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::support::*;

/// A stand-in on port 0, stopped when dropped.
struct StandIn {
    channel: Channel,
    shutdown: CancellationToken,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl StandIn {
    async fn start(control: bool) -> Self {
        let db = Db::new(&fresh_database().await, 2).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        tokio::spawn(serve_standin(db, listener, control, shutdown.clone()));
        let channel = Channel::from_shared(endpoint)
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self { channel, shutdown }
    }

    fn control(&self) -> CoreStandInControlClient<Channel> {
        CoreStandInControlClient::new(self.channel.clone())
    }

    fn sync(&self) -> CoreSyncServiceClient<Channel> {
        CoreSyncServiceClient::new(self.channel.clone())
    }

    async fn set_faults(&self, client: &str, unavailable: bool, reject: &[(&str, &str)]) {
        self.control()
            .set_faults(core::SetFaultsRequest {
                client_id: client.into(),
                unavailable,
                reject_accounts: reject
                    .iter()
                    .map(|(a, c)| (a.to_string(), c.to_string()))
                    .collect(),
            })
            .await
            .unwrap();
    }

    /// Sends one USAGE transaction of `account` keyed `key` for `client`:
    /// its result, or the call's status.
    async fn send(
        &self,
        client: &str,
        account: &str,
        key: &str,
    ) -> Result<core::TransactionResult, tonic::Status> {
        let response = self
            .sync()
            .record_usage_transactions(core::RecordUsageTransactionsRequest {
                client_id: client.into(),
                transactions: vec![core::UsageTransaction {
                    idempotency_key: key.into(),
                    account_id: account.into(),
                    transaction_type: "USAGE".into(),
                    service_id: "VOICE_MIN".into(),
                    quantity: 10,
                    amount_minor: 50,
                    currency: "USD".into(),
                    ..Default::default()
                }],
            })
            .await?;
        Ok(response.into_inner().results.remove(0))
    }

    async fn received(&self, client: &str) -> core::ListReceivedResponse {
        self.control()
            .list_received(core::ListReceivedRequest {
                client_id: client.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }
}

#[tokio::test]
async fn control_calls_without_a_client_are_refused_naming_client_id() {
    let standin = StandIn::start(true).await;
    standin.send(CLIENT, "A1", "k1").await.unwrap();
    let mut control = standin.control();

    let status = control
        .list_received(core::ListReceivedRequest::default())
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["client_id"]);
    assert!(status.message().contains("client_id"), "{status:?}");

    let status = control
        .set_faults(core::SetFaultsRequest {
            unavailable: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["client_id"]);
    let status = control
        .get_faults(core::GetFaultsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["client_id"]);
    let status = control
        .list_received(core::ListReceivedRequest {
            client_id: CLIENT.into(),
            limit: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["limit"]);

    // The refused SetFaults changed nothing.
    assert!(standin.send(CLIENT, "A1", "k2").await.is_ok());
}

#[tokio::test]
async fn list_received_returns_one_clients_records_only() {
    let standin = StandIn::start(true).await;
    // The same keys and accounts for two clients, and a rejection each.
    for client in [CLIENT, "globex"] {
        standin
            .set_faults(client, false, &[("BAD", "ACCOUNT_ON_HOLD")])
            .await;
        for key in ["k1", "k2"] {
            standin.send(client, "A1", key).await.unwrap();
        }
        let rejected = standin.send(client, "BAD", "k3").await.unwrap();
        assert_eq!(rejected.error_code.as_deref(), Some("ACCOUNT_ON_HOLD"));
    }
    standin.send("globex", "A1", "only-globex").await.unwrap();

    let acme = standin.received(CLIENT).await;
    let clients: BTreeSet<&str> = acme
        .usage_transactions
        .iter()
        .map(|t| t.client_id.as_str())
        .chain(acme.rejections.iter().map(|r| r.client_id.as_str()))
        .collect();
    assert_eq!(clients, BTreeSet::from([CLIENT]));
    let keys: Vec<&str> = acme
        .usage_transactions
        .iter()
        .map(|t| t.idempotency_key.as_str())
        .collect();
    assert_eq!(keys, ["k1", "k2"]);
    assert_eq!(acme.rejections.len(), 1);

    let globex = standin.received("globex").await;
    assert!(globex
        .usage_transactions
        .iter()
        .all(|t| t.client_id == "globex"));
    assert_eq!(globex.usage_transactions.len(), 3);
    assert!(globex.rejections.iter().all(|r| r.client_id == "globex"));
    assert!(standin
        .received("initech")
        .await
        .usage_transactions
        .is_empty());
}

#[tokio::test]
async fn faults_apply_to_the_client_they_were_set_for_only() {
    let standin = StandIn::start(true).await;

    // acme's core is down; globex's is not.
    standin.set_faults(CLIENT, true, &[]).await;
    let status = standin.send(CLIENT, "A1", "k1").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    let accepted = standin.send("globex", "A1", "k1").await.unwrap();
    assert_eq!(accepted.error_code, None);

    // acme rejects its A1; globex's A1 (another customer) is accepted.
    standin
        .set_faults(CLIENT, false, &[("A1", "ACCOUNT_NOT_FOUND")])
        .await;
    let rejected = standin.send(CLIENT, "A1", "k2").await.unwrap();
    assert_eq!(rejected.error_code.as_deref(), Some("ACCOUNT_NOT_FOUND"));
    let accepted = standin.send("globex", "A1", "k2").await.unwrap();
    assert_eq!(accepted.error_code, None);

    // Each client reads back its own faults.
    let mut control = standin.control();
    let acme = control
        .get_faults(core::GetFaultsRequest {
            client_id: CLIENT.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acme.client_id, CLIENT);
    assert_eq!(
        acme.reject_accounts,
        HashMap::from([("A1".to_string(), "ACCOUNT_NOT_FOUND".to_string())])
    );
    let globex = control
        .get_faults(core::GetFaultsRequest {
            client_id: "globex".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!globex.unavailable && globex.reject_accounts.is_empty());

    // Setting globex's faults leaves acme's as they are.
    standin.set_faults("globex", true, &[]).await;
    let rejected = standin.send(CLIENT, "A1", "k3").await.unwrap();
    assert_eq!(rejected.error_code.as_deref(), Some("ACCOUNT_NOT_FOUND"));
    // The true-up intake follows the same per-client faults.
    let order = |client: &str| core::CreateTrueUpOrderRequest {
        client_id: client.into(),
        idempotency_key: "TRUE_UP:BU1".into(),
        account_id: "A2".into(),
        amount_minor: 100,
        currency: "USD".into(),
        ..Default::default()
    };
    let status = standin
        .sync()
        .create_true_up_order(order("globex"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    let created = standin
        .sync()
        .create_true_up_order(order(CLIENT))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.error_code, None);
}

fn order(account: &str, key: &str, amount_minor: i64) -> core::TrueUpOrder {
    core::TrueUpOrder {
        idempotency_key: key.into(),
        account_id: account.into(),
        amount_minor,
        currency: "USD".into(),
        period_start: "2027-02-15".into(),
        period_end: "2027-03-15".into(),
        minimum_commitment_minor: 6000,
        eligible_usage_minor: 6000 - amount_minor,
        ledger_transaction_id: key.into(),
    }
}

/// (key, error code or order id, replayed) of each result.
fn outcomes(results: &[core::OrderResult]) -> Vec<(String, String, bool)> {
    results
        .iter()
        .map(|r| {
            let outcome = r.error_code.clone().unwrap_or_else(|| r.order_id.clone());
            (r.idempotency_key.clone(), outcome, r.replayed)
        })
        .collect()
}

#[tokio::test]
async fn a_batch_of_true_up_orders_answers_each_order_on_its_own() {
    let standin = StandIn::start(true).await;
    standin
        .set_faults(CLIENT, false, &[("A2", "ACCOUNT_ON_HOLD")])
        .await;
    let mut sync = standin.sync();
    let batch = |orders: Vec<core::TrueUpOrder>| core::CreateTrueUpOrdersRequest {
        client_id: CLIENT.into(),
        orders,
    };

    // A rejected account, an order missing its currency: only those two
    // are refused, each with its own code, in request order.
    let mut missing_currency = order("A3", "TRUE_UP:BU3", 300);
    missing_currency.currency.clear();
    let first = sync
        .create_true_up_orders(batch(vec![
            order("A1", "TRUE_UP:BU1", 100),
            order("A2", "TRUE_UP:BU2", 200),
            missing_currency,
            order("A4", "TRUE_UP:BU4", 400),
        ]))
        .await
        .unwrap()
        .into_inner()
        .results;
    let got = outcomes(&first);
    assert_eq!(got.len(), 4);
    assert_eq!(
        got[1],
        ("TRUE_UP:BU2".into(), "ACCOUNT_ON_HOLD".into(), false)
    );
    assert_eq!(
        got[2],
        ("TRUE_UP:BU3".into(), "INVALID_REQUEST".into(), false)
    );
    for i in [0, 3] {
        assert!(got[i].1.starts_with("ORD"), "{got:?}");
        assert!(!got[i].2, "{got:?}");
    }
    assert!(first[1].error_message.contains("A2"), "{first:?}");

    // Again, with a key repeated, one key sent with another amount, and the
    // rejected account's key: replays get their original order, the
    // repeated key its first occurrence's result, the changed one a
    // conflict; the rejected account is still refused.
    let again = sync
        .create_true_up_orders(batch(vec![
            order("A1", "TRUE_UP:BU1", 100),
            order("A4", "TRUE_UP:BU4", 450),
            order("A2", "TRUE_UP:BU2", 200),
            order("A1", "TRUE_UP:BU1", 100),
        ]))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(
        outcomes(&again),
        [
            ("TRUE_UP:BU1".to_string(), first[0].order_id.clone(), true),
            ("TRUE_UP:BU4".into(), "IDEMPOTENCY_CONFLICT".into(), false),
            ("TRUE_UP:BU2".into(), "ACCOUNT_ON_HOLD".into(), false),
            ("TRUE_UP:BU1".into(), first[0].order_id.clone(), true),
        ]
    );

    // One order per key; every refusal on record.
    let received = standin.received(CLIENT).await;
    let orders: Vec<(&str, i64, i32)> = received
        .true_up_orders
        .iter()
        .map(|o| (o.idempotency_key.as_str(), o.amount_minor, o.receive_count))
        .collect();
    assert_eq!(orders, [("TRUE_UP:BU1", 100, 2), ("TRUE_UP:BU4", 400, 1)]);
    let refused: Vec<(&str, &str)> = received
        .rejections
        .iter()
        .map(|r| (r.idempotency_key.as_str(), r.error_code.as_str()))
        .collect();
    assert_eq!(
        refused,
        [
            ("TRUE_UP:BU2", "ACCOUNT_ON_HOLD"),
            ("TRUE_UP:BU2", "ACCOUNT_ON_HOLD"),
            ("TRUE_UP:BU4", "IDEMPOTENCY_CONFLICT"),
        ]
    );

    // Unavailable: the whole call fails and nothing is recorded.
    standin.set_faults(CLIENT, true, &[]).await;
    let status = sync
        .create_true_up_orders(batch(vec![order("A5", "TRUE_UP:BU5", 500)]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    standin.set_faults(CLIENT, false, &[]).await;
    assert_eq!(standin.received(CLIENT).await.true_up_orders.len(), 2);

    // No client: refused as a whole, naming the field.
    let status = sync
        .create_true_up_orders(core::CreateTrueUpOrdersRequest {
            client_id: String::new(),
            orders: vec![order("A1", "TRUE_UP:BU1", 100)],
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["client_id"]);
}

#[tokio::test]
async fn control_service_is_not_served_unless_enabled() {
    let standin = StandIn::start(false).await;
    let mut control = standin.control();
    let status = control
        .set_faults(core::SetFaultsRequest {
            client_id: CLIENT.into(),
            unavailable: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    let status = control
        .list_received(core::ListReceivedRequest {
            client_id: CLIENT.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    // The sync interface is served, and no fault was set.
    let accepted = standin.send(CLIENT, "A1", "k1").await.unwrap();
    assert_eq!(accepted.error_code, None);

    // Reflection lists what is served, and only that.
    assert!(!listed_services(&standin.channel)
        .await
        .contains(&"aria.core.v1.CoreStandInControl".to_string()));
    let enabled = StandIn::start(true).await;
    let listed = listed_services(&enabled.channel).await;
    for expected in [
        "aria.core.v1.CoreSyncService",
        "aria.core.v1.CoreStandInControl",
    ] {
        assert!(listed.contains(&expected.to_string()), "{listed:?}");
    }
}

/// The service names the server's reflection (v1) lists.
async fn listed_services(channel: &Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer")
    };
    list.service.into_iter().map(|s| s.name).collect()
}
