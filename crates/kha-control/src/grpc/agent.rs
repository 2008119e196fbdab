//! `kha.agent.v1.AgentService`: what builders call. The call sequences are
//! specified in `proto/kha/agent/v1/agent.proto`.

use crate::api;
use crate::app::App;
use crate::auth::bearer;
use crate::cache;
use crate::scheduler::{SchedError, Session};
use crate::store::records::Builder;
use kha_core::event::{Event, EventKind};
use kha_core::{limits, Labels, PROTOCOL_MAJOR};
use kha_proto::agent::agent_service_server::AgentService;
use kha_proto::agent::{
    builder_message, cache_chunk, control_message, BuilderMessage, CacheArchive, CacheChunk,
    CacheRequest, CacheStoreResult, ControlMessage, FinishJobRequest, FinishJobResponse,
    FinishRefusal, FinishRefusalKind, LogAck, LogChunk, PushCacheResponse, RegisterRequest,
    RegisterResponse, RejectReason, Welcome,
};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

impl From<SchedError> for Status {
    fn from(e: SchedError) -> Status {
        let m = e.to_string();
        match &e {
            SchedError::Lease(_) => refusal(
                Code::FailedPrecondition,
                m,
                FinishRefusalKind::StaleLease,
                0,
            ),
            SchedError::LogShort { stored, .. } => refusal(
                Code::OutOfRange,
                m,
                FinishRefusalKind::LogIncomplete,
                *stored,
            ),
            SchedError::LogHash { .. } => {
                refusal(Code::DataLoss, m, FinishRefusalKind::LogMismatch, 0)
            }
            SchedError::Invalid(_) => Status::invalid_argument(m),
            SchedError::Store(crate::store::StoreError::Rejected(_)) => {
                Status::failed_precondition(m)
            }
            _ => Status::internal(m),
        }
    }
}

/// Ends a log stream with an error; a builder already gone needs no answer.
async fn refuse(tx: &mpsc::Sender<Result<LogAck, Status>>, s: Status) {
    if tx.send(Err(s)).await.is_err() {
        debug!("log stream closed before its refusal");
    }
}

/// A FinishJob refusal, its kind in the status's details (see agent.proto).
fn refusal(code: Code, msg: String, kind: FinishRefusalKind, committed_len: u64) -> Status {
    let mut r = FinishRefusal {
        kind: 0,
        committed_len,
    };
    r.set_kind(kind);
    Status::with_details(
        code,
        msg,
        prost::bytes::Bytes::from(prost::Message::encode_to_vec(&r)),
    )
}

pub struct AgentSvc {
    pub app: Arc<App>,
}

/// The largest batch of log bytes made durable with one sync.
const LOG_BATCH_BYTES: usize = 4 * 1024 * 1024;

impl AgentSvc {
    /// The calling builder, from `authorization: Bearer <id>:<secret>`.
    fn authenticate<T>(&self, req: &Request<T>) -> Result<Builder, Status> {
        Ok(api::builders::authenticate(
            &self.app,
            bearer(req.metadata()),
        )?)
    }
}

