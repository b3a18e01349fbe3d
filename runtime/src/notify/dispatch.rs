//! Delivery: rounds that claim due outbox messages, send them concurrently
//! after the claim has committed, and record each outcome; and the background
//! [`Dispatcher`] that runs rounds while the server runs.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use trellis_engine::model::Channel;

use super::channels::{self, ChannelConfig, Channels};
use super::outbox::{self, Claimed, Outcome};
use crate::store::{Store, StoreError};

/// Delivers the messages due now; returns how many were delivered.
pub async fn deliver_due(store: &Store, channels: &Channels) -> Result<usize, StoreError> {
    deliver_due_at(store, channels, chrono::Utc::now()).await
}

/// [`deliver_due`] as if it were `now`: what is due, and when failures are
/// due again, are reckoned from it (attempts are logged at the real time).
/// Lets tests and tools step through backoff without waiting.
pub async fn deliver_due_at(
    store: &Store,
    channels: &Channels,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<usize, StoreError> {
    round(store, channels, now)
        .await
        .map(|(_, delivered)| delivered)
}

/// One round: (messages claimed, messages delivered).
async fn round(
    store: &Store,
    channels: &Channels,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(usize, usize), StoreError> {
    let lease = lease_name()?;
    let claimed = outbox::claim(store, channels, now, &lease).await?;
    if claimed.is_empty() {
        return Ok((0, 0));
    }
    let mut names: Vec<String> = claimed
        .iter()
        .filter(|m| m.channel.is_some_and(|c| c != Channel::Email))
        .map(|m| m.target.clone())
        .collect();
    names.sort();
    names.dedup();
    // Any failure from here on leaves the claimed messages to their lease:
    // they are tried again when it runs out.
    let configs = Arc::new(channels::by_names(store, &names).await?);
    let agent = super::http::agent(channels.timeout);
    let settings = Arc::new(channels.clone());
    let count = claimed.len();
    let mut sending = JoinSet::new();
    for message in claimed {
        let (configs, agent, settings) = (configs.clone(), agent.clone(), settings.clone());
        sending.spawn(async move {
            let outcome = send(&message, &configs, agent, &settings).await;
            (message, outcome)
        });
    }
    let mut delivered = 0;
    let mut first_error = None;
    while let Some(joined) = sending.join_next().await {
        let (message, outcome) = match joined {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "an outbox delivery task failed; its lease will expire");
                continue;
            }
        };
        if !outcome.success {
            tracing::info!(
                outbox_id = message.id,
                target = %message.target,
                error = outcome.error.as_deref().unwrap_or(""),
                "outbox delivery failed"
            );
        }
        // Every outcome is recorded even if one cannot be: a delivered message
        // left unrecorded would be sent again.
        match outbox::complete(store, &message, &outcome, &channels.retry, now).await {
            Ok(true) => delivered += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, outbox_id = message.id, "an outbox outcome was not recorded");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok((count, delivered)),
    }
}

async fn send(
    message: &Claimed,
    configs: &HashMap<String, ChannelConfig>,
    agent: ureq::Agent,
    settings: &Channels,
) -> Outcome {
    if message.kind == crate::connect::PUSH_CHANNEL {
        return super::http::deliver_push(message, settings).await;
    }
    match message.channel {
        Some(Channel::Email) => {
            super::email::deliver(settings.smtp.as_ref(), settings.timeout, message).await
        }
        Some(Channel::InApp) | None => Outcome::failed(
            message.target.clone(),
            "the message names no channel that delivers",
            true,
        ),
        Some(kind) => match configs.get(&message.target) {
            None => Outcome::failed(
                message.target.clone(),
                format!("there is no channel `{}` any more", message.target),
                true,
            ),
            Some(config) if config.kind != kind => Outcome::failed(
                message.target.clone(),
                format!("the channel `{}` is no longer of its kind", config.name),
                true,
            ),
            Some(config) if !config.enabled => Outcome::failed(
                message.target.clone(),
                format!("the channel `{}` is disabled", config.name),
                false,
            ),
            Some(config) => super::http::deliver(agent, config, message).await,
        },
    }
}

/// A name for one claim, unique across nodes and rounds.
fn lease_name() -> Result<String, StoreError> {
    let mut bytes = [0_u8; 12];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::Database(sea_orm::DbErr::Custom(format!("no randomness: {e}"))))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The background delivery loop of a server.
pub struct Dispatcher {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Dispatcher {
    /// Starts delivering on the current Tokio runtime: a round every
    /// `channels.poll`, and at once again after a round that filled its batch.
    pub fn start(store: Store, channels: Channels) -> Dispatcher {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let full = match round(&store, &channels, chrono::Utc::now()).await {
                    Ok((claimed, _)) => claimed as u64 >= channels.batch,
                    Err(e) => {
                        tracing::error!(error = %e, "outbox delivery round failed");
                        false
                    }
                };
                if *stopped.borrow() {
                    break;
                }
                if full {
                    continue;
                }
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = tokio::time::sleep(channels.poll) => {}
                }
            }
        });
        Dispatcher { stop, task }
    }

    /// Stops after the round in progress; its outcomes are recorded first.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Err(e) = (&mut self.task).await {
            tracing::error!(error = %e, "the outbox dispatcher failed");
        }
    }
}

impl Drop for Dispatcher {
    /// A dropped dispatcher stops after its current round.
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
