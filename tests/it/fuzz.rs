//! Fuzzing the whole API as a hostile caller would: every RPC of every
//! service (configurations, executions, catalogue, health) gets generated
//! malformed requests (strings with NUL, control characters, 1 MB values,
//! extreme numbers and dates, bad enums and masks, forged page tokens) and
//! mutated or random bytes on the wire. Every answer must be a code the
//! caller can act on (never INTERNAL, UNKNOWN or CANCELLED), every
//! INVALID_ARGUMENT must name a field, and every message with its details
//! must stay under 1 KB. Afterwards the server is healthy and processes an
//! execution.
//!
//! Bytes go on the wire two ways: as the message of a well-framed request
//! (through a tonic channel with a raw codec), and as the whole request body
//! with gRPC frame headers of any flag and length (an HTTP/2 request built by
//! hand on the same channel).
//!
//! The inputs come from a seeded RNG: the seed is printed, and
//! `ALLEGRO_FUZZ_SEED=<seed>` replays a run; `ALLEGRO_FUZZ_CASES` sets the
//! number of cases (10,000 by default).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::KeyedChannel;
use allegro_scheduler::proto::v1 as pb;
use base64::Engine as _;
use futures_util::StreamExt as _;
use prost::Message as _;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use rand::{Rng as _, RngCore as _, SeedableRng as _};

use crate::executions::setup_with;
use crate::support::*;

const CONFIGS: &str = "/aria.allegro.scheduling.v1.JobScheduleConfigService/";
const EXECUTIONS: &str = "/aria.allegro.scheduling.v1.ExecutionService/";
const CATALOGUE: &str = "/aria.allegro.scheduling.v1.JobCatalogueService/";
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
/// The 21 RPCs of the scheduling services and the health check.
const RPCS: usize = 22;
const DATE: &str = "2026-11-24";

/// What the fuzzer aims at: real identifiers and tokens, so that some
/// requests get past the first checks.
struct Targets {
    config_ids: Vec<String>,
    tokens: Vec<String>,
}

/// Generates the values of one case.
struct Gen<'a> {
    rng: StdRng,
    t: &'a Targets,
    /// Mostly valid values, so that the hostile one reaches deeper code.
    calm: bool,
}

