//! [`JobPosition`]: where a job stands in an execution's ordered job list.
//!
//! One type from the request to the row: the API parses a caller's number
//! into it (1 to [`MAX_JOBS`]), the domain finds jobs by it, and the store
//! turns it into the `INT` column and back. Before it, a position was `u32`
//! in the domain and `i32` in SQL, cast wherever the two met.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::scheduling::domain::error::Error;
use crate::scheduling::domain::limits::MAX_JOBS;

/// A job's place in its execution, from 1 (the first job) to [`MAX_JOBS`].
///
/// Serialised as its plain number, so stored events keep their shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct JobPosition(u32);

impl JobPosition {
    /// The first job of every execution.
    pub const FIRST: JobPosition = JobPosition(1);

    /// Parses a caller's position named `field`: 1 to [`MAX_JOBS`].
    pub fn parse(field: &str, value: u32) -> Result<Self, Error> {
        if value == 0 {
            return Err(Error::invalid(field, "required: a job position from 1"));
        }
        if value as usize > MAX_JOBS {
            return Err(Error::invalid(
                field,
                format!("must be 1 to {MAX_JOBS}; got {value}"),
            ));
        }
        Ok(Self(value))
    }

    /// The position of the job at `index` (from 0) of an ordered job list.
    /// `None` past [`MAX_JOBS`], which no configuration can hold.
    pub fn from_index(index: usize) -> Option<Self> {
        let value = u32::try_from(index).ok()?.checked_add(1)?;
        Self::parse("position", value).ok()
    }

    /// The number, as callers and the API see it.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The index (from 0) of this job in an ordered job list.
    pub fn index(self) -> usize {
        self.0 as usize - 1
    }

    /// The job after this one, if a configuration could hold it.
    pub fn next(self) -> Option<Self> {
        Self::from_index(self.0 as usize)
    }
}

impl TryFrom<u32> for JobPosition {
    type Error = Error;

    fn try_from(value: u32) -> Result<Self, Error> {
        Self::parse("position", value)
    }
}

impl TryFrom<i32> for JobPosition {
    type Error = Error;

    /// A stored position: the store reads its `INT` columns through this.
    fn try_from(value: i32) -> Result<Self, Error> {
        let value = u32::try_from(value).map_err(|_| {
            Error::invalid("position", format!("must be 1 to {MAX_JOBS}; got {value}"))
        })?;
        Self::parse("position", value)
    }
}

impl From<JobPosition> for u32 {
    fn from(p: JobPosition) -> u32 {
        p.0
    }
}

impl From<JobPosition> for i32 {
    /// The stored form; every position fits ([`MAX_JOBS`] is far below
    /// `i32::MAX`).
    fn from(p: JobPosition) -> i32 {
        // MAX_JOBS (50) fits in an i32, so this never saturates.
        i32::try_from(p.0).unwrap_or(i32::MAX)
    }
}

impl fmt::Display for JobPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Serde for an optional position written as its number, 0 for none: the
/// action history's "the job acted on, or 0" in stored events.
pub mod or_zero {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::JobPosition;

    /// Writes the number, or 0 for none.
    pub fn serialize<S: Serializer>(p: &Option<JobPosition>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(p.map_or(0, JobPosition::get))
    }

    /// Reads the number; 0 is none.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<JobPosition>, D::Error> {
        match u32::deserialize(d)? {
            0 => Ok(None),
            n => JobPosition::try_from(n)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_to_max_jobs_only() {
        assert_eq!(JobPosition::parse("p", 1).unwrap().get(), 1);
        assert_eq!(
            JobPosition::parse("p", MAX_JOBS as u32).unwrap().get(),
            MAX_JOBS as u32
        );
        assert!(JobPosition::parse("p", 0).is_err());
        assert!(JobPosition::parse("p", MAX_JOBS as u32 + 1).is_err());
        assert!(JobPosition::parse("p", u32::MAX).is_err());
        assert!(JobPosition::try_from(-1i32).is_err());
        assert!(JobPosition::try_from(0i32).is_err());
    }

    #[test]
    fn index_and_stored_forms_round_trip() {
        for index in 0..MAX_JOBS {
            let p = JobPosition::from_index(index).unwrap();
            assert_eq!(p.index(), index);
            assert_eq!(JobPosition::try_from(i32::from(p)).unwrap(), p);
        }
        assert_eq!(JobPosition::from_index(MAX_JOBS), None);
        assert_eq!(JobPosition::FIRST.next().unwrap().get(), 2);
    }

    #[test]
    fn serialises_as_its_number() {
        let p = JobPosition::parse("p", 7).unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "7");
        assert_eq!(serde_json::from_str::<JobPosition>("7").unwrap(), p);
        assert!(serde_json::from_str::<JobPosition>("0").is_err());
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Acted {
        #[serde(with = "or_zero")]
        job_position: Option<JobPosition>,
    }

    #[test]
    fn no_position_is_written_as_zero() {
        let none = Acted { job_position: None };
        assert_eq!(
            serde_json::to_string(&none).unwrap(),
            r#"{"job_position":0}"#
        );
        assert_eq!(
            serde_json::from_str::<Acted>(r#"{"job_position":0}"#).unwrap(),
            none
        );
        let third = Acted {
            job_position: Some(JobPosition::parse("p", 3).unwrap()),
        };
        assert_eq!(
            serde_json::from_str::<Acted>(r#"{"job_position":3}"#).unwrap(),
            third
        );
    }
}