/// The next message if one is ready now, without waiting.
async fn ready_now<S: Stream + Unpin>(s: &mut S) -> Option<Option<S::Item>> {
    std::future::poll_fn(|cx| match Pin::new(&mut *s).poll_next(cx) {
        Poll::Ready(x) => Poll::Ready(Some(x)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for AgentSvc {
    async fn register(
        &self,
        req: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let addr = req.remote_addr().map(|a| a.ip());
        let req = req.into_inner();
        let (builder_id, secret) =
            api::builders::enrol(&self.app, &req.enrolment_token, &req.name, addr).await?;
        Ok(Response::new(RegisterResponse {
            builder_id,
            secret: secret.into_inner(),
        }))
    }

    type SessionStream = Out<ControlMessage>;

    async fn session(
        &self,
        req: Request<Streaming<BuilderMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut rec = self.authenticate(&req)?;
        let mut inbound = req.into_inner();
        let hello = match tokio::time::timeout(Duration::from_secs(10), inbound.message()).await {
            Ok(Ok(Some(BuilderMessage {
                msg: Some(builder_message::Msg::Hello(h)),
            }))) => h,
            Ok(Err(e)) => return Err(e),
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of a session must be Hello",
                ))
            }
        };
        if hello.protocol_major != PROTOCOL_MAJOR {
            return Err(Status::failed_precondition(format!(
                "this control node speaks protocol {PROTOCOL_MAJOR}.x, the builder {}.{}: install a kha-builder of major version {PROTOCOL_MAJOR}",
                hello.protocol_major, hello.protocol_minor
            )));
        }
        if hello.builder_id != rec.id {
            return Err(Status::permission_denied(
                "Hello.builder_id is not the authenticated builder",
            ));
        }
        let labels = Labels::parse(hello.labels.iter().map(String::as_str))
            .map_err(Status::invalid_argument)?;
        let sched = self.app.sched.clone();
        let now = sched.clock.now();
        rec.labels = labels.to_vec();
        rec.slots = hello.slots;
        rec.version = hello.version.clone();
        rec.last_seen_ms = now;
        if !hello.name.is_empty() {
            rec.name = hello.name.clone();
        }
        sched
            .store
            .put_builder_with_event(&rec, EventKind::BuilderConnected, now)
            .map_err(|e| Status::internal(e.to_string()))?;

        let (tx, rx) = mpsc::channel(256);
        let close = CancellationToken::new();
        let running: Vec<_> = hello.running.iter().map(|r| (r.job_id, r.epoch)).collect();
        let (conn, verdicts) = sched.session_opened(
            &rec.id,
            Session {
                conn: 0,
                tx: tx.clone(),
                close: close.clone(),
                name: rec.name.clone(),
                labels,
                slots: hello.slots,
                free: 0,
                draining: rec.draining,
                version: hello.version.clone(),
                trusted: rec.trusted,
            },
            &running,
        );
        let welcome = Welcome {
            heartbeat_ms: sched.cfg.heartbeat_ms,
            lease_ms: sched.cfg.lease_ms(),
            max_chunk_bytes: limits::MAX_CHUNK_BYTES as u64,
            log_cap_bytes: sched.cfg.log_cap_bytes,
            verdicts,
            draining: rec.draining,
        };
        if tx
            .send(Box::new(ControlMessage {
                msg: Some(control_message::Msg::Welcome(welcome)),
            }))
            .await
            .is_err()
        {
            debug!(builder_id = %rec.id, "builder left before its Welcome");
        }
        info!(builder_id = %rec.id, name = %rec.name, slots = hello.slots, resumed = running.len(), "builder connected");

        let shutdown = self.app.shutdown.clone();
        let builder = rec.id.clone();
        let app = self.app.clone();
        self.app.spawn("session", async move {
            // Whether the builder's connection broke under it (no
            // GoingAway, and not closed by us): most likely the builder
            // process is gone.
            let mut dropped = false;
            loop {
                let msg = tokio::select! {
                    _ = close.cancelled() => break,
                    _ = shutdown.cancelled() => break,
                    m = inbound.message() => m,
                };
                let msg = match msg {
                    Ok(Some(BuilderMessage { msg: Some(m) })) => m,
                    Ok(Some(_)) => continue,
                    // The first error ends the session: a vanished peer keeps
                    // yielding errors forever.
                    Ok(None) | Err(_) => {
                        dropped = !shutdown.is_cancelled() && !close.is_cancelled();
                        break;
                    }
                };
                use builder_message::Msg as M;
                if !matches!(msg, M::Heartbeat(_)) {
                    sched.touch(&builder);
                }
                match msg {
                    M::Hello(_) => {
                        warn!(builder_id = %builder, "second Hello on one session; closing it");
                        break;
                    }
                    M::Ready(r) => sched.set_credit(&builder, r.free_slots),
                    M::Accept(a) => {
                        let (s, b) = (sched.clone(), builder.clone());
                        app.spawn(
                            "accept",
                            async move { s.accept(&b, a.job_id, a.epoch).await },
                        );
                    }
                    M::Reject(r) => {
                        // 1.0 builders send no kind: they rejected only when busy.
                        let busy = matches!(r.kind(), RejectReason::Busy | RejectReason::Unspecified);
                        sched.reject(&builder, r.job_id, r.epoch, busy, &r.reason)
                    }
                    M::Heartbeat(h) => {
                        let running: Vec<_> =
                            h.running.iter().map(|r| (r.job_id, r.epoch)).collect();
                        // Answers on the session itself (see Scheduler::heartbeat).
                        sched.heartbeat(&builder, &running);
                        sched.set_credit(&builder, h.free_slots);
                    }
                    M::CancelAck(c) => {
                        debug!(builder_id = %builder, job_id = c.job_id, "cancel acknowledged")
                    }
                    M::Drain(_) => {
                        info!(builder_id = %builder, "builder is draining");
                        sched.set_draining(&builder, false);
                    }
                    M::GoingAway(_) => {
                        info!(builder_id = %builder, "builder going away");
                        break;
                    }
                }
            }
            let lost = dropped && sched.session_dropped(&builder, conn);
            sched.session_closed(&builder, conn);
            if lost {
                // Run its jobs again elsewhere now, not at the next sweep.
                sched.sweep().await;
            }
            let now = sched.clock.now();
            if let Err(e) = sched.store.touch_builder(&builder, now) {
                warn!(builder_id = %builder, error = %e, "cannot record when the builder was last seen");
            }
            // Unless a newer session of the same builder took over.
            if !sched.is_connected(&builder) {
                let mut e = Event::new(EventKind::BuilderDisconnected);
                e.builder = builder.clone();
                if let Err(e) = sched.store.record_event(e, now) {
                    warn!(builder_id = %builder, error = %e, "cannot record the builder's departure");
                }
            }
            info!(builder_id = %builder, "builder session ended");
        });
        Ok(Response::new(Box::pin(
            ReceiverStream::new(rx).map(|m: Box<ControlMessage>| Ok(*m)),
        )))
    }

    type StreamLogsStream = Out<LogAck>;

    async fn stream_logs(
        &self,
        req: Request<Streaming<LogChunk>>,
    ) -> Result<Response<Self::StreamLogsStream>, Status> {
        let rec = self.authenticate(&req)?;
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let sched = self.app.sched.clone();
        let shutdown = self.app.shutdown.clone();
        self.app.spawn("log-ingest", async move {
            let mut job: Option<(u64, u64)> = None;
            loop {
                let first = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    m = inbound.next() => m,
                };
                let Some(Ok(first)) = first else { break };
                let mut bytes = first.data.len();
                let mut batch = vec![first];
                while bytes < LOG_BATCH_BYTES {
                    match ready_now(&mut inbound).await {
                        Some(Some(Ok(c))) => {
                            bytes += c.data.len();
                            batch.push(c);
                        }
                        _ => break,
                    }
                }
                let (job_id, epoch) = *job.get_or_insert((batch[0].job_id, batch[0].epoch));
                if batch.iter().any(|c| (c.job_id, c.epoch) != (job_id, epoch)) {
                    refuse(
                        &tx,
                        Status::invalid_argument("one StreamLogs call carries one (job, epoch)"),
                    )
                    .await;
                    break;
                }
                if let Err(e) = sched.check_lease(&rec.id, job_id, epoch) {
                    warn!(job_id, epoch, builder_id = %rec.id, error = %e, "log bytes refused: the builder does not hold the job's lease");
                    refuse(&tx, Status::failed_precondition(e.to_string())).await;
                    break;
                }
                // Log bytes show the builder alive as well as a heartbeat.
                sched.touch(&rec.id);
                let chunks = batch.into_iter().map(|c| (c.offset, c.data)).collect();
                match sched.logs.append(job_id, chunks).await {
                    Ok(a) => {
                        let ack = LogAck {
                            committed_offset: a.committed,
                            truncated: a.truncated,
                        };
                        if tx.send(Ok(ack)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        warn!(job_id, error = %e, "cannot store log");
                        refuse(
                            &tx,
                            Status::unavailable(format!("cannot store the log: {e}")),
                        )
                        .await;
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn finish_job(
        &self,
        req: Request<FinishJobRequest>,
    ) -> Result<Response<FinishJobResponse>, Status> {
        let rec = self.authenticate(&req)?;
        let req = req.into_inner();
        // A result shows the builder alive as well as a heartbeat: its
        // other jobs' leases hold while its heartbeats queue behind work.
        self.app.sched.touch(&rec.id);
        self.app.sched.finish(&rec.id, &req).await?;
        Ok(Response::new(FinishJobResponse {}))
    }

    type FetchCacheStream = Out<CacheChunk>;

    async fn fetch_cache(
        &self,
        req: Request<CacheRequest>,
    ) -> Result<Response<Self::FetchCacheStream>, Status> {
        let rec = self.authenticate(&req)?;
        let req = req.into_inner();
        let found = cache::fetch_for_job(&self.app, &rec.id, req.job_id, req.epoch)?;
        let (tx, rx) = mpsc::channel(4);
        if let Some((a, file)) = found {
            info!(job_id = req.job_id, group = %a.group, size = a.size, "cache archive sent");
            let header = CacheChunk {
                part: Some(cache_chunk::Part::Archive(CacheArchive {
                    job_id: req.job_id,
                    epoch: req.epoch,
                    group: a.group,
                    size: a.size,
                    fingerprint: a.fingerprint,
                    sha256: a.sha256,
                })),
            };
            // Reading a file is blocking: a thread of its own, bounded by
            // the channel so a slow builder holds back the reads.
            tokio::task::spawn_blocking(move || send_file(header, file, tx));
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn push_cache(
        &self,
        req: Request<Streaming<CacheChunk>>,
    ) -> Result<Response<PushCacheResponse>, Status> {
        let rec = self.authenticate(&req)?;
        let mut inbound = req.into_inner();
        let header = match inbound.next().await {
            Some(Ok(CacheChunk {
                part: Some(cache_chunk::Part::Archive(a)),
            })) => a,
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(Status::invalid_argument(
                    "a PushCache stream starts with a CacheArchive",
                ))
            }
        };
        let mut incoming = match cache::Incoming::begin(&self.app, &rec.id, &header)? {
            Ok(i) => i,
            Err(refused) => return Ok(Response::new(push_answer(refused))),
        };
        while let Some(m) = inbound.next().await {
            match m?.part {
                Some(cache_chunk::Part::Data(d)) => incoming.write(&d)?,
                _ => {
                    return Err(Status::invalid_argument(
                        "after its CacheArchive, a PushCache stream carries only data",
                    ))
                }
            }
        }
        let outcome = incoming.finish(&self.app).await?;
        Ok(Response::new(push_answer(outcome)))
    }
}

/// Streams an archive: its header, then its bytes in chunks.
fn send_file(
    header: CacheChunk,
    mut file: std::fs::File,
    tx: mpsc::Sender<Result<CacheChunk, Status>>,
) {
    use std::io::Read;
    if tx.blocking_send(Ok(header)).is_err() {
        return;
    }
    let mut buf = vec![0u8; limits::MAX_CHUNK_BYTES];
    loop {
        let m = match file.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => Ok(CacheChunk {
                part: Some(cache_chunk::Part::Data(buf[..n].to_vec())),
            }),
            Err(e) => Err(Status::internal(format!("reading the cache archive: {e}"))),
        };
        let stop = m.is_err();
        if tx.blocking_send(m).is_err() || stop {
            return;
        }
    }
}

fn push_answer(o: cache::PushOutcome) -> PushCacheResponse {
    let (result, detail) = match o {
        cache::PushOutcome::Stored { evicted: 0 } => {
            (CacheStoreResult::Stored, "stored".to_string())
        }
        cache::PushOutcome::Stored { evicted } => (
            CacheStoreResult::Stored,
            format!("stored; {evicted} least recently used archive(s) of the project removed to stay within its limit"),
        ),
        cache::PushOutcome::TooLarge { size, max } => (
            CacheStoreResult::TooLarge,
            format!("the archive is {size} bytes, over the control node's limit of {max} bytes (cache.max_archive_bytes); not stored"),
        ),
    };
    let mut r = PushCacheResponse { result: 0, detail };
    r.set_result(result);
    r
}

impl From<cache::transfer::TransferError> for Status {
    fn from(e: cache::transfer::TransferError) -> Status {
        use cache::transfer::TransferError as E;
        let m = e.to_string();
        match e {
            E::Lease(_) => Status::failed_precondition(m),
            E::Invalid(_) => Status::invalid_argument(m),
            E::Cache(_) => Status::internal(m),
        }
    }
}
