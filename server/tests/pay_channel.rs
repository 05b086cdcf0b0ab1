//! lesd's money path against a real anvil with the real PaymentChannel contract
//! (contracts/artifacts/PaymentChannel.json): cheques signed with `les::pay::cheque` by a
//! payer (anvil account #1) for lesd's payee key, verified by the channel receiver, written to
//! the payment ledger and redeemed on chain by the redeemer. Each test is named after the
//! check of research §8 it makes.

mod common;

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::{SolCall, SolEvent, sol};
use common::{Anvil, DEV_ADDRESS_0, DEV_ADDRESS_1, temp_dir};
use les::crypto::{NodeId, NodeKey};
use les::pay::cheque::{Cheque, ChequeDomain, ChequeError, ChequeSignature, key_address};
use les::pay::messages::{ChannelProof, ChannelReceipt, ErrorCode, ExchangeRate};
use lesd::pay::chain::{ChannelContract, OnChainChannel, PayeeKey};
use lesd::pay::channel::{ChannelConfig, ChannelReceiver, Rejection};
use lesd::pay::ledger::{Ledger, LogEntry, PaymentReference};
use lesd::pay::receiver::{LedgerSink, PaymentError, PaymentReceiver, Receipt};
use lesd::pay::redeem::{RedeemConfig, RedeemError, RedeemEvent, RedeemReason, Redeemer};
use lesd::upstream::Upstream;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

sol! {
    function open(address payee, address signer, uint64 expiry) external payable returns (bytes32 id);
    function topUp(bytes32 id) external payable;
    function reclaim(bytes32 id) external;
    function redeem(bytes32 id, uint256 cumulative, bytes sig) external;
    event Opened(bytes32 indexed id, address indexed payer, address indexed payee, uint256 deposit, uint64 expiry, address signer);
    event Closed(bytes32 indexed id, uint256 paidOut, uint256 refund);
}

/// Private key of anvil's account #1 ([`DEV_ADDRESS_1`]), the payer.
const PAYER_KEY: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
/// The contract's `minLifetime` on this devnet.
const MIN_LIFETIME: u64 = 60;
/// The receiver's accept margin.
const ACCEPT_MARGIN: u64 = 600;
/// Channel lifetime used unless a test says otherwise.
const LIFETIME: u64 = 3600;
const ETHER: u64 = 1_000_000_000_000_000_000;

fn address(text: &str) -> Address {
    Address::from_str(text).unwrap()
}

fn key_from_hex(hex: &str) -> NodeKey {
    let bytes: Vec<u8> =
        (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
    NodeKey::from_bytes(&bytes.try_into().unwrap()).unwrap()
}

fn hex_bytes(value: &Value) -> Vec<u8> {
    let text = value.as_str().unwrap().trim_start_matches("0x");
    (0..text.len() / 2).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap()).collect()
}

/// anvil with the contract deployed, the payer's key, a fresh funded payee key and a ledger
/// directory.
struct Devnet {
    anvil: Anvil,
    upstream: Upstream,
    contract: Address,
    payer: NodeKey,
    payer_address: Address,
    payee: PayeeKey,
    dir: PathBuf,
}

impl Devnet {
    async fn start(name: &str) -> Self {
        let anvil = Anvil::spawn();
        let artifact: Value = serde_json::from_str(
            &std::fs::read_to_string(
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../contracts/artifacts/PaymentChannel.json"),
            )
            .expect("contracts/artifacts/PaymentChannel.json"),
        )
        .unwrap();
        let mut init = hex_bytes(&artifact["bytecode"]);
        init.extend_from_slice(&U256::from(MIN_LIFETIME).to_be_bytes::<32>());
        let deploy = json!({"from": DEV_ADDRESS_0, "data": Bytes::from(init), "gas": "0x400000"});
        let hash = anvil.rpc("eth_sendTransaction", json!([deploy])).await;
        let receipt = wait_receipt(&anvil, &hash).await;
        assert_eq!(receipt["status"], "0x1", "deployment failed: {receipt}");
        let contract = address(receipt["contractAddress"].as_str().unwrap());
        let payer = key_from_hex(PAYER_KEY);
        let payer_address = key_address(&payer);
        assert_eq!(payer_address, address(DEV_ADDRESS_1));
        let payee = PayeeKey::from_key(NodeKey::random().unwrap());
        let fund = json!({"from": DEV_ADDRESS_0, "to": payee.address(), "value": format!("{:#x}", U256::from(ETHER))});
        let hash = anvil.rpc("eth_sendTransaction", json!([fund])).await;
        wait_receipt(&anvil, &hash).await;
        let upstream = Upstream::connect(anvil.url(), None).await.unwrap();
        Self { anvil, upstream, contract, payer, payer_address, payee, dir: temp_dir(name) }
    }

    fn domain(&self) -> ChequeDomain {
        ChequeDomain { chain_id: common::ANVIL_CHAIN_ID, contract: self.contract }
    }