impl Gen<'_> {
    fn chance(&mut self, numerator: u32, denominator: u32) -> bool {
        self.rng.random_ratio(numerator, denominator)
    }

    fn pick<T: Clone>(&mut self, values: &[T]) -> T {
        values
            .choose(&mut self.rng)
            .cloned()
            .expect("non-empty choices")
    }

    /// A hostile text, or one of `good` (valid values for the field).
    fn text(&mut self, good: &[&str]) -> String {
        let good = if good.is_empty() { &["value"] } else { good };
        if self.calm && self.chance(7, 8) {
            return self.pick(good).to_string();
        }
        match self.rng.random_range(0..12) {
            0 => String::new(),
            1..=4 => self.pick(good).to_string(),
            5 => {
                let mut s = self.pick(good).to_string();
                let at = self.rng.random_range(0..=s.len());
                let at = (0..=at).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
                s.insert(at, '\0');
                s
            }
            6 => self
                .pick(&[
                    "\u{1}\u{7}\u{1b}[31m",
                    "line\nbreak",
                    "tab\there",
                    "\r\n",
                    "\u{7f}",
                    "\u{85}next line",
                    "\u{200b}\u{feff}",
                    "\u{ffff}\u{10ffff}",
                    "e\u{301}\u{301}\u{301}",
                ])
                .to_string(),
            7 => {
                let c = self.pick(&['x', 'ü', '日', '🦀', '\0', '%']);
                std::iter::repeat_n(c, self.rng.random_range(100..20_000)).collect()
            }
            8 if self.chance(1, 8) => "M".repeat(1 << 20),
            9 => self
                .pick(&[
                    "+9999-12-3",
                    "-999-12-31",
                    "0000-00-00",
                    "9999-12-31",
                    "1900-01-01",
                    "1899-12-31",
                    "99999-01-01",
                    "2026-02-29",
                    "2028-02-29",
                    "-100000-01-01",
                    "2026-11-24T00:00:00Z",
                    "1e309",
                    "-9223372036854775808",
                    "18446744073709551616",
                    "NaN",
                ])
                .to_string(),
            10 => (0..self.rng.random_range(0..40))
                .map(|_| char::from_u32(self.rng.random_range(0..0x11_0000)).unwrap_or('?'))
                .collect(),
            _ => uuid::Uuid::new_v4().to_string(),
        }
    }

    fn client(&mut self) -> String {
        self.text(&[CLIENT, CLIENT, "other-client"])
    }

    fn config_id(&mut self) -> String {
        let ids: Vec<&str> = self.t.config_ids.iter().map(String::as_str).collect();
        self.text(&ids)
    }

    fn date(&mut self) -> String {
        self.text(&[DATE, DATE, "2026-11-25", "2026-11-23"])
    }

    fn page_token(&mut self) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        if self.calm && self.chance(3, 4) {
            return String::new();
        }
        match self.rng.random_range(0..6) {
            0 => String::new(),
            1 => {
                let t = self.t;
                self.pick(&t.tokens)
            }
            2 => {
                let t = self.t;
                let mut token = self.pick(&t.tokens).into_bytes();
                if !token.is_empty() {
                    let at = self.rng.random_range(0..token.len());
                    token[at] = self.pick(b"AZaz09-_.=+/");
                }
                String::from_utf8_lossy(&token).into_owned()
            }
            3 => b64.encode(self.pick(&[
                r#"{"q":"x","k":["a\u0000b","00000000-0000-0000-0000-000000000000"]}"#,
                r#"{"q":"x","k":"-100000-01-01"}"#,
                r#"{"q":"x","k":2147483648}"#,
                r#"{"q":"x","k":null}"#,
                "not json",
            ])),
            4 => format!("{}.{}", b64.encode("{}"), b64.encode([0u8; 32])),
            _ => self.text(&[]),
        }
    }

    fn int32(&mut self) -> i32 {
        if self.calm && self.chance(7, 8) {
            return self.rng.random_range(0..4);
        }
        match self.rng.random_range(0..4) {
            0 => self.pick(&[
                0,
                1,
                -1,
                2,
                50,
                51,
                366,
                367,
                1000,
                1001,
                i32::MAX,
                i32::MIN,
            ]),
            1 => 0,
            _ => self.rng.random(),
        }
    }

    fn uint32(&mut self) -> u32 {
        if self.calm && self.chance(7, 8) {
            return self.rng.random_range(1..=3);
        }
        match self.rng.random_range(0..4) {
            0 => self.pick(&[0, 1, 2, 3, 4, 50, 51, u32::MAX]),
            1 => self.rng.random_range(1..=3),
            _ => self.rng.random(),
        }
    }

    fn positions(&mut self) -> Vec<u32> {
        if self.calm && self.chance(7, 8) {
            return Vec::new();
        }
        match self.rng.random_range(0..10) {
            0 => (0..100_000).collect(),
            1..=4 => Vec::new(),
            _ => (0..self.rng.random_range(1..8))
                .map(|_| self.uint32())
                .collect(),
        }
    }

    fn timestamp(&mut self) -> Option<prost_types::Timestamp> {
        if self.chance(1, 4) {
            return None;
        }
        let random: i64 = self.rng.random();
        let seconds = self.pick(&[
            i64::MIN,
            i64::MAX,
            -62_135_596_800,
            -62_135_596_801,
            253_402_300_799,
            253_402_300_800,
            0,
            1_795_000_000,
            -2_208_988_800,
            random,
        ]);
        let nanos = self.pick(&[0, -1, 999_999_999, 1_000_000_000, i32::MAX, i32::MIN]);
        Some(prost_types::Timestamp { seconds, nanos })
    }

    fn mask(&mut self) -> Option<prost_types::FieldMask> {
        if self.chance(1, 3) {
            return None;
        }
        let n = if self.chance(1, 10) {
            1000
        } else {
            self.rng.random_range(0..4)
        };
        let paths = (0..n)
            .map(|_| {
                self.text(&[
                    "description",
                    "frequency",
                    "jobs",
                    "time_zone",
                    "recurrence_rule",
                    "scheduled_time",
                    "automatic_runs_paused",
                    "name",
                    "config_id",
                    "jobs.job_type",
                ])
            })
            .collect();
        Some(prost_types::FieldMask { paths })
    }

    fn config(&mut self) -> Option<pb::JobScheduleConfig> {
        if self.chance(1, 10) {
            return None;
        }
        let count = self.pick(&[0, 1, 2, 3, 51, 1000]);
        let jobs = (0..count)
            .map(|_| pb::JobSpec {
                // Many jobs get short names, so a message stays a few MB.
                job_type: if count > 51 {
                    self.pick(&["EMPTY", "X", ""]).to_string()
                } else {
                    self.text(&["EMPTY", "ITEMS_75", "FLAKY", "BILLING"])
                },
                manual: self.rng.random(),
            })
            .collect();
        let etag = self.text(&["1", "2"]);
        Some(pb::JobScheduleConfig {
            rule_start_date: String::new(),
            config_id: self.config_id(),
            client_id: self.text(&[CLIENT, ""]),
            name: self.text(&["fuzz", "eod", "weekly"]),
            description: self.text(&["a description", "two\nlines"]),
            frequency: self.pick(&[0, 1, 2, 3, -1, i32::MAX, i32::MIN]),
            scheduled_time: self.text(&["09:00:00", "23:59:59", "24:00:00", "9:00"]),
            exception_start_time: self.text(&["22:00:00", "02:30:00"]),
            exception_end_time: self.text(&["02:00:00", "02:30:00"]),
            time_zone: self.text(&["UTC", "Asia/Tokyo", "America/New_York", "Mars/Olympus"]),
            recurrence_rule: self.text(&[
                "FREQ=MONTHLY;BYMONTHDAY=-1",
                "FREQ=DAILY;INTERVAL=0",
                "FREQ=DAILY;COUNT=0",
                "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
                "FREQ=DAILY;INTERVAL=65535",
                "FREQ=YEARLY;UNTIL=99991231T000000Z",
                "FREQ=YEARLY;BYYEARDAY=-366",
                "FREQ=WEEKLY;BYDAY=+53MO",
                "FREQ=MONTHLY;BYSETPOS=-366;BYMONTHDAY=1",
                "FREQ=YEARLY;BYWEEKNO=53;BYDAY=MO",
                "FREQ=DAILY;COUNT=4294967295",
                "FREQ=HOURLY",
                "DTSTART:20200101T000000Z\nRRULE:FREQ=DAILY",
                "RRULE:FREQ=WEEKLY;BYDAY=FR",
            ]),
            jobs,
            automatic_runs_paused: self.rng.random(),
            etag,
            create_time: self.timestamp(),
            update_time: None,
        })
    }

    /// The path of RPC `rpc` and an encoded request for it, and whether it
    /// streams its answer.
    fn request(&mut self, rpc: usize) -> (String, Vec<u8>, bool) {
        let (path, bytes): (String, Vec<u8>) = match rpc {
            0 => (
                format!("{CONFIGS}CreateJobScheduleConfig"),
                pb::CreateJobScheduleConfigRequest {
                    client_id: self.client(),
                    config: self.config(),
                }
                .encode_to_vec(),
            ),
            1 => (
                format!("{CONFIGS}GetJobScheduleConfig"),
                pb::GetJobScheduleConfigRequest {
                    client_id: self.client(),
                    config_id: self.config_id(),
                }
                .encode_to_vec(),
            ),
            2 => (
                format!("{CONFIGS}ListJobScheduleConfigs"),
                pb::ListJobScheduleConfigsRequest {
                    client_id: self.client(),
                    page_size: self.int32(),
                    page_token: self.page_token(),
                }
                .encode_to_vec(),
            ),
            3 => (
                format!("{CONFIGS}UpdateJobScheduleConfig"),
                pb::UpdateJobScheduleConfigRequest {
                    client_id: self.client(),
                    config: self.config(),
                    update_mask: self.mask(),
                }
                .encode_to_vec(),
            ),
            4 => (
                format!("{CONFIGS}ListUpcomingRuns"),
                pb::ListUpcomingRunsRequest {
                    client_id: self.client(),
                    config_id: self.config_id(),
                    count: self.int32(),
                    after: self.timestamp(),
                }
                .encode_to_vec(),
            ),
            5 => (
                format!("{CONFIGS}DeleteJobScheduleConfig"),
                pb::DeleteJobScheduleConfigRequest {
                    client_id: self.client(),
                    // Never the configuration with the execution data.
                    config_id: self.text(&[]),
                    etag: self.text(&["1", "999"]),
                }
                .encode_to_vec(),
            ),
            6 => (
                format!("{EXECUTIONS}CreateExecution"),
                pb::CreateExecutionRequest {
                    client_id: self.client(),
                    config_id: self.config_id(),
                    business_date: self.date(),
                    manual_job_positions: self.positions(),
                    reason: self.text(&["fuzz"]),
                }
                .encode_to_vec(),
            ),
            7 => (
                format!("{EXECUTIONS}RecreateExecution"),
                pb::RecreateExecutionRequest {
                    client_id: self.client(),
                    config_id: self.config_id(),
                    business_date: self.date(),
                    manual_job_positions: self.positions(),
                    reason: self.text(&["fuzz"]),
                }
                .encode_to_vec(),
            ),
            8 => (
                format!("{EXECUTIONS}ProcessExecution"),
                pb::ProcessExecutionRequest {
                    override_exception_window: false,
                    client_id: self.client(),
                    config_id: self.config_id(),
                    business_date: self.date(),
                    manual_job_positions: self.positions(),
                    reason: self.text(&["fuzz"]),
                }
                .encode_to_vec(),
            ),
            9 => (
                format!("{EXECUTIONS}ReprocessExecution"),
                pb::ReprocessExecutionRequest {
                    override_exception_window: false,
                    client_id: self.client(),
                    config_id: self.config_id(),
                    business_date: self.date(),
                    reason: self.text(&["fuzz"]),
                }
                .encode_to_vec(),
            ),
            10 => (
                format!("{EXECUTIONS}ResetExecution"),
                pb::ResetExecutionRequest {
                    client_id: self.client(),
                    config_id: self.config_id(),
                    business_date: self.date(),
                    cancel_in_flight: self.rng.random(),
                    reason: self.text(&["fuzz"]),
                }
                .encode_to_vec(),
            ),
            11 => (
                format!("{EXECUTIONS}TriggerJob"),
                pb::TriggerJobRequest {
                    override_exception_window: false,
                    client_id: self.client(),
                    config_id: self.config_id(),
                    business_date: self.date(),
                    position: self.uint32(),
                    reason: self.text(&["fuzz"]),
                }
                .encode_to_vec(),
            ),
            12 => (
                format!("{EXECUTIONS}RetryJob"),
                pb::RetryJobRequest {
                    override_exception_window: false,
                    client_id: self.client(),
                    config_id: self.config_id(),
                    business_date: self.date(),
                    position: self.uint32(),
                    reason: self.text(&["fuzz"]),
                }
                .encode_to_vec(),
            ),
            13 => (
                format!("{EXECUTIONS}GetExecution"),
                pb::GetExecutionRequest {
                    client_id: self.client(),
                    config_id: self.config_id(),
                    business_date: self.date(),
                }
                .encode_to_vec(),
            ),
            14 => (
                format!("{EXECUTIONS}ListExecutions"),
                pb::ListExecutionsRequest {
                    client_id: self.client(),
                    config_id: self.config_id(),
                    start_date: self.date(),
                    end_date: self.date(),
                    page_size: self.int32(),
                    page_token: self.page_token(),
                }
                .encode_to_vec(),
            ),
            15 => (
                format!("{EXECUTIONS}GetJobStats"),
                pb::GetJobStatsRequest {
                    client_id: self.client(),
                    config_id: self.config_id(),
                    business_date: self.date(),
                    position: self.uint32(),
                }
                .encode_to_vec(),
            ),
            16 => (
                format!("{EXECUTIONS}ListJobErrorCodes"),
                pb::ListJobErrorCodesRequest {
                    client_id: self.client(),
                    config_id: self.config_id(),
                    business_date: self.date(),
                    position: self.uint32(),
                }
                .encode_to_vec(),
            ),
            17 => (
                format!("{EXECUTIONS}ListErroredWorkItems"),
                pb::ListErroredWorkItemsRequest {
                    client_id: self.client(),
                    config_id: self.config_id(),
                    business_date: self.date(),
                    position: self.uint32(),
                    error_code: self.text(&["TIER_GAP", "ACCOUNT_INACTIVE"]),
                    page_size: self.int32(),
                    page_token: self.page_token(),
                    include_resolved: false,
                }
                .encode_to_vec(),
            ),
            18 => (
                format!("{EXECUTIONS}ListExecutionActions"),
                pb::ListExecutionActionsRequest {
                    client_id: self.client(),
                    config_id: self.config_id(),
                    business_date: self.date(),
                }
                .encode_to_vec(),
            ),
            19 => (
                format!("{EXECUTIONS}WatchExecutions"),
                pb::WatchExecutionsRequest {
                    client_id: self.client(),
                    config_id: self.config_id(),
                    business_date: self.date(),
                    after_sequence: self.pick(&[0, 1, u64::MAX, i64::MAX as u64 + 1]),
                }
                .encode_to_vec(),
            ),
            20 => (
                format!("{CATALOGUE}ListJobTypes"),
                pb::ListJobTypesRequest {}.encode_to_vec(),
            ),
            _ => (
                HEALTH_CHECK.to_string(),
                tonic_health::pb::HealthCheckRequest {
                    service: self.text(&["", "aria.allegro.scheduling.v1.ExecutionService"]),
                }
                .encode_to_vec(),
            ),
        };
        (path, bytes, rpc == 19)
    }

    /// `bytes` damaged: cut short, bytes flipped, garbage appended, or
    /// replaced by random bytes.
    fn mutate(&mut self, mut bytes: Vec<u8>) -> Vec<u8> {
        match self.rng.random_range(0..4) {
            0 if !bytes.is_empty() => {
                bytes.truncate(self.rng.random_range(0..bytes.len()));
            }
            1 if !bytes.is_empty() => {
                for _ in 0..self.rng.random_range(1..4) {
                    let at = self.rng.random_range(0..bytes.len());
                    bytes[at] = self.rng.random();
                }
            }
            2 => {
                let mut tail = vec![0u8; self.rng.random_range(1..16)];
                self.rng.fill_bytes(&mut tail);
                bytes.extend(tail);
            }
            _ => {
                bytes = vec![0u8; self.rng.random_range(0..64)];
                self.rng.fill_bytes(&mut bytes);
            }
        }
        bytes
    }
}

