//! The demo ledger's bulk SQL, on connections of its own (no statement
//! timeout: a million accounts take longer than any request may): the
//! generated rows go in by binary COPY, one statement per table, and on a
//! ledger that holds no other client the indexes and keys that no foreign
//! key needs are dropped before and built again after, which costs less
//! than keeping them up to date row by row. See [`crate::billing::demo`].

use std::io::Cursor;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// What the streams of one load may do beyond a plain COPY.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyMode {
    /// The per-row foreign key checks are off (see
    /// [`super::store::foreign_key_checks_can_be_off`]), so a child table
    /// may be copied before or beside its parents: the rows refer to each
    /// other by construction. Triggers are off too, and the ledger has none.
    /// Without it, the tables must come parents first, from one stream.
    pub fk_checks_off: bool,
    /// The ledger holds no other client (a large load, see
    /// [`drop_rebuildable_indexes`]): a leaf table (see
    /// [`Table::is_referenced`]) found empty under an exclusive lock is
    /// truncated in the copying transaction and copied with `FREEZE`. Its
    /// rows are then written frozen and its pages all-visible, so the first
    /// scan after the load (the index builds') does not write every page
    /// again to set its rows' hint bits, and no vacuum has to freeze them
    /// later.
    pub freeze_leaves: bool,
}