    fn chain(&self) -> ChannelContract {
        ChannelContract::new(self.upstream.clone(), self.contract)
    }

    fn ledger(&self) -> Ledger {
        Ledger::open(&self.dir).unwrap()
    }

    fn receiver(&self, ledger: &Ledger, rate: ExchangeRate) -> ChannelReceiver {
        self.receiver_with(ledger, rate, 0)
    }

    fn receiver_with(
        &self,
        ledger: &Ledger,
        rate: ExchangeRate,
        confirmations: u64,
    ) -> ChannelReceiver {
        let config = ChannelConfig {
            payee: self.payee.address(),
            confirmations,
            accept_margin: Duration::from_secs(ACCEPT_MARGIN),
            rate,
            min_deposit: U256::from(1),
            cache_ttl: Duration::from_secs(60),
        };
        ChannelReceiver::new(
            config,
            self.chain(),
            ledger.clone(),
            Arc::new(LedgerSink::new(ledger.clone())),
        )
        .unwrap()
    }

    async fn head_time(&self) -> u64 {
        let block = self.anvil.rpc("eth_getBlockByNumber", json!(["latest", false])).await;
        common::quantity(&block["timestamp"])
    }

    /// Sends a transaction from an unlocked anvil account; the receipt (status unchecked).
    async fn send(&self, from: Address, to: Address, value: U256, data: Vec<u8>) -> Value {
        let tx = json!({"from": from, "to": to, "value": format!("{value:#x}"),
                        "data": Bytes::from(data), "gas": "0x100000"});
        let hash = self.anvil.rpc("eth_sendTransaction", json!([tx])).await;
        wait_receipt(&self.anvil, &hash).await
    }

    /// `eth_call` from `from`; Err with the node's error on a revert.
    async fn call(&self, from: Address, data: Vec<u8>) -> Result<Value, Value> {
        let call = json!({"from": from, "to": self.contract, "data": Bytes::from(data)});
        self.anvil.try_rpc("eth_call", json!([call, "latest"])).await
    }

    /// Opens a channel from the payer to `payee` whose cheques the payer signs itself; its id.
    async fn open_to(&self, payee: Address, deposit: U256, lifetime: u64) -> B256 {
        self.open_signed_by(payee, self.payer_address, deposit, lifetime).await
    }

    /// Opens a channel from the payer to `payee` whose cheques `signer` signs; its id.
    async fn open_signed_by(
        &self,
        payee: Address,
        signer: Address,
        deposit: U256,
        lifetime: u64,
    ) -> B256 {
        let expiry = self.head_time().await + lifetime;
        let data = openCall { payee, signer, expiry }.abi_encode();
        let receipt = self.send(self.payer_address, self.contract, deposit, data).await;
        assert_eq!(receipt["status"], "0x1", "open failed: {receipt}");
        let log = &receipt["logs"][0];
        assert_eq!(B256::from_slice(&hex_bytes(&log["topics"][0])), Opened::SIGNATURE_HASH);
        let opened = Opened::abi_decode_data(&hex_bytes(&log["data"])).unwrap();
        assert_eq!(opened.2, signer, "Opened names the signer");
        B256::from_slice(&hex_bytes(&log["topics"][1]))
    }

    async fn open(&self, deposit: U256) -> B256 {
        self.open_to(self.payee.address(), deposit, LIFETIME).await
    }

    async fn top_up(&self, id: B256, value: U256) {
        let receipt = self
            .send(self.payer_address, self.contract, value, topUpCall { id }.abi_encode())
            .await;
        assert_eq!(receipt["status"], "0x1", "topUp failed: {receipt}");
    }

    /// A cheque proof signed by the payer for our payee under our domain.
    fn proof(&self, id: B256, cumulative: U256) -> Vec<u8> {
        self.proof_with(id, id, self.payee.address(), cumulative, &self.payer, &self.domain())
    }

    /// A proof for channel `presented` carrying a signature over a cheque for `signed_id`
    /// and `payee`, by `key` under `domain`.
    fn proof_with(
        &self,
        presented: B256,
        signed_id: B256,
        payee: Address,
        cumulative: U256,
        key: &NodeKey,
        domain: &ChequeDomain,
    ) -> Vec<u8> {
        let signature = Cheque { channel_id: signed_id, payee, cumulative }.sign(key, domain);
        ChannelProof { channel_id: presented, cumulative, signature }.encode().to_vec()
    }

    async fn on_chain(&self, id: B256) -> OnChainChannel {
        let head = self.upstream.latest_number().await.unwrap();
        self.chain().channel_at(id, head).await.unwrap()
    }