/// Sends one request, with `actor` as its `x-actor` metadata when given;
/// the error status if the call failed.
async fn call(
    channel: &KeyedChannel,
    path: &str,
    bytes: Vec<u8>,
    streaming: bool,
    actor: Option<String>,
) -> Option<tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    if let Err(e) = grpc.ready().await {
        return Some(tonic::Status::unavailable(e.to_string()));
    }
    let path = http::uri::PathAndQuery::try_from(path.to_string()).ok()?;
    let mut request = tonic::Request::new(bytes);
    if let Some(value) = actor.and_then(|a| a.parse().ok()) {
        request.metadata_mut().insert("x-actor", value);
    }
    if !streaming {
        return grpc.unary(request, path, RawCodec).await.err();
    }
    match grpc.server_streaming(request, path, RawCodec).await {
        Err(status) => Some(status),
        Ok(response) => {
            let mut stream = response.into_inner();
            match tokio::time::timeout(Duration::from_millis(500), stream.message()).await {
                Ok(Err(status)) => Some(status),
                _ => None,
            }
        }
    }
}

/// Sends `body` as the whole HTTP/2 request body of `path`, with
/// `grpc-encoding` when given; the error status if the call failed.
async fn call_framed(
    channel: &KeyedChannel,
    path: &str,
    body: Vec<u8>,
    encoding: Option<&'static str>,
) -> Option<tonic::Status> {
    use http_body_util::BodyExt as _;
    use tower::{Service as _, ServiceExt as _};
    let mut request = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(encoding) = encoding {
        request = request.header("grpc-encoding", encoding);
    }
    let request = request
        .body(tonic::body::Body::new(http_body_util::Full::new(
            bytes::Bytes::from(body),
        )))
        .ok()?;
    let mut channel = channel.clone();
    let response = match channel.ready().await {
        Ok(ready) => ready.call(request).await,
        Err(e) => return Some(tonic::Status::unavailable(e.to_string())),
    };
    let response = match response {
        Ok(response) => response,
        Err(e) => return Some(tonic::Status::unavailable(e.to_string())),
    };
    if let Some(status) = tonic::Status::from_header_map(response.headers()) {
        return (status.code() != tonic::Code::Ok).then_some(status);
    }
    // A streaming answer may never end: what came within a moment counts.
    let collected =
        tokio::time::timeout(Duration::from_millis(500), response.into_body().collect()).await;
    match collected {
        Ok(Ok(body)) => body
            .trailers()
            .and_then(tonic::Status::from_header_map)
            .filter(|s| s.code() != tonic::Code::Ok),
        Ok(Err(status)) => Some(status),
        Err(_) => None,
    }
}

