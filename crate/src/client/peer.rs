//! One configured server: its connection (a `les::session::Session` over a transport
//! stream), the requests waiting for its replies, its value record, and its lespay service
//! state (`pay::service`). The driver task
//! here only moves bytes, time and replies; every protocol decision is the session's, every
//! trust decision the client core's.

use super::metrics::ValueRecord;
use crate::config::Server;
use crate::pay::service::ServerService;
use crate::runtime::Runtime;
use crate::transport::{Connection, TransportError};
use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures_channel::oneshot;
use futures_util::StreamExt;
use futures_util::future::{FutureExt, LocalBoxFuture, select_all};
use les::flow::SendDelay;
use les::msg::{LesMessage, RemoteServer};
use les::pay::messages::{LESPAY, LespayMessage};
use les::session::{CallError, Event, Session};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

/// An open session to a server, shared between the driver task and the request path.
pub(super) struct Link {
    pub session: Session,
    /// Replies awaited, by request ID.
    pending: HashMap<u64, oneshot::Sender<LesMessage>>,
    /// Wakes the driver to write out what a request queued.
    kick: UnboundedSender<()>,
    /// The server's offer, once the session is established.
    pub offer: Option<RemoteServer>,
}

/// A configured server and whatever connection it has.
pub(super) struct Peer {
    pub server: Server,
    pub link: RefCell<Option<Link>>,
    pub record: RefCell<ValueRecord>,
    /// What lespay tells of our service there.
    pub service: RefCell<ServerService>,
    /// Connection attempts since the last established session (for the backoff).
    pub attempts: Cell<u32>,
}

/// Why one attempt at a request on one server produced nothing.
#[derive(Debug)]
pub(super) enum AttemptError {
    /// Not established, announce-only, or frozen by the server right now.
    NotReady,
    /// Out of flow-control budget: by our estimate of the server's buffer, the request
    /// may be sent after this long.
    Budget(Duration),
    /// The connection ended (or the server sent Stop) before the reply.
    Lost,
    /// No reply within the request timeout.
    Timeout,
}

impl Peer {
    pub fn new(server: Server) -> Self {
        Self {
            server,
            link: RefCell::new(None),
            record: RefCell::new(ValueRecord::default()),
            service: RefCell::new(ServerService::default()),
            attempts: Cell::new(0),
        }
    }

    /// Whether the session is established with a server that serves data.
    pub fn can_serve(&self) -> bool {
        self.link
            .borrow()
            .as_ref()
            .is_some_and(|link| link.offer.as_ref().is_some_and(|offer| !offer.announce_only))
    }

    /// Whether the session is established.
    pub fn is_established(&self) -> bool {
        self.link.borrow().as_ref().is_some_and(|link| link.offer.is_some())
    }

    /// Queues `request` on the session (which checks limits and the flow-control budget)
    /// and returns where its reply will arrive.
    pub fn send(
        &self,
        request: LesMessage,
        runtime: &impl Runtime,
    ) -> Result<oneshot::Receiver<LesMessage>, AttemptError> {
        let mut link = self.link.borrow_mut();
        let link =
            link.as_mut().filter(|link| link.offer.is_some()).ok_or(AttemptError::NotReady)?;
        let Some(request_id) = request.request_id() else {
            return Err(AttemptError::NotReady);
        };
        match link.session.send_request(request, runtime.now()) {
            Ok(()) => {}
            Err(CallError::Budget(delay)) => {
                self.record.borrow_mut().budget_waits += 1;
                return Err(match delay {
                    SendDelay::Wait(wait) => AttemptError::Budget(wait),
                    SendDelay::Frozen => AttemptError::NotReady,
                });
            }
            Err(CallError::NotEstablished) => return Err(AttemptError::NotReady),
            Err(_) => return Err(AttemptError::NotReady),
        }
        let (sender, receiver) = oneshot::channel();
        link.pending.insert(request_id, sender);
        // The driver may be parked in recv; a closed channel means it is gone, and the
        // dropped sender then reports Lost.
        let _ = link.kick.unbounded_send(());
        self.record.borrow_mut().messages_out += 1;
        Ok(receiver)
    }

    /// Queues a lespay message on the session (the reply, if any, arrives through
    /// [`ServerService::expect_reply`]).
    pub fn send_lespay(&self, message: &LespayMessage) -> Result<(), AttemptError> {
        let mut link = self.link.borrow_mut();
        let link =
            link.as_mut().filter(|link| link.offer.is_some()).ok_or(AttemptError::NotReady)?;
        let (code, payload) = message.encode();
        link.session
            .send_capability_message(LESPAY, code, &payload)
            .map_err(|_| AttemptError::NotReady)?;
        let _ = link.kick.unbounded_send(());
        self.record.borrow_mut().messages_out += 1;
        Ok(())
    }