    /// The channel's paidOut once it reaches `expected`, or its last value after 10 s: a
    /// transaction sent without waiting for its receipt (redeem on shutdown) is mined by
    /// anvil shortly after the send returns.
    async fn paid_out_eventually(&self, id: B256, expected: U256) -> U256 {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let paid_out = self.on_chain(id).await.paid_out;
            if paid_out == expected || std::time::Instant::now() >= deadline {
                return paid_out;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn balance(&self, who: Address) -> U256 {
        self.upstream.balance(who).await.unwrap()
    }

    async fn increase_time(&self, secs: u64) {
        self.anvil.rpc("evm_increaseTime", json!([secs])).await;
        self.anvil.mine(1).await;
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn wait_receipt(anvil: &Anvil, hash: &Value) -> Value {
    for _ in 0..200 {
        let receipt = anvil.rpc("eth_getTransactionReceipt", json!([hash])).await;
        if !receipt.is_null() {
            return receipt;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no receipt for {hash}");
}

fn client(n: u8) -> NodeId {
    B256::repeat_byte(n)
}

fn rate(num: u64, den: u64) -> ExchangeRate {
    ExchangeRate { num, den }
}

fn wei(n: u64) -> U256 {
    U256::from(n)
}

async fn pay(
    receiver: &ChannelReceiver,
    who: NodeId,
    proof: &[u8],
) -> Result<Receipt, PaymentError> {
    receiver.receive(who, proof, SystemTime::now()).await
}

/// Everything a rejection must leave alone.
#[derive(Debug, PartialEq, Eq)]
struct State {
    pos: Vec<(NodeId, u64)>,
    log: Vec<LogEntry>,
    channels: Vec<(B256, lesd::pay::ledger::ChannelRecord)>,
}

fn state(ledger: &Ledger) -> State {
    State {
        pos: ledger.positive_balances().unwrap(),
        log: ledger.log(0, usize::MAX).unwrap(),
        channels: ledger.channels().unwrap(),
    }
}

fn rejected(result: Result<Receipt, PaymentError>) -> Rejection {
    match result {
        Err(PaymentError::Rejected(rejection)) => {
            assert_eq!(PaymentError::Rejected(rejection.clone()).code(), ErrorCode::Rejected);
            rejection
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn check_17_lower_cheque_rejected_equal_cheque_acknowledged_without_credit() {
    let net = Devnet::start("c17").await;
    let ledger = net.ledger();
    let receiver = net.receiver(&ledger, rate(1, 1));
    let id = net.open(wei(ETHER)).await;
    let first = pay(&receiver, client(1), &net.proof(id, wei(5_000))).await.unwrap();
    assert_eq!((first.credited, first.balance), (5_000, 5_000));
    assert_eq!(ChannelReceipt::decode(&first.reply).unwrap().accepted_cumulative, wei(5_000));
    let before = state(&ledger);

    let lower = rejected(pay(&receiver, client(1), &net.proof(id, wei(4_999))).await);
    assert!(matches!(lower, Rejection::Stale { .. }), "{lower}");
    assert!(lower.to_string().starts_with("check 4"));
    assert_eq!(state(&ledger), before);

    let equal = pay(&receiver, client(1), &net.proof(id, wei(5_000))).await.unwrap();
    assert_eq!((equal.credited, equal.balance), (0, 5_000));
    assert_eq!(ChannelReceipt::decode(&equal.reply).unwrap().accepted_cumulative, wei(5_000));
    assert_eq!(state(&ledger), before, "a duplicate writes nothing");
}

#[tokio::test]
async fn check_18_wrong_signer_chain_contract_channel_payee_or_high_s_rejected() {
    let net = Devnet::start("c18").await;
    let ledger = net.ledger();
    let receiver = net.receiver(&ledger, rate(1, 1));
    let id = net.open(wei(ETHER)).await;
    let other_channel = net.open(wei(ETHER)).await;
    let cumulative = wei(1_000);
    pay(&receiver, client(1), &net.proof(id, wei(10))).await.unwrap();
    let before = state(&ledger);
    let payee = net.payee.address();
    let stranger = NodeKey::random().unwrap();

    // Wrong signer.
    let r = rejected(
        pay(
            &receiver,
            client(1),
            &net.proof_with(id, id, payee, cumulative, &stranger, &net.domain()),
        )
        .await,
    );
    assert!(
        matches!(r, Rejection::WrongSigner { recovered, .. } if recovered == key_address(&stranger))
    );
    // Wrong chain id in the domain.
    let domain = ChequeDomain { chain_id: 1, ..net.domain() };
    let r = rejected(
        pay(&receiver, client(1), &net.proof_with(id, id, payee, cumulative, &net.payer, &domain))
            .await,
    );
    assert!(matches!(r, Rejection::WrongSigner { .. }), "{r}");
    // Wrong contract in the domain.
    let domain = ChequeDomain { contract: Address::repeat_byte(0x42), ..net.domain() };
    let r = rejected(
        pay(&receiver, client(1), &net.proof_with(id, id, payee, cumulative, &net.payer, &domain))
            .await,
    );
    assert!(matches!(r, Rejection::WrongSigner { .. }), "{r}");
    // A cheque for another channel of the same payer, presented for this one.
    let r = rejected(
        pay(
            &receiver,
            client(1),
            &net.proof_with(id, other_channel, payee, cumulative, &net.payer, &net.domain()),
        )
        .await,
    );
    assert!(matches!(r, Rejection::WrongSigner { .. }), "{r}");
    // A channel id that does not exist.
    let r = rejected(pay(&receiver, client(1), &net.proof(B256::repeat_byte(7), cumulative)).await);
    assert!(matches!(r, Rejection::UnknownChannel { .. }), "{r}");
    // A cheque naming another payee, on our channel.
    let r = rejected(
        pay(
            &receiver,
            client(1),
            &net.proof_with(id, id, Address::repeat_byte(9), cumulative, &net.payer, &net.domain()),
        )
        .await,
    );
    assert!(matches!(r, Rejection::WrongSigner { .. }), "{r}");
    // A channel paying someone else, with a cheque that is valid for it.
    let elsewhere = net.open_to(address(DEV_ADDRESS_0), wei(ETHER), LIFETIME).await;
    let proof = net.proof_with(
        elsewhere,
        elsewhere,
        address(DEV_ADDRESS_0),
        cumulative,
        &net.payer,
        &net.domain(),
    );
    let r = rejected(pay(&receiver, client(1), &proof).await);
    assert!(matches!(r, Rejection::WrongPayee { .. }), "{r}");
    // The high-s twin of a valid signature: s' = n - s, v flipped.
    let good = Cheque { channel_id: id, payee, cumulative }.sign(&net.payer, &net.domain());
    let n = U256::from_str("0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141")
        .unwrap();
    let s = U256::from_be_slice(&good.0[32..64]);
    let mut twin = good.0;
    twin[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
    twin[64] = if good.0[64] == 27 { 28 } else { 27 };
    let proof = ChannelProof { channel_id: id, cumulative, signature: ChequeSignature(twin) };
    let r = rejected(pay(&receiver, client(1), &proof.encode()).await);
    assert_eq!(r, Rejection::BadSignature(ChequeError::HighS));

    assert_eq!(state(&ledger), before, "no rejection changed anything");
    // The same cheque, properly signed, is still good.
    let ok = pay(&receiver, client(1), &net.proof(id, cumulative)).await.unwrap();
    assert_eq!(ok.credited, 990);
}

#[tokio::test]
async fn check_18_a_delegated_signer_pays_and_the_payers_own_cheque_is_refused() {
    let net = Devnet::start("c18d").await;
    let ledger = net.ledger();
    let receiver = net.receiver(&ledger, rate(1, 1));
    let payee = net.payee.address();
    // A session key as a wallet-funded client holds it: it never needs gas money.
    let session = NodeKey::random().unwrap();
    let signer = key_address(&session);
    let id = net.open_signed_by(payee, signer, wei(ETHER), LIFETIME).await;
    let chain = net.on_chain(id).await;
    assert_eq!((chain.payer, chain.signer), (net.payer_address, signer));
    assert_ne!(chain.payer, chain.signer);

    // The payer funded the channel, but its signature is not the one the contract checks.
    let before = state(&ledger);
    let by_payer = net.proof_with(id, id, payee, wei(1_000), &net.payer, &net.domain());
    let r = rejected(pay(&receiver, client(1), &by_payer).await);
    assert_eq!(r, Rejection::WrongSigner { recovered: net.payer_address, signer });
    assert!(r.to_string().starts_with("check 3"), "{r}");
    assert_eq!(state(&ledger), before, "a rejection changes nothing");
    assert!(ledger.channel(id).unwrap().is_none());

    let cumulative = wei(ETHER / 10);
    let by_session = net.proof_with(id, id, payee, cumulative, &session, &net.domain());
    let accepted = pay(&receiver, client(1), &by_session).await.unwrap();
    assert_eq!(accepted.credited, ETHER / 10);
    // What lesd stored is what the contract pays out on.
    let record = ledger.channel(id).unwrap().unwrap();
    let redeem = redeemCall { id, cumulative, sig: Bytes::copy_from_slice(&record.signature) };
    let receipt =
        net.send(address(DEV_ADDRESS_0), net.contract, U256::ZERO, redeem.abi_encode()).await;
    assert_eq!(receipt["status"], "0x1", "{receipt}");
    assert_eq!(net.on_chain(id).await.paid_out, cumulative);
}

#[tokio::test]
async fn check_18_binding_a_channel_belongs_to_the_first_client() {
    let net = Devnet::start("bind").await;
    let ledger = net.ledger();
    let receiver = net.receiver(&ledger, rate(1, 1));
    let id = net.open(wei(ETHER)).await;
    pay(&receiver, client(1), &net.proof(id, wei(100))).await.unwrap();
    let before = state(&ledger);
    let r = rejected(pay(&receiver, client(2), &net.proof(id, wei(200))).await);
    assert_eq!(r, Rejection::BoundToAnotherClient { owner: client(1) });
    assert_eq!(r.to_string(), format!("channel bound to another client ({})", client(1)));
    assert_eq!(state(&ledger), before);
    // Malformed proofs are code 2.
    let error = pay(&receiver, client(1), &[0xc0]).await.unwrap_err();
    assert_eq!(error.code(), ErrorCode::BadProof);
}

#[tokio::test]
async fn check_19_cheque_above_deposit_rejected_then_accepted_after_top_up() {
    let net = Devnet::start("c19").await;
    let ledger = net.ledger();
    let receiver = net.receiver(&ledger, rate(1, 1));
    let deposit = wei(1_000_000);
    let id = net.open(deposit).await;
    // Fill the cache with a read of this channel.
    pay(&receiver, client(1), &net.proof(id, wei(10))).await.unwrap();
    let before = state(&ledger);
    let above = net.proof(id, wei(1_500_000));
    let r = rejected(pay(&receiver, client(1), &above).await);
    assert_eq!(r, Rejection::AboveDeposit { cumulative: wei(1_500_000), deposit });
    assert_eq!(state(&ledger), before);
    // Exactly the deposit is fine on another channel; here, top up and resend the same cheque.
    net.top_up(id, wei(600_000)).await;
    let accepted = pay(&receiver, client(1), &above).await.unwrap();
    assert_eq!(accepted.credited, 1_500_000 - 10);
    assert_eq!(ledger.channel(id).unwrap().unwrap().deposit, wei(1_600_000));
}

#[tokio::test]
async fn check_20_conversion_is_exact_for_any_split() {
    let net = Devnet::start("c20").await;
    let ledger = net.ledger();
    let r = rate(7, 3);
    let receiver = net.receiver(&ledger, r);
    let splits: [&[u64]; 3] = [
        &[1, 2, 4, 5, 11, 13, 100, 1_001, 1_003, 99_999, 1_000_000_007],
        &[1_000_000_007],
        &[2, 3, 8, 9, 10, 14, 1_000_000_006, 1_000_000_007],
    ];
    let mut grand_total = 0u64;
    for (n, split) in splits.iter().enumerate() {
        let id = net.open(wei(2_000_000_000)).await;
        let who = client(10 + n as u8);
        let mut credited = 0u64;
        for cumulative in split.iter() {
            credited +=
                pay(&receiver, who, &net.proof(id, wei(*cumulative))).await.unwrap().credited;
        }
        let last = *split.last().unwrap();
        let expected = U256::from(last) * U256::from(7) / U256::from(3);
        assert_eq!(U256::from(credited), expected, "split {split:?}");
        assert_eq!(ledger.positive(who).unwrap(), credited);
        assert_eq!(ledger.channel(id).unwrap().unwrap().credited_total, credited);
        grand_total += credited;
    }
    let logged: u64 = ledger.log(0, usize::MAX).unwrap().iter().map(|e| e.credited).sum();
    assert_eq!(logged, grand_total);
}

#[tokio::test]
async fn check_21_cheque_inside_accept_margin_rejected() {
    let net = Devnet::start("c21").await;
    let ledger = net.ledger();
    let receiver = net.receiver(&ledger, rate(1, 1));
    let id = net.open(wei(ETHER)).await;
    pay(&receiver, client(1), &net.proof(id, wei(10))).await.unwrap();
    let before = state(&ledger);
    // Move chain time to 10 s inside the margin (the wall clock stays behind).
    let expiry = net.on_chain(id).await.expiry;
    let now = net.head_time().await;
    net.increase_time(expiry - now - ACCEPT_MARGIN + 10).await;
    let r = rejected(pay(&receiver, client(1), &net.proof(id, wei(20))).await);
    assert!(matches!(r, Rejection::ExpiresTooSoon { margin_secs: ACCEPT_MARGIN, .. }), "{r}");
    assert!(r.to_string().starts_with("check 2"));
    assert_eq!(state(&ledger), before);
}

#[tokio::test]
async fn check_22_ledger_reopen_keeps_last_accepted_pos_and_log_and_resend_credits_nothing() {
    let net = Devnet::start("c22").await;
    let id = net.open(wei(ETHER)).await;
    let proofs: Vec<Vec<u8>> = [1u64, 7, 999_999].iter().map(|c| net.proof(id, wei(*c))).collect();
    let (before, last_reply) = {
        let ledger = net.ledger();
        let receiver = net.receiver(&ledger, rate(1, 1));
        let mut reply = None;
        for proof in &proofs {
            reply = Some(pay(&receiver, client(3), proof).await.unwrap());
        }
        (state(&ledger), reply.unwrap())
        // Ledger, receiver and sink dropped here without any shutdown step.
    };
    assert_eq!(last_reply.balance, 999_999, "credits below 1e6 tokens are kept");
    let ledger = net.ledger();
    assert_eq!(state(&ledger), before);
    assert_eq!(ledger.positive(client(3)).unwrap(), 999_999);
    assert_eq!(ledger.channel(id).unwrap().unwrap().last_accepted, wei(999_999));
    let log = ledger.log(0, usize::MAX).unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(log[2].reference, PaymentReference::Channel { id, cumulative: wei(999_999) });
    let receiver = net.receiver(&ledger, rate(1, 1));
    let resent = pay(&receiver, client(3), proofs.last().unwrap()).await.unwrap();
    assert_eq!((resent.credited, resent.balance), (0, 999_999));
    assert_eq!(state(&ledger), before);
}

fn redeem_config() -> RedeemConfig {
    RedeemConfig {
        gas_multiple: 20,
        redeem_margin: Duration::from_secs(1800),
        expected_gas: 100_000,
        interval: Duration::from_secs(3600),
        resubmit_after: Duration::from_secs(60),
        redeem_on_shutdown: false,
        wait_timeout: Duration::from_secs(30),
    }
}

#[tokio::test]
async fn check_23_24_redeem_pays_the_cheque_and_tokens_equal_rate_times_wei() {
    let net = Devnet::start("c23").await;
    let ledger = net.ledger();
    let r = rate(7, 3);
    let receiver = net.receiver(&ledger, r);
    let deposit = wei(ETHER);
    let id = net.open(deposit).await;
    let mut redeemer =
        Redeemer::new(redeem_config(), ledger.clone(), net.chain(), net.payee.clone());

    // Small value: below k × gas cost, nothing is scheduled.
    pay(&receiver, client(4), &net.proof(id, wei(1_000))).await.unwrap();
    let events = redeemer.tick(SystemTime::now()).await.unwrap();
    assert!(events.is_empty(), "{events:?}");
    // 0.3 ether is far above 20 × 100k gas × a few gwei: the value rule schedules it.
    let cumulative = wei(ETHER / 10 * 3 + 13);
    pay(&receiver, client(4), &net.proof(id, cumulative)).await.unwrap();
    let payee_before = net.balance(net.payee.address()).await;
    let events = redeemer.tick(SystemTime::now()).await.unwrap();
    assert_eq!(events[0], RedeemEvent::Scheduled { id, reason: RedeemReason::Value });
    assert!(matches!(events[1], RedeemEvent::Submitted { attempt: 1, .. }), "{events:?}");
    // The task and the operator's handle see it through.
    let (handle, task) = redeemer.spawn();
    let event = handle.redeem_now(id).await.unwrap();
    let RedeemEvent::Redeemed { paid_out, tx: Some(tx), .. } = event else {
        panic!("expected our redemption, got {event:?}");
    };
    let chain = net.on_chain(id).await;
    assert_eq!(chain.paid_out, cumulative.min(deposit));
    assert_eq!(paid_out, chain.paid_out);
    assert!(tx.success);
    assert_eq!(net.balance(net.payee.address()).await, payee_before + chain.paid_out - tx.fee());
    let record = ledger.channel(id).unwrap().unwrap();
    assert_eq!(record.redeemed, chain.paid_out);
    assert!(record.unredeemed().is_zero());
    assert!(handle.status().unwrap().iter().all(|s| s.pending_tx.is_none()));
    // 24: tokens credited == R × the wei redeemable for this client.
    assert_eq!(U256::from(record.credited_total), r.tokens(chain.paid_out).unwrap());
    assert_eq!(ledger.positive(client(4)).unwrap(), record.credited_total);
    // Nothing left: the operator's request says so.
    assert!(matches!(handle.redeem_now(id).await, Err(RedeemError::NothingToRedeem(_))));

    // 23: the same cheque again reverts; reclaim before expiry reverts.
    let same = redeemCall { id, cumulative, sig: Bytes::copy_from_slice(&record.signature) };
    assert!(net.call(address(DEV_ADDRESS_0), same.abi_encode()).await.is_err());
    assert!(net.call(net.payer_address, reclaimCall { id }.abi_encode()).await.is_err());
    // After expiry the payer gets deposit - paidOut: value is conserved.
    net.increase_time(LIFETIME + 1).await;
    let receipt = net
        .send(net.payer_address, net.contract, U256::ZERO, reclaimCall { id }.abi_encode())
        .await;
    assert_eq!(receipt["status"], "0x1", "{receipt}");
    let log = &receipt["logs"][0];
    let closed = Closed::abi_decode_data(&hex_bytes(&log["data"])).unwrap();
    assert_eq!(closed.0, chain.paid_out);
    assert_eq!(closed.1, deposit - chain.paid_out);
    assert_eq!(deposit, closed.0 + closed.1);
    handle.shutdown().await;
    task.await.unwrap();
}

#[tokio::test]
async fn check_25_redeem_scheduled_inside_margin_and_pending_survives_restart() {
    let net = Devnet::start("c25").await;
    let id = net.open(wei(ETHER)).await;
    let cumulative = wei(12_345);
    // The value rule never fires here: only the expiry margin can schedule.
    let config = RedeemConfig { gas_multiple: u64::MAX, ..redeem_config() };
    let expiry;
    {
        let ledger = net.ledger();
        let receiver = net.receiver(&ledger, rate(1, 1));
        pay(&receiver, client(5), &net.proof(id, cumulative)).await.unwrap();
        expiry = ledger.channel(id).unwrap().unwrap().expiry;
        let mut redeemer =
            Redeemer::new(config.clone(), ledger.clone(), net.chain(), net.payee.clone());
        assert!(redeemer.tick(SystemTime::now()).await.unwrap().is_empty());
        // Chain time to 100 s inside the redeem margin.
        let now = net.head_time().await;
        net.increase_time(expiry - now - 1800 + 100).await;
        // The transaction is sent but not mined, and then lost from the node's pool.
        net.anvil.rpc("evm_setAutomine", json!([false])).await;
        let events = redeemer.tick(SystemTime::now()).await.unwrap();
        assert_eq!(events[0], RedeemEvent::Scheduled { id, reason: RedeemReason::Expiry });
        assert!(
            matches!(events[1], RedeemEvent::Submitted { id: sent, attempt: 1, .. } if sent == id),
            "{events:?}"
        );
        let pending = ledger.pending_redemption(id).unwrap().unwrap();
        assert!(!pending.tx_hash.is_zero());
        net.anvil.rpc("anvil_dropAllTransactions", json!([])).await;
        // Crash: everything dropped.
    }
    net.anvil.rpc("evm_setAutomine", json!([true])).await;
    assert!(net.on_chain(id).await.paid_out.is_zero());
    let ledger = net.ledger();
    let pending = ledger.pending_redemption(id).unwrap().expect("pending survives the restart");
    assert_eq!(pending.cumulative, cumulative);
    assert_eq!(pending.reason, RedeemReason::Expiry as u8);
    let mut redeemer = Redeemer::new(config, ledger.clone(), net.chain(), net.payee.clone());
    let events = redeemer.tick(SystemTime::now()).await.unwrap();
    assert!(matches!(events.as_slice(), [RedeemEvent::Submitted { attempt: 2, .. }]), "{events:?}");
    // anvil mines the resent transaction shortly after the send returns: until then a tick
    // answers Waiting (bounded, so a redemption that never lands still fails).
    let mut events = redeemer.tick(SystemTime::now()).await.unwrap();
    for _ in 0..100 {
        if !matches!(events.as_slice(), [RedeemEvent::Waiting { .. }]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        events = redeemer.tick(SystemTime::now()).await.unwrap();
    }
    let [RedeemEvent::Redeemed { paid_out, tx: Some(tx), .. }] = events.as_slice() else {
        panic!("expected the redemption, got {events:?}");
    };
    assert_eq!(*paid_out, cumulative);
    let block =
        net.anvil.rpc("eth_getBlockByNumber", json!([format!("{:#x}", tx.block), false])).await;
    let mined_at = common::quantity(&block["timestamp"]);
    assert!(mined_at < expiry, "redeemed at {mined_at}, expiry {expiry}");
    assert!(mined_at >= expiry - 1800, "not scheduled before entering the margin");
    assert_eq!(net.on_chain(id).await.paid_out, cumulative);
    assert!(ledger.pending_redemption(id).unwrap().is_none());
}

#[tokio::test]
async fn check_25_server_offline_at_expiry_loses_only_the_unredeemed_cheque() {
    let net = Devnet::start("c25b").await;
    let ledger = net.ledger();
    let receiver = net.receiver(&ledger, rate(1, 1));
    let deposit = wei(1_000_000);
    let id = net.open(deposit).await;
    let cumulative = wei(400_000);
    pay(&receiver, client(6), &net.proof(id, cumulative)).await.unwrap();
    // The server was away past the expiry; the payer reclaims everything.
    net.increase_time(LIFETIME + 1).await;
    let receipt = net
        .send(net.payer_address, net.contract, U256::ZERO, reclaimCall { id }.abi_encode())
        .await;
    assert_eq!(receipt["status"], "0x1", "{receipt}");
    let closed = Closed::abi_decode_data(&hex_bytes(&receipt["logs"][0]["data"])).unwrap();
    assert_eq!((closed.0, closed.1), (U256::ZERO, deposit));
    let mut redeemer =
        Redeemer::new(redeem_config(), ledger.clone(), net.chain(), net.payee.clone());
    let payee_before = net.balance(net.payee.address()).await;
    match redeemer.redeem_now(id).await {
        Err(RedeemError::Unredeemable { lost, .. }) => assert_eq!(lost, cumulative),
        other => panic!("expected the documented loss, got {other:?}"),
    }
    // Nothing worse: no transaction was sent, no gas spent, the credit stays as it was.
    assert_eq!(net.balance(net.payee.address()).await, payee_before);
    assert!(ledger.pending_redemption(id).unwrap().is_none());
    assert_eq!(ledger.positive(client(6)).unwrap(), 400_000);
}

#[tokio::test]
async fn check_19_channel_and_top_up_count_only_after_their_confirmations() {
    let net = Devnet::start("c19conf").await;
    let ledger = net.ledger();
    let receiver = net.receiver_with(&ledger, rate(1, 1), 2);
    let id = net.open(wei(1_000)).await;
    let before = state(&ledger);
    let r = rejected(pay(&receiver, client(1), &net.proof(id, wei(10))).await);
    assert!(matches!(r, Rejection::UnknownChannel { confirmations: 2, .. }), "{r}");
    assert_eq!(state(&ledger), before);
    net.anvil.mine(2).await;
    assert_eq!(pay(&receiver, client(1), &net.proof(id, wei(10))).await.unwrap().credited, 10);
    // A top-up in the latest block is not counted yet; two blocks later it is.
    net.top_up(id, wei(1_000)).await;
    let above = net.proof(id, wei(1_500));
    let r = rejected(pay(&receiver, client(1), &above).await);
    assert_eq!(r, Rejection::AboveDeposit { cumulative: wei(1_500), deposit: wei(1_000) });
    net.anvil.mine(2).await;
    assert_eq!(pay(&receiver, client(1), &above).await.unwrap().credited, 1_490);
}

#[tokio::test]
async fn redeem_resends_a_stuck_transaction_with_higher_fees_at_the_same_nonce() {
    let net = Devnet::start("resend").await;
    let ledger = net.ledger();
    let receiver = net.receiver(&ledger, rate(1, 1));
    let id = net.open(wei(ETHER)).await;
    let cumulative = wei(777_777);
    pay(&receiver, client(7), &net.proof(id, cumulative)).await.unwrap();
    let mut redeemer =
        Redeemer::new(redeem_config(), ledger.clone(), net.chain(), net.payee.clone());
    net.anvil.rpc("evm_setAutomine", json!([false])).await;
    redeemer.schedule(id, RedeemReason::Operator, SystemTime::now()).unwrap();
    let events = redeemer.tick(SystemTime::now()).await.unwrap();
    assert!(matches!(events.as_slice(), [RedeemEvent::Submitted { attempt: 1, .. }]), "{events:?}");
    let first = ledger.pending_redemption(id).unwrap().unwrap();
    // Still within resubmit_after: it waits.
    let events = redeemer.tick(SystemTime::now()).await.unwrap();
    assert_eq!(events, vec![RedeemEvent::Waiting { id, tx: first.tx_hash }]);
    // Later: the same nonce, a quarter more in fees, a new hash.
    let later = SystemTime::now() + Duration::from_secs(61);
    let events = redeemer.tick(later).await.unwrap();
    assert!(matches!(events.as_slice(), [RedeemEvent::Submitted { attempt: 2, .. }]), "{events:?}");
    let second = ledger.pending_redemption(id).unwrap().unwrap();
    assert_eq!(second.nonce, first.nonce);
    assert_ne!(second.tx_hash, first.tx_hash);
    assert!(second.max_fee_per_gas >= first.max_fee_per_gas + first.max_fee_per_gas / 4);
    assert!(
        second.max_priority_fee_per_gas
            >= first.max_priority_fee_per_gas + first.max_priority_fee_per_gas / 4
    );
    net.anvil.mine(1).await;
    net.anvil.rpc("evm_setAutomine", json!([true])).await;
    let events = redeemer.tick(later).await.unwrap();
    let [RedeemEvent::Redeemed { paid_out, tx: Some(tx), .. }] = events.as_slice() else {
        panic!("expected the redemption, got {events:?}");
    };
    assert_eq!((*paid_out, tx.hash), (cumulative, second.tx_hash));
    assert_eq!(net.on_chain(id).await.paid_out, cumulative);
}

#[tokio::test]
async fn redeem_on_shutdown_sends_every_unredeemed_cheque() {
    let net = Devnet::start("shutdown").await;
    let ledger = net.ledger();
    let receiver = net.receiver(&ledger, rate(1, 1));
    let a = net.open(wei(ETHER)).await;
    let b = net.open(wei(ETHER)).await;
    pay(&receiver, client(8), &net.proof(a, wei(1_111))).await.unwrap();
    pay(&receiver, client(9), &net.proof(b, wei(2_222))).await.unwrap();
    let config = RedeemConfig { redeem_on_shutdown: true, ..redeem_config() };
    let (handle, task) =
        Redeemer::new(config.clone(), ledger.clone(), net.chain(), net.payee.clone()).spawn();
    handle.shutdown().await;
    task.await.unwrap();
    assert_eq!(net.paid_out_eventually(a, wei(1_111)).await, wei(1_111));
    assert_eq!(net.paid_out_eventually(b, wei(2_222)).await, wei(2_222));
    // The next start sees the payouts and clears the pending entries.
    assert_eq!(ledger.pending_redemptions().unwrap().len(), 2);
    let mut redeemer = Redeemer::new(config, ledger.clone(), net.chain(), net.payee.clone());
    let events = redeemer.tick(SystemTime::now()).await.unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|e| matches!(e, RedeemEvent::Redeemed { tx: Some(_), .. })));
    assert!(ledger.pending_redemptions().unwrap().is_empty());
}