/// `message` in gRPC frames as a hostile client might send them: a
/// compressed-flag of any value, a length that is right, too short, too
/// long or huge, several frames, or no frame at all.
fn frames(g: &mut Gen<'_>, message: Vec<u8>) -> Vec<u8> {
    let frame = |flag: u8, len: u32, bytes: &[u8]| {
        let mut out = vec![flag];
        out.extend(len.to_be_bytes());
        out.extend_from_slice(bytes);
        out
    };
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    match g.rng.random_range(0..8) {
        0 => Vec::new(),
        1 => frame(g.pick(&[1, 2, 0x80, 0xff]), len, &message),
        2 => frame(0, len.saturating_add(g.rng.random_range(1..100)), &message),
        3 => frame(0, len / 2, &message),
        4 => frame(0, g.pick(&[u32::MAX, 5 << 20, 4 << 20]), &message),
        5 => [frame(0, len, &message), frame(0, len, &message)].concat(),
        6 => {
            let mut bytes = vec![0u8; g.rng.random_range(0..12)];
            g.rng.fill_bytes(&mut bytes);
            bytes
        }
        _ => frame(0, len, &message)[..g.rng.random_range(0..5)].to_vec(),
    }
}

/// One case: which RPC, what was sent (briefly), and what is wrong with
/// the answer, if anything.
struct Outcome {
    code: tonic::Code,
    problem: Option<String>,
}

