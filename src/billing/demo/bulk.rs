//! The demo ledger's bulk SQL, on connections of its own (no statement
//! timeout: a million accounts take longer than any request may): the
//! generated rows go in by binary COPY, one statement per table and range
//! of accounts, and on a ledger that holds no other client the secondary
//! indexes are dropped before and built again after, which is several times
//! cheaper than keeping them up to date row by row. See
//! [`crate::billing::demo`].

use std::io::Cursor;

use futures_util::{pin_mut, SinkExt};
use tokio_postgres::{Client, NoTls};

use super::generate::{encode, CopyBuffer, IdBases, Table};
use super::store::{DemoLedgerSpec, LedgerCounts};

/// Accounts encoded at a time.
const CHUNK_ACCOUNTS: i64 = 500;
/// Bytes sent to the server at a time.
const SEND_BYTES: usize = 256 * 1024;

/// A connection of its own to `url`, and the task driving it.
async fn connect(
    url: &str,
) -> Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "demo ledger connection ended");
        }
    });
    Ok((client, driver))
}

/// Copies the generated rows of accounts `first..=last` into every ledger
/// table, one database transaction per table on a connection of its own,
/// calling `copied` with each table once its rows are committed; parts
/// with disjoint ranges may run at once. Per-row foreign key checks are off
/// when the session may turn them off (`session_replication_role` is for
/// superusers, which the embedded database, the tests and the benchmarks
/// are): the rows refer to each other by construction. Elsewhere the checks
/// stay and the load is slower, not different. Triggers are off too, and
/// the ledger has none.
pub async fn copy_accounts(
    url: &str,
    client_id: &str,
    spec: &DemoLedgerSpec,
    ids: &IdBases,
    first: i64,
    last: i64,
    copied: &(dyn Fn(Table) + Sync),
) -> Result<LedgerCounts, tokio_postgres::Error> {
    let (mut client, driver) = connect(url).await?;
    let result = async {
        let superuser: bool = client
            .query_one("SELECT current_setting('is_superuser') = 'on'", &[])
            .await?
            .get(0);
        let mut counts = LedgerCounts::default();
        for table in Table::ALL {
            let started = std::time::Instant::now();
            let tx = client.transaction().await?;
            if superuser {
                tx.batch_execute("SET LOCAL session_replication_role = replica")
                    .await?;
            }
            let sink = tx
                .copy_in::<_, Cursor<Vec<u8>>>(table.copy_statement())
                .await?;
            pin_mut!(sink);
            sink.send(Cursor::new(CopyBuffer::header())).await?;
            let mut buffer = CopyBuffer::default();
            let mut from = first;
            while from <= last {
                let to = (from + CHUNK_ACCOUNTS - 1).min(last);
                encode(table, spec, ids, client_id, from, to, &mut buffer);
                from = to + 1;
                if buffer.len() >= SEND_BYTES {
                    let (bytes, _) = buffer.take();
                    sink.send(Cursor::new(bytes)).await?;
                }
            }
            let (mut bytes, _) = buffer.take();
            bytes.extend_from_slice(&CopyBuffer::trailer());
            sink.send(Cursor::new(bytes)).await?;
            let rows = sink.as_mut().finish().await? as i64;
            tx.commit().await?;
            copied(table);
            match table {
                Table::Accounts => counts.accounts = rows,
                Table::Subscriptions => counts.subscriptions = rows,
                Table::BillUnits => counts.bill_units = rows,
                Table::UsageRecords => counts.usage_records = rows,
                Table::Transactions => counts.transactions = rows,
                Table::SubscriptionServices | Table::Balances => {}
            }
            tracing::debug!(
                ?table,
                first,
                last,
                rows,
                ms = started.elapsed().as_millis() as u64,
                "demo ledger rows copied"
            );
        }
        Ok(counts)
    }
    .await;
    drop(client);
    let _ = driver.await;
    result
}

/// A secondary index of the ledger, as dropped for a load.
#[derive(Debug, Clone)]
pub struct DroppedIndex {
    /// Its name (schema `ledger`).
    pub name: String,
    /// The table it indexes (schema `ledger`).
    pub table: String,
    /// The statement that creates it again.
    pub definition: String,
}

/// Drops the ledger's indexes that back no constraint, those of the
/// largest tables first, returning how to create them again. Keys and
/// unique constraints stay: foreign keys and `ON CONFLICT` need them, and
/// with the generated rows in key order keeping them up to date costs less
/// than building them again (measured: the text idempotency keys of 8.5
/// million transactions take twice as long to build as to maintain).
pub async fn drop_secondary_indexes(url: &str) -> Result<Vec<DroppedIndex>, tokio_postgres::Error> {
    let (client, driver) = connect(url).await?;
    let result = async {
        let rows = client
            .query(
                "SELECT c.relname::text, pg_get_indexdef(i.indexrelid), t.relname::text \
                 FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indexrelid \
                 JOIN pg_class t ON t.oid = i.indrelid \
                 JOIN pg_namespace ns ON ns.oid = c.relnamespace \
                 WHERE ns.nspname = 'ledger' \
                   AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) \
                 ORDER BY pg_relation_size(i.indrelid) DESC, 1",
                &[],
            )
            .await?;
        let mut dropped = Vec::new();
        for row in rows {
            let name: String = row.get(0);
            let definition: String = row.get(1);
            let table: String = row.get(2);
            client
                .batch_execute(&format!("DROP INDEX IF EXISTS ledger.\"{name}\""))
                .await?;
            dropped.push(DroppedIndex {
                definition: definition.replacen("INDEX ", "INDEX IF NOT EXISTS ", 1),
                name,
                table,
            });
        }
        Ok(dropped)
    }
    .await;
    drop(client);
    let _ = driver.await;
    result
}

/// Creates `indexes` again, one after the other, on a connection of its
/// own.
pub async fn create_indexes(
    url: &str,
    indexes: &[DroppedIndex],
) -> Result<(), tokio_postgres::Error> {
    if indexes.is_empty() {
        return Ok(());
    }
    let (client, driver) = connect(url).await?;
    let result = async {
        client
            .batch_execute("SET maintenance_work_mem = '256MB'")
            .await?;
        for index in indexes {
            let started = std::time::Instant::now();
            client.batch_execute(&index.definition).await?;
            tracing::debug!(
                index = %index.name,
                ms = started.elapsed().as_millis() as u64,
                "demo ledger index built"
            );
        }
        Ok(())
    }
    .await;
    drop(client);
    let _ = driver.await;
    result
}
