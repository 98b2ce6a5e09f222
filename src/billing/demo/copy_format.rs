//! PostgreSQL's binary COPY format, as much of it as the demo ledger's
//! rows need: text, integers, dates and times (UTC), and NULL.

use chrono::{Datelike, NaiveDate};

/// Rows in PostgreSQL's binary COPY format.
#[derive(Debug, Default)]
pub struct CopyBuffer {
    bytes: Vec<u8>,
    rows: u64,
}

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

impl CopyBuffer {
    /// The stream's header, to send before the first rows.
    pub fn header() -> Vec<u8> {
        let mut h = b"PGCOPY\n\xff\r\n\0".to_vec();
        h.extend_from_slice(&0i32.to_be_bytes());
        h.extend_from_slice(&0i32.to_be_bytes());
        h
    }

    /// The stream's trailer, to send after the last rows.
    pub fn trailer() -> Vec<u8> {
        (-1i16).to_be_bytes().to_vec()
    }

    /// The encoded rows so far, and how many, leaving the buffer empty.
    pub fn take(&mut self) -> (Vec<u8>, u64) {
        (
            std::mem::take(&mut self.bytes),
            std::mem::take(&mut self.rows),
        )
    }

    /// Bytes buffered.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub(super) fn row(&mut self, fields: i16) -> &mut Self {
        self.rows += 1;
        self.bytes.extend_from_slice(&fields.to_be_bytes());
        self
    }

    fn field(&mut self, value: &[u8]) -> &mut Self {
        self.bytes
            .extend_from_slice(&(value.len() as i32).to_be_bytes());
        self.bytes.extend_from_slice(value);
        self
    }

    pub(super) fn null(&mut self) -> &mut Self {
        self.bytes.extend_from_slice(&(-1i32).to_be_bytes());
        self
    }

    pub(super) fn text(&mut self, value: &str) -> &mut Self {
        self.field(value.as_bytes())
    }

    pub(super) fn i16(&mut self, value: i16) -> &mut Self {
        self.field(&value.to_be_bytes())
    }

    pub(super) fn i32(&mut self, value: i32) -> &mut Self {
        self.field(&value.to_be_bytes())
    }

    pub(super) fn i64(&mut self, value: i64) -> &mut Self {
        self.field(&value.to_be_bytes())
    }

    pub(super) fn opt_i64(&mut self, value: Option<i64>) -> &mut Self {
        match value {
            Some(v) => self.i64(v),
            None => self.null(),
        }
    }

    pub(super) fn date(&mut self, value: NaiveDate) -> &mut Self {
        self.i32(value.num_days_from_ce() - CE_TO_UNIX - PG_EPOCH_DAYS)
    }

    /// Midnight UTC of `value`.
    pub(super) fn midnight(&mut self, value: NaiveDate) -> &mut Self {
        let days = i64::from(value.num_days_from_ce() - CE_TO_UNIX - PG_EPOCH_DAYS);
        self.i64(days * 86_400_000_000)
    }
}

/// Days from 0001-01-01 (day 1 of the common era) to 1970-01-01.
const CE_TO_UNIX: i32 = 719_163;
