//! The Redis source of pushed invalidation: [`subscribe_changes`] listens
//! on the channel the stores publish their writes on and hands each
//! [`Change`] to a [`Changes`] hub.
//!
//! The key store's revocation and rotation scripts, and every allowlist
//! write, `PUBLISH` the change's [`Change::encode`] text on
//! `<prefix>changes` in the same atomic step as the write. Redis delivers a
//! published message to the subscribers connected at that moment, at most
//! once: what is published while a subscriber is away is gone. So the
//! subscriber marks the hub disconnected as soon as it loses its connection
//! (caches then rely on their TTL alone) and, once subscribed again, marks
//! it connected, which delivers [`Change::Everything`].

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::PubSub;
use tokio::task::JoinHandle;
use tollgate_core::changes::{Change, Changes};
use tollgate_core::StoreError;

use crate::backend::changes_channel;
use crate::config::{redact_url, RedisConfig};

// The first pause after a lost connection; it doubles up to the
// configuration's `reconnect_max_delay`.
const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(20);

/// How often a subscribed connection is pinged: a server that stopped
/// answering without closing the connection is noticed within this (plus
/// the operation timeout).
pub const CHANGES_HEALTH_CHECK: Duration = Duration::from_secs(1);

/// A running subscription: a task that delivers the changes published
/// under the configuration's prefix to a hub. Dropping it stops the task
/// and marks the hub disconnected.
#[derive(Debug)]
pub struct ChangeSubscription {
    task: JoinHandle<()>,
    changes: Changes,
}

impl ChangeSubscription {
    /// Stops listening (what dropping does).
    pub fn stop(self) {}
}

impl Drop for ChangeSubscription {
    fn drop(&mut self) {
        self.task.abort();
        self.changes.set_connected(false);
    }
}

/// Subscribes to the changes published by the stores under `config`'s
/// prefix, on a connection of its own, and delivers them to `changes`.
/// Returns at once: the task connects in the background, marks the hub
/// connected once subscribed (delivering [`Change::Everything`]), and
/// whenever the connection drops or stops answering pings
/// ([`CHANGES_HEALTH_CHECK`]) marks it disconnected and reconnects by itself,
/// with pauses from 20 ms doubling up to the configuration's
/// [`reconnect_max_delay`](RedisConfig::reconnect_max_delay). Messages
/// that are not a change are ignored.
///
/// Must be called within a Tokio runtime. An invalid URL is
/// [`StoreError::Backend`].
///
/// ```no_run
/// use tollgate_core::changes::Changes;
/// use tollgate_core::keys::CachedKeyStore;
/// use tollgate_redis::{subscribe_changes, RedisConfig, RedisStores};
///
/// # async fn example() -> Result<(), tollgate_core::StoreError> {
/// let config = RedisConfig::new("redis://127.0.0.1:6379");
/// let stores = RedisStores::connect(config.clone()).await?;
/// let changes = Changes::new();
/// let _subscription = subscribe_changes(&config, changes.clone())?; // keep it alive
/// let keys = CachedKeyStore::new(stores.key_store())
///     .ttl(std::time::Duration::from_secs(60))
///     .invalidated_by(&changes);
/// # Ok(()) }
/// ```
pub fn subscribe_changes(config: &RedisConfig, changes: Changes) -> Result<ChangeSubscription, StoreError> {
    // On a cluster any node will do: a PUBLISH reaches every node's subscribers.
    let url = config.urls.first().map(String::as_str).unwrap_or_default();
    let client = redis::Client::open(url)
        .map_err(|error| StoreError::backend(format!("invalid Redis URL {}: {:?}", redact_url(url), error.kind())))?;
    let listener = Listener {
        client,
        channel: changes_channel(&config.prefix),
        changes: changes.clone(),
        connection_timeout: config.connection_timeout,
        ping_timeout: config.operation_timeout,
        max_delay: config.reconnect_max_delay.max(MIN_RECONNECT_DELAY),
    };
    Ok(ChangeSubscription {
        task: tokio::spawn(listener.run()),
        changes,
    })
}

struct Listener {
    client: redis::Client,
    channel: String,
    changes: Changes,
    connection_timeout: Duration,
    ping_timeout: Duration,
    max_delay: Duration,
}

impl Listener {
    async fn run(self) {
        let mut delay = MIN_RECONNECT_DELAY;
        loop {
            match tokio::time::timeout(self.connection_timeout, self.subscribe()).await {
                Ok(Ok(pubsub)) => {
                    delay = MIN_RECONNECT_DELAY;
                    // Subscribed before marked connected: every change
                    // from here on arrives, and what came before is
                    // covered by the `Everything` this delivers.
                    self.changes.set_connected(true);
                    tracing::debug!(channel = %self.channel, "subscribed to changes");
                    self.listen(pubsub).await;
                    self.changes.set_connected(false);
                    tracing::warn!(channel = %self.channel, "lost the changes subscription; caches fall back to their TTL until it is back");
                }
                Ok(Err(error)) => {
                    tracing::debug!(channel = %self.channel, error = ?error.kind(), "could not subscribe to changes");
                }
                Err(_elapsed) => {
                    tracing::debug!(channel = %self.channel, "subscribing to changes timed out");
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.max_delay);
        }
    }

    async fn subscribe(&self) -> redis::RedisResult<PubSub> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(&self.channel).await?;
        Ok(pubsub)
    }

    // Delivers messages until the connection is lost or stops answering.
    async fn listen(&self, pubsub: PubSub) {
        let (mut sink, mut messages) = pubsub.split();
        let mut health = tokio::time::interval(CHANGES_HEALTH_CHECK);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        health.tick().await; // the first tick is now
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else { return };
                    let change = message.get_payload::<String>().ok().as_deref().and_then(Change::decode);
                    if let Some(change) = change {
                        self.changes.deliver(&change);
                    }
                }
                _ = health.tick() => {
                    let pong = tokio::time::timeout(self.ping_timeout, sink.ping::<redis::Value>()).await;
                    if !matches!(pong, Ok(Ok(_))) {
                        return;
                    }
                }
            }
        }
    }
}