async fn run_case(channel: &KeyedChannel, targets: &Targets, seed: u64, index: u64) -> Outcome {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        t: targets,
        calm: index % 2 == 0,
    };
    let rpc = g.rng.random_range(0..RPCS);
    let (path, mut bytes, streaming) = g.request(rpc);
    let mutated = g.chance(1, 3);
    if mutated {
        bytes = g.mutate(bytes);
    }
    let framed = g.chance(1, 8);
    if framed {
        bytes = frames(&mut g, bytes);
    }
    let size = bytes.len();
    let head: Vec<u8> = bytes.iter().take(24).copied().collect();
    let status = if framed {
        let encoding = g.pick(&[None, None, Some("identity"), Some("gzip"), Some("bogus")]);
        call_framed(channel, &path, bytes, encoding).await
    } else {
        let actor = match g.rng.random_range(0..4) {
            0 => None,
            1 => Some("ops@aria".to_string()),
            // Visible ASCII of any length HTTP/2 takes in a header.
            _ => {
                let len = g.pick(&[0, 1, 200, 201, 5_000]);
                Some(
                    (0..len)
                        .map(|_| char::from(g.rng.random_range(0x20u8..0x7f)))
                        .collect(),
                )
            }
        };
        call(channel, &path, bytes, streaming, actor).await
    };
    let Some(status) = status else {
        return Outcome {
            code: tonic::Code::Ok,
            problem: None,
        };
    };
    Outcome {
        code: status.code(),
        problem: status_problem(&status).map(|problem| {
            format!(
                "case {index}: {path} ({size} bytes{}{}, starting {head:02x?}): {problem}: {:?} {}",
                if mutated { ", mutated" } else { "" },
                if framed { ", framed by hand" } else { "" },
                status.code(),
                status.message().chars().take(200).collect::<String>()
            )
        }),
    }
}

