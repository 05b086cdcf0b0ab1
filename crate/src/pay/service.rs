//! What the client knows of one server's service over `lespay/1`: whether the session
//! negotiated it, the server's price list, our balance, capacity and priority class there
//! (from replies and from its `CapacityUpdate` pushes), and the lespay requests waiting for
//! replies. Sans-IO: the client core feeds it decoded messages and sends what it is told.

use alloy_primitives::U256;
use futures_channel::oneshot;
use les::pay::messages::{Balance, ErrorCode, LespayMessage, PriceList, PriorityClass};
use serde_json::{Value, json};
use std::collections::HashMap;

/// One server's service state.
#[derive(Debug, Default)]
pub struct ServerService {
    /// Whether the current session negotiated lespay/1.
    pub offered: bool,
    /// The server's last price list.
    pub prices: Option<PriceList>,
    /// Our last known balance there (its `capacity` is our current capacity).
    pub balance: Option<Balance>,
    /// A payment or capacity request is in flight (the policy plans nothing new).
    pub busy: bool,
    /// The last lespay error the server answered with.
    pub last_error: Option<(ErrorCode, String)>,
    /// Tokens credited by the server for our payments, in total.
    pub credited: u64,
    /// Payments acknowledged.
    pub payments: u64,
    /// Messages that did not decode (the session is kept: lespay is an add-on).
    pub bad_messages: u64,
    pending: HashMap<u64, oneshot::Sender<LespayMessage>>,
}

impl ServerService {
    /// A new session: lespay is `offered` or not; replies awaited on the old one are lost.
    pub fn on_session(&mut self, offered: bool) {
        self.offered = offered;
        self.pending.clear();
        self.busy = false;
    }

    /// The session ended.
    pub fn on_session_end(&mut self) {
        self.offered = false;
        self.pending.clear();
        self.busy = false;
    }

    /// Registers a request and returns where its reply (or lespay `Error`) will arrive.
    pub fn expect_reply(&mut self, req_id: u64) -> oneshot::Receiver<LespayMessage> {
        let (sender, receiver) = oneshot::channel();
        self.pending.insert(req_id, sender);
        receiver
    }

    /// Forgets a request whose reply is no longer awaited.
    pub fn abandon(&mut self, req_id: u64) {
        self.pending.remove(&req_id);
    }

    /// Our capacity there (0 before any balance is known).
    pub fn capacity(&self) -> u64 {
        self.balance.map_or(0, |b| b.capacity)
    }

    /// Whether the server serves us in its paid class.
    pub fn is_paid(&self) -> bool {
        self.balance.is_some_and(|b| b.priority_class == PriorityClass::Paid)
    }

    /// Takes in a message from the server: updates what it tells about our service, and
    /// hands a reply to whoever waits for it. Returns whether a waiter took it.
    pub fn on_message(&mut self, message: LespayMessage) -> bool {
        match &message {
            LespayMessage::PriceReply { prices, .. } => self.prices = Some((**prices).clone()),
            LespayMessage::BalanceReply { balance, .. }
            | LespayMessage::CapacityGranted { balance, .. }
            | LespayMessage::CapacityUpdate { balance, .. } => self.balance = Some(*balance),
            LespayMessage::PayReply { credited, balance, .. } => {
                self.credited = self.credited.saturating_add(*credited);
                self.payments += 1;
                if let Some(b) = self.balance.as_mut() {
                    b.pos = *balance;
                }
            }
            LespayMessage::Error { code, reason, .. } => {
                self.last_error = Some((*code, reason.clone()))
            }
            _ => {}
        }
        if let LespayMessage::CapacityUpdate { capacity, .. } = &message
            && let Some(b) = self.balance.as_mut()
        {
            b.capacity = *capacity;
        }
        let Some(req_id) = message.req_id() else { return false };
        match self.pending.remove(&req_id) {
            Some(waiter) => waiter.send(message).is_ok(),
            None => false,
        }
    }

    /// The state as JSON for `ulc_serviceStatus`.
    pub fn to_json(&self) -> Value {
        json!({
            "lespay": self.offered,
            "prices": self.prices.as_ref().map(prices_json),
            "balance": self.balance.map(|b| json!({
                "pos": b.pos,
                "neg": b.neg,
                "capacity": b.capacity,
                "class": class_name(b.priority_class),
            })),
            "capacity": self.capacity(),
            "class": self.balance.map(|b| class_name(b.priority_class)),
            "tokensCredited": self.credited,
            "payments": self.payments,
            "lastError": self.last_error.as_ref().map(|(code, reason)| json!({
                "code": *code as u8,
                "reason": reason,
            })),
        })
    }
}

fn class_name(class: PriorityClass) -> &'static str {
    match class {
        PriorityClass::Free => "free",
        PriorityClass::Paid => "paid",
    }
}

fn factors_json(f: &les::pay::messages::PriceFactors) -> Value {
    json!({ "time": f.time, "capacity": f.capacity, "request": f.request })
}

/// A price list as JSON (wei amounts as hex quantities).
pub fn prices_json(p: &PriceList) -> Value {
    json!({
        "minCapacity": p.min_capacity,
        "totalCapacity": p.total_capacity,
        "freeCapacity": p.free_capacity,
        "posFactors": factors_json(&p.pos_factors),
        "negFactors": factors_json(&p.neg_factors),
        "tokensPerWei": { "num": p.tokens_per_wei.num, "den": p.tokens_per_wei.den },
        "connectedBiasSecs": p.connected_bias_secs,
        "receivers": p.receivers,
        "channel": p.channel.as_ref().map(|c| json!({
            "chainId": c.chain_id,
            "contract": c.contract,
            "payee": c.payee,
            "acceptMarginSecs": c.accept_margin_secs,
            "minDeposit": hex_wei(c.min_deposit),
        })),
    })
}

/// A wei amount as a hex quantity.
pub fn hex_wei(wei: U256) -> String {
    format!("{wei:#x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balance(pos: u64, capacity: u64, class: PriorityClass) -> Balance {
        Balance { pos, neg: 0, capacity, priority_class: class }
    }

    #[test]
    fn pushes_update_the_balance_and_replies_reach_their_waiter() {
        let mut service = ServerService::default();
        service.on_session(true);
        let waiter = service.expect_reply(7);
        assert!(!service.on_message(LespayMessage::CapacityUpdate {
            capacity: 2_000,
            balance: balance(50, 2_000, PriorityClass::Paid),
        }));
        assert_eq!((service.capacity(), service.is_paid()), (2_000, true));
        assert!(
            !service.on_message(LespayMessage::BalanceReply {
                req_id: 8,
                balance: balance(1, 1, PriorityClass::Free)
            }),
            "nobody waits for 8"
        );
        let reply = LespayMessage::PayReply {
            req_id: 7,
            credited: 10,
            balance: 11,
            receipt: Default::default(),
        };
        assert!(service.on_message(reply.clone()));
        assert_eq!(crate::pay::block_on(waiter), Ok(reply));
        assert_eq!(service.balance.map(|b| b.pos), Some(11));
        assert_eq!((service.credited, service.payments), (10, 1));
        let lost = service.expect_reply(9);
        service.on_session_end();
        assert!(crate::pay::block_on(lost).is_err(), "a reply of an ended session never comes");
        assert!(!service.offered);
    }
}
