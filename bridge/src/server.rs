//! The accept loop ([`serve`]) and the connection limits it enforces.

use crate::config::BridgeConfig;
use crate::relay::{CloseCause, Shared, handle_connection};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again, so the
/// loop does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Runs the bridge on `listener` until `shutdown` completes; then closes every connection
/// (close 1001 "the bridge is shutting down" to each browser, the target sockets closed)
/// and returns once all of them are gone.
pub async fn serve(
    config: BridgeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let handshakes = Arc::new(Semaphore::new(config.max_pending_handshakes));
    let slots = Slots::new(config.max_connections, config.max_per_ip);
    let shared = Arc::new(Shared { config, slots });
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, targets = shared.config.allow.len(), "bridge listening");
    }
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "too many handshakes in progress: connection dropped");
                        continue;
                    };
                    let task = handle_connection(tcp, peer, shared.clone(), stopped.clone(), permit);
                    connections.spawn(task);
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = joined {
                    tracing::error!(%error, "connection task failed");
                }
            }
        }
    }
    drop(listener);
    tracing::info!(connections = connections.len(), "shutting down");
    let _ = stop.send(true);
    while let Some(joined) = connections.join_next().await {
        if let Err(error) = joined {
            tracing::error!(%error, "connection task failed");
        }
    }
    tracing::info!("bridge stopped");
}

/// Counts relayed connections, in total and per IP address.
pub(crate) struct Slots {
    inner: Arc<Mutex<Occupancy>>,
    max_total: usize,
    max_per_ip: usize,
}

#[derive(Default)]
struct Occupancy {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One taken slot; dropping it frees the slot.
pub(crate) struct Slot {
    inner: Arc<Mutex<Occupancy>>,
    ip: IpAddr,
}

impl Slots {
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self { inner: Arc::default(), max_total, max_per_ip }
    }

    /// Takes a slot for a connection from `ip`, or says which limit is reached.
    pub(crate) fn try_take(&self, ip: IpAddr) -> Result<Slot, CloseCause> {
        // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d; count it as a.b.c.d.
        let ip = ip.to_canonical();
        let mut occupancy = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if occupancy.total >= self.max_total {
            return Err(CloseCause::Full { limit: self.max_total });
        }
        let from_ip = occupancy.per_ip.entry(ip).or_default();
        if *from_ip >= self.max_per_ip {
            return Err(CloseCause::TooManyFromIp { ip, limit: self.max_per_ip });
        }
        *from_ip = from_ip.saturating_add(1);
        occupancy.total = occupancy.total.saturating_add(1);
        Ok(Slot { inner: self.inner.clone(), ip })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut occupancy = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        occupancy.total = occupancy.total.saturating_sub(1);
        if let Some(count) = occupancy.per_ip.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                occupancy.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn slots_enforce_both_limits_and_are_freed_on_drop() {
        let slots = Slots::new(3, 2);
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let a1 = slots.try_take(a).map_err(|e| e.to_string());
        let a2 = slots.try_take(a).map_err(|e| e.to_string());
        assert!(a1.is_ok() && a2.is_ok());
        assert!(matches!(slots.try_take(a), Err(CloseCause::TooManyFromIp { limit: 2, .. })));
        // The same address written as IPv4-mapped IPv6 is the same address.
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert!(matches!(slots.try_take(mapped), Err(CloseCause::TooManyFromIp { .. })));
        let b1 = slots.try_take(b).map_err(|e| e.to_string());
        assert!(b1.is_ok());
        assert!(matches!(slots.try_take(b), Err(CloseCause::Full { limit: 3 })));
        drop(a1);
        assert!(slots.try_take(b).is_ok(), "a freed slot is available again");
        drop((a2, b1));
        let occupancy = slots.inner.lock().map(|o| (o.total, o.per_ip.len())).ok();
        assert_eq!(occupancy, Some((0, 0)), "every slot returned, no empty entries left");
    }
}