/// Copies the generated rows of every account into the tables `next_table`
/// hands out, one after the other until it hands out none, one database
/// transaction and one COPY per table on a connection of its own, calling
/// `copied` with each table once its rows are committed. Several such
/// streams may share one `next_table`. Each table goes in by one stream and
/// its rows are generated in key order, so they lie in the table in key
/// order (after a load of 1,000,000 accounts, not one transaction, usage
/// record or subscription out of it; before the leaves were truncated
/// first, one transaction in about 1,200 landed on an earlier page with
/// room), and the keys kept during the load take them at their right edge,
/// the builds after it sort presorted input; several streams into one
/// table interleave their pages, wait on each other to extend it, and
/// measured slower (see `copy_plan` in [`super`]). See [`CopyMode`] for
/// what `mode` allows.
pub async fn copy_tables(
    url: &str,
    client_id: &str,
    spec: &DemoLedgerSpec,
    ids: &IdBases,
    next_table: &(dyn Fn() -> Option<Table> + Sync),
    mode: CopyMode,
    copied: &(dyn Fn(Table) + Sync),
) -> Result<LedgerCounts, tokio_postgres::Error> {
    let (mut client, driver) = connect(url).await?;
    let result = async {
        let mut counts = LedgerCounts::default();
        while let Some(table) = next_table() {
            let started = std::time::Instant::now();
            let tx = client.transaction().await?;
            if mode.fk_checks_off {
                tx.batch_execute("SET LOCAL session_replication_role = replica")
                    .await?;
            }
            let freeze = mode.freeze_leaves
                && !table.is_referenced()
                && truncate_if_empty(&tx, table).await?;
            let statement = if freeze {
                format!("{} FREEZE", table.copy_statement())
            } else {
                table.copy_statement().to_string()
            };
            let sink = tx.copy_in::<_, Cursor<Vec<u8>>>(&statement).await?;
            pin_mut!(sink);
            sink.send(Cursor::new(CopyBuffer::header())).await?;
            let mut buffer = CopyBuffer::default();
            let mut from = 1;
            while from <= spec.accounts {
                let to = (from + CHUNK_ACCOUNTS - 1).min(spec.accounts);
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
                rows,
                freeze,
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

/// Truncates `table` in `tx` if it holds no row, checked under an
/// exclusive lock held to the end of `tx`, so no row can arrive in between:
/// whether it did, and so whether the COPY in `tx` may use `FREEZE`.
async fn truncate_if_empty(
    tx: &tokio_postgres::Transaction<'_>,
    table: Table,
) -> Result<bool, tokio_postgres::Error> {
    let name = table.name();
    tx.batch_execute(&format!(
        "LOCK TABLE ledger.{name} IN ACCESS EXCLUSIVE MODE"
    ))
    .await?;
    let empty: bool = tx
        .query_one(
            &format!("SELECT NOT EXISTS (SELECT 1 FROM ledger.{name})"),
            &[],
        )
        .await?
        .get(0);
    if empty {
        tx.batch_execute(&format!("TRUNCATE ledger.{name}")).await?;
    }
    Ok(empty)
}

/// An index or key of the ledger, as dropped for a load.
#[derive(Debug, Clone)]
pub struct DroppedIndex {
    /// Its name (schema `ledger`).
    pub name: String,
    /// The table it indexes (schema `ledger`).
    pub table: String,
    /// The statement that creates it again.
    pub definition: String,
}

/// Drops the ledger's indexes that no foreign key refers to, on the tables
/// the load copies, returning how to create them again, those of the
/// largest tables first: secondary indexes, and the primary keys and unique
/// constraints that only guard their own table (transactions, usage
/// records, balances, the period keys of bill units). A key that a foreign
/// key refers to stays (the constraint needs it). Building a key once over
/// the loaded rows costs far less than inserting every row into it during
/// the load (measured on two cores: 1,000,000 accounts load in about 75 s
/// instead of about 95 s), and the generated rows are unique by
/// construction; building the key checks that they are.
///
/// Each drop is recorded in `ledger.dropped_indexes` in the same
/// transaction, and the list returned includes what an earlier load that
/// died part-way left there (see [`dropped_indexes`]).
pub async fn drop_rebuildable_indexes(
    url: &str,
) -> Result<Vec<DroppedIndex>, tokio_postgres::Error> {
    let tables: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
    let (mut client, driver) = connect(url).await?;
    let result = async {
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                "SELECT c.relname::text, t.relname::text, \
                        CASE WHEN k.oid IS NULL \
                             THEN regexp_replace(pg_get_indexdef(i.indexrelid), \
                                                 'INDEX ', 'INDEX IF NOT EXISTS ') \
                             ELSE format('ALTER TABLE ledger.%I ADD CONSTRAINT %I %s', \
                                         t.relname, k.conname, pg_get_constraintdef(k.oid)) END, \
                        CASE WHEN k.oid IS NULL \
                             THEN format('DROP INDEX ledger.%I', c.relname) \
                             ELSE format('ALTER TABLE ledger.%I DROP CONSTRAINT %I', \
                                         t.relname, k.conname) END \
                 FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indexrelid \
                 JOIN pg_class t ON t.oid = i.indrelid \
                 JOIN pg_namespace ns ON ns.oid = c.relnamespace \
                 LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.contype IN ('p', 'u') \
                 WHERE ns.nspname = 'ledger' AND t.relname = ANY($1) \
                   AND NOT EXISTS (SELECT 1 FROM pg_constraint f \
                                   WHERE f.contype = 'f' AND f.conindid = i.indexrelid)",
                &[&tables],
            )
            .await?;
        for row in rows {
            let (name, table, definition, drop): (String, String, String, String) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            tx.execute(
                "INSERT INTO ledger.dropped_indexes (index_name, table_name, definition) \
                 VALUES ($1, $2, $3)",
                &[&name, &table, &definition],
            )
            .await?;
            tx.batch_execute(&drop).await?;
        }
        let dropped = recorded(&tx).await?;
        tx.commit().await?;
        Ok(dropped)
    }
    .await;
    drop(client);
    let _ = driver.await;
    result
}

/// What a load that died between dropping and building again left dropped
/// (nothing after a load that finished): the next load builds it, whatever
/// its size.
pub async fn dropped_indexes(url: &str) -> Result<Vec<DroppedIndex>, tokio_postgres::Error> {
    let (client, driver) = connect(url).await?;
    let result = recorded(&client).await;
    drop(client);
    let _ = driver.await;
    result
}

/// The recorded drops, those of the largest tables first and keys before
/// the other indexes of their table.
async fn recorded(
    client: &impl tokio_postgres::GenericClient,
) -> Result<Vec<DroppedIndex>, tokio_postgres::Error> {
    Ok(client
        .query(
            "SELECT index_name, table_name, definition FROM ledger.dropped_indexes \
             ORDER BY pg_relation_size(format('ledger.%I', table_name)::regclass) DESC, \
                      definition NOT LIKE 'ALTER TABLE %', index_name",
            &[],
        )
        .await?
        .into_iter()
        .map(|row| DroppedIndex {
            name: row.get(0),
            table: row.get(1),
            definition: row.get(2),
        })
        .collect())
}

/// Creates `indexes` again, one after the other, on a connection of its
/// own, each in a transaction that also removes its record of the drop.
/// A build that starts while `copies_running` is set takes no parallel
/// workers: beside the copies every core is busy already, and a parallel
/// build spends more processor time in all than one process does (a
/// primary key over 8.5 million transactions: 14.6 s on three processes
/// sharing two cores, 21.3 s on one), which the copies would wait for.
/// Once the copies are done the builds left use the server's parallel
/// workers.
pub async fn create_indexes(
    url: &str,
    indexes: &[DroppedIndex],
    copies_running: &AtomicBool,
) -> Result<(), tokio_postgres::Error> {
    if indexes.is_empty() {
        return Ok(());
    }
    let (mut client, driver) = connect(url).await?;
    let result = async {
        // Shared by the build's parallel workers; the figures of
        // `drop_rebuildable_indexes` were measured with it.
        client
            .batch_execute("SET maintenance_work_mem = '512MB'")
            .await?;
        for index in indexes {
            let started = std::time::Instant::now();
            let tx = client.transaction().await?;
            let serial = copies_running.load(Ordering::Acquire);
            if serial {
                tx.batch_execute("SET LOCAL max_parallel_maintenance_workers = 0")
                    .await?;
            }
            tx.batch_execute(&index.definition).await?;
            tx.execute(
                "DELETE FROM ledger.dropped_indexes WHERE index_name = $1",
                &[&index.name],
            )
            .await?;
            tx.commit().await?;
            tracing::debug!(
                index = %index.name,
                serial,
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