    /// Forgets a request whose reply is no longer awaited (timed out).
    pub fn abandon(&self, request_id: u64) {
        if let Some(link) = self.link.borrow_mut().as_mut() {
            link.pending.remove(&request_id);
        }
    }

    /// Delivers a reply to whoever waits for it; false if nobody does.
    pub fn deliver(&self, reply: LesMessage) -> bool {
        let Some(request_id) = reply.request_id() else { return false };
        let sender =
            self.link.borrow_mut().as_mut().and_then(|link| link.pending.remove(&request_id));
        match sender {
            Some(sender) => sender.send(reply).is_ok(),
            None => false,
        }
    }

    /// Fails every awaited reply (StopMsg: the server dropped them).
    pub fn fail_pending(&self) {
        if let Some(link) = self.link.borrow_mut().as_mut() {
            link.pending.clear();
        }
    }

    /// Asks the session to disconnect (the driver writes the Disconnect and closes).
    pub fn disconnect(&self, reason: les::p2p::DisconnectReason) {
        if let Some(link) = self.link.borrow_mut().as_mut() {
            link.session.disconnect(reason);
            let _ = link.kick.unbounded_send(());
        }
    }
}

/// What woke the driver.
enum Wake {
    Input(Result<Vec<u8>, TransportError>),
    Kick,
    Timer,
}

/// Runs one connection: installs `session` as the peer's link, then moves bytes between
/// `connection` and the session until it ends, handing every event to `on_event`. Returns
/// why it ended.
pub(super) async fn drive<C: Connection, R: Runtime>(
    peer: &Peer,
    mut connection: C,
    session: Session,
    runtime: &R,
    on_event: &dyn Fn(Event),
) -> Option<String> {
    let (kick, mut kicks): (UnboundedSender<()>, UnboundedReceiver<()>) = unbounded();
    *peer.link.borrow_mut() = Some(Link { session, pending: HashMap::new(), kick, offer: None });
    let ended = loop {
        // Write out everything the session has queued.
        let mut write_error = None;
        loop {
            let bytes =
                peer.link.borrow_mut().as_mut().and_then(|link| link.session.poll_transmit());
            let Some(bytes) = bytes else { break };
            peer.record.borrow_mut().bytes_out += bytes.len() as u64;
            if let Err(error) = connection.send(bytes).await {
                write_error = Some(error.to_string());
                break;
            }
        }
        if write_error.is_some() {
            break write_error;
        }
        let mut handled = false;
        loop {
            let event = peer.link.borrow_mut().as_mut().and_then(|link| link.session.poll_event());
            let Some(event) = event else { break };
            handled = true;
            if let Event::Disconnected { reason, error, .. } = &event {
                let why = match error {
                    Some(error) => format!("{reason:?}: {error}"),
                    None => format!("{reason:?}"),
                };
                on_event(event);
                // Flush the Disconnect message, then end. (The borrow must end before the
                // await: a `while let` would hold it across the send.)
                loop {
                    let bytes =
                        peer.link.borrow_mut().as_mut().and_then(|l| l.session.poll_transmit());
                    let Some(bytes) = bytes else { break };
                    if connection.send(bytes).await.is_err() {
                        break;
                    }
                }
                connection.close();
                *peer.link.borrow_mut() = None;
                return Some(why);
            }
            on_event(event);
        }
        if handled {
            continue;
        }
        let closed = peer.link.borrow().as_ref().is_none_or(|link| link.session.is_closed());
        if closed {
            break Some("session closed".to_string());
        }
        let deadline = peer.link.borrow().as_ref().and_then(|link| link.session.poll_timeout());
        let now = runtime.now();
        let wait =
            deadline.map_or(Duration::from_secs(3600), |at| at.saturating_duration_since(now));
        let wake = {
            let sources: Vec<LocalBoxFuture<'_, Wake>> = vec![
                connection.recv().map(Wake::Input).boxed_local(),
                kicks.next().map(|_| Wake::Kick).boxed_local(),
                runtime.sleep(wait).map(|()| Wake::Timer).boxed_local(),
            ];
            select_all(sources).await.0
        };
        let now = runtime.now();
        match wake {
            Wake::Input(Ok(bytes)) => {
                peer.record.borrow_mut().bytes_in += bytes.len() as u64;
                if let Some(link) = peer.link.borrow_mut().as_mut() {
                    link.session.handle_input(&bytes, now);
                }
            }
            Wake::Input(Err(error)) => break Some(error.to_string()),
            Wake::Kick => {}
            Wake::Timer => {
                if let Some(link) = peer.link.borrow_mut().as_mut() {
                    link.session.handle_timeout(now);
                }
            }
        }
    };
    connection.close();
    *peer.link.borrow_mut() = None;
    ended
}

/// Records the server's offer once the session is established.
pub(super) fn set_offer(peer: &Peer, offer: RemoteServer) {
    if let Some(link) = peer.link.borrow_mut().as_mut() {
        link.offer = Some(offer);
    }
}