/// The targets: configurations, an execution with errored work items, and
/// page tokens the server issued.
async fn targets(fixture: &crate::executions::Fixture) -> Targets {
    let server = &fixture.server;
    let mut config_ids = vec![fixture.config_id.clone()];
    for name in ["weekly", "monthly", "manual only"] {
        let mut config = scheduled(name, &["EMPTY", "ITEMS_75"]);
        config.recurrence_rule = "FREQ=WEEKLY;BYDAY=FR".into();
        config.time_zone = "Asia/Tokyo".into();
        let created = server
            .configs()
            .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
                client_id: CLIENT.into(),
                config: Some(config),
            })
            .await
            .unwrap()
            .into_inner();
        config_ids.push(created.config_id);
    }
    fixture.process(DATE, vec![]).await;
    fixture
        .wait_for(DATE, |e| {
            e.phase == pb::ExecutionPhase::StoppedOnError as i32
                || e.status == pb::Status::Completed as i32
        })
        .await;
    let mut tokens = Vec::new();
    let configs = server
        .configs()
        .list_job_schedule_configs(pb::ListJobScheduleConfigsRequest {
            client_id: CLIENT.into(),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    tokens.push(configs.next_page_token);
    let items = server
        .executions()
        .list_errored_work_items(pb::ListErroredWorkItemsRequest {
            client_id: CLIENT.into(),
            config_id: fixture.config_id.clone(),
            business_date: DATE.into(),
            position: 2,
            error_code: "ACCOUNT_INACTIVE".into(),
            page_size: 1,
            page_token: String::new(),
            include_resolved: false,
        })
        .await
        .unwrap()
        .into_inner();
    tokens.push(items.next_page_token);
    tokens.retain(|t| !t.is_empty());
    assert!(!tokens.is_empty(), "the fixture issues page tokens");
    Targets { config_ids, tokens }
}

/// Panics raised outside the test code (in the service or a library it
/// calls) since [`watch_panics`] was called, as `file:line: message`.
static PANICS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Records every panic outside `tests/` in [`PANICS`], then reports it as
/// before. A handler's panic would show as INTERNAL anyway; this also sees
/// panics in tasks the service spawns.
fn watch_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if !location.starts_with("tests/") {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if let Ok(mut panics) = PANICS.lock() {
                panics.push(format!("{location}: {message}"));
            }
        }
        previous(info);
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_answers_malformed_requests_with_a_client_error() {
    let seed: u64 = std::env::var("ALLEGRO_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let cases: u64 = std::env::var("ALLEGRO_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    println!("fuzz seed {seed} ({cases} cases; replay with ALLEGRO_FUZZ_SEED={seed})");

    watch_panics();
    let fixture = setup_with(
        &[("EMPTY", false), ("FLAKY", false), ("ITEMS_75", true)],
        50,
    )
    .await;
    let targets = targets(&fixture).await;
    let channel = fixture.server.channel.clone();

    let started = Instant::now();
    let outcomes: Vec<Outcome> = futures_util::stream::iter(0..cases)
        .map(|i| run_case(&channel, &targets, seed, i))
        .buffer_unordered(16)
        .collect()
        .await;
    let elapsed = started.elapsed();

    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for o in &outcomes {
        *codes.entry(format!("{:?}", o.code)).or_default() += 1;
    }
    println!(
        "fuzz: {} cases in {:.1} s ({:.0}/s); codes {codes:?}",
        outcomes.len(),
        elapsed.as_secs_f64(),
        outcomes.len() as f64 / elapsed.as_secs_f64()
    );
    let problems: Vec<&String> = outcomes.iter().filter_map(|o| o.problem.as_ref()).collect();
    assert!(
        problems.is_empty(),
        "seed {seed}: {} of {} answers break the rules; first ones:\n{}",
        problems.len(),
        outcomes.len(),
        problems
            .iter()
            .take(15)
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );

    let panics = PANICS.lock().map(|p| p.clone()).unwrap_or_default();
    assert!(panics.is_empty(), "seed {seed}: panics: {panics:#?}");

    // Afterwards: healthy, and a new execution runs to completion.
    let mut health =
        tonic_health::pb::health_client::HealthClient::new(fixture.server.channel.clone());
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check after fuzzing")
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let after = fixture
        .server
        .configs()
        .create_job_schedule_config(pb::CreateJobScheduleConfigRequest {
            client_id: "after-fuzz".into(),
            config: Some(daily("eod", &["EMPTY", "ITEMS_75"])),
        })
        .await
        .expect("create after fuzzing")
        .into_inner();
    fixture
        .server
        .executions()
        .process_execution(pb::ProcessExecutionRequest {
            client_id: "after-fuzz".into(),
            config_id: after.config_id.clone(),
            business_date: DATE.into(),
            ..Default::default()
        })
        .await
        .expect("process after fuzzing");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let execution = fixture
            .server
            .executions()
            .get_execution(pb::GetExecutionRequest {
                client_id: "after-fuzz".into(),
                config_id: after.config_id.clone(),
                business_date: DATE.into(),
            })
            .await
            .expect("get after fuzzing")
            .into_inner();
        if execution.status == pb::Status::Completed as i32 {
            assert_eq!(execution.jobs[1].counts.as_ref().unwrap().processed, 75);
            break;
        }
        assert!(Instant::now() < deadline, "never completed: {execution:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fixture.server.stop().await;
}
