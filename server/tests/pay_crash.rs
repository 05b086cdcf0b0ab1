//! Research §8 check 22 (crash safety) and the end-to-end half of check 24 (value is
//! conserved) with the real `lesd` binary in a child process: a client pays with channel
//! cheques over lespay/1, lesd is killed with SIGKILL right after the last acknowledgement,
//! restarted on the same datadir and ports, and its admin API and the chain must show exactly
//! what the acknowledgements said — then an on-chain redemption must pay the payee exactly the
//! wei those credits were converted from.
//!
//! Everything is real: anvil, the PaymentChannel contract from
//! contracts/artifacts/PaymentChannel.json, lesd's payment ledger on disk, TCP on 127.0.0.1.
//! Every positive-balance price is 0 (`--price-pos-*`), so a client's positive balance
//! changes only by payments and the comparisons below are exact rather than up to the time
//! charges that accrue while it is connected. `--checkpoint-secs 3600` keeps the periodic
//! balance checkpoint from running during the test: only the credit's own ledger batch can
//! have saved what the acknowledgement promised.

mod common;
#[path = "common/pay/mod.rs"]
mod pay_support;

use alloy_primitives::{Address, B256, U256};
use common::{Anvil, temp_dir};
use les::crypto::{Enode, NodeId, NodeKey};
use les::pay::cheque::{Cheque, ChequeDomain, key_address};
use les::pay::messages::{ChannelProof, ChannelReceipt, ExchangeRate, LespayMessage, PriceFactors};
use pay_support::channel::{self, balance_of, head_time, hex};
use pay_support::client::{PayChain, PayClient};
use serde_json::{Value, json};
use std::io::BufRead;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::mpsc;
use std::time::Duration;

/// Tokens per wei: awkward on purpose, so every conversion rounds.
const RATE: ExchangeRate = ExchangeRate { num: 7, den: 3 };
/// The channel's deposit: far above what the cheques add up to. Those stay far below the
/// unredeemed value at which lesd's redeemer would redeem on its own (20 × a redeem's gas
/// cost, about 2·10^15 wei on anvil), so the only redemption is the one a test asks for.
const DEPOSIT_WEI: u64 = 1_000_000_000_000;
/// How long lesd may take to print its enode (fail instead of hanging).
const STARTUP: Duration = Duration::from_secs(60);
/// One ether, for the payee's gas.
const ETHER_HEX: &str = "0xde0b6b3a7640000";

/// The cumulative amounts (wei) of the cheques sent before the crash; each step is awkward
/// (none a multiple of 3), one credits fewer than 1e6 tokens and the last only a few.
const CUMULATIVES: [u64; 4] = [
    1_000_000_007,
    1_000_000_007 + 123_457,                     // 288_066 tokens: below 1e6
    1_000_000_007 + 123_457 + 2_718_281_829,     // a few billion tokens
    1_000_000_007 + 123_457 + 2_718_281_829 + 1, // 2 or 3 tokens
];
/// The increment of the cheque sent after the restart.
const AFTER_RESTART_STEP: u64 = 314_159;

/// floor(wei × R), the tokens a cumulative amount is worth (computed here, not with the
/// library's conversion that lesd uses).
fn worth(wei: U256) -> U256 {
    wei * U256::from(RATE.num) / U256::from(RATE.den)
}

/// What a channel cheque moving the cumulative from `last` to `cumulative` must credit.
fn expected_credit(last: U256, cumulative: U256) -> u64 {
    u64::try_from(worth(cumulative) - worth(last)).expect("fits u64")
}

/// Two distinct ports the OS considers free now (lesd binds them itself, twice: before and
/// after the crash).
fn free_ports() -> (u16, u16) {
    let bind = || TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    // Both held at once, so they differ.
    let (a, b) = (bind(), bind());
    let port = |l: &TcpListener| l.local_addr().expect("local address").port();
    (port(&a), port(&b))
}

/// Attempts at starting lesd on fresh ports (another process may grab the ones we picked).
const PORT_ATTEMPTS: usize = 5;

/// The command line both runs of lesd share.
struct LesdArgs {
    upstream: String,
    datadir: PathBuf,
    listen: SocketAddr,
    admin: SocketAddr,
    contract: Address,
    payee_key: PathBuf,
    log: PathBuf,
}

/// A running `lesd` binary; killed (SIGKILL) when dropped.
struct Lesd {
    child: Child,
    enode: Enode,
    admin: SocketAddr,
    log: PathBuf,
}

impl Lesd {
    /// Starts the binary and waits for the enode line on its stdout; panics with its log if
    /// it does not come.
    fn start(args: &LesdArgs) -> Self {
        Self::try_start(args).unwrap_or_else(|error| panic!("{error}"))
    }

    /// Starts the binary; Err (with lesd's log) if it exits or prints no enode in time.
    fn try_start(args: &LesdArgs) -> Result<Self, String> {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&args.log)
            .expect("lesd log file");
        let rate = format!("{}/{}", RATE.num, RATE.den);
        let mut child = Command::new(env!("CARGO_BIN_EXE_lesd"))
            .args(["--upstream", &args.upstream])
            .arg("--datadir")
            .arg(&args.datadir)
            .args(["--listen", &args.listen.to_string()])
            .args(["--admin", &args.admin.to_string()])
            .args(["--channel-contract", &args.contract.to_string()])
            .arg("--payee-key")
            .arg(&args.payee_key)
            .args(["--tokens-per-wei", &rate])
            .args(["--accept-margin-secs", "60", "--redeem-margin-secs", "3600"])
            .args(["--confirmations", "0", "--checkpoint-secs", "3600"])
            // Positive balances change only by payments (see the module docs).
            .args(["--price-pos-time", "0", "--price-pos-capacity", "0"])
            .args(["--price-pos-request", "0"])
            .args(["--free-id", "node", "--poll-interval-ms", "100"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("lesd starts");
        let stdout = child.stdout.take().expect("stdout");
        let (lines, first) = mpsc::channel();
        // Read the enode line, then keep draining so lesd never writes into a closed pipe.
        std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = lines.send(line);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = match first.recv_timeout(STARTUP) {
            Ok(line) if !line.trim().is_empty() => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "lesd printed no enode ({other:?}); its log:\n{}",
                    std::fs::read_to_string(&args.log).unwrap_or_default()
                ));
            }
        };
        let enode = Enode::from_str(line.trim()).expect("an enode URL");
        assert_eq!(enode.port, args.listen.port(), "lesd listens where it was told");
        Ok(Self { child, enode, admin: args.admin, log: args.log.clone() })
    }

    /// SIGKILL (what `Child::kill` sends on unix): no shutdown code runs.
    fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL lesd");
        let status = self.child.wait().expect("reap lesd");
        assert!(!status.success(), "lesd was killed, not exited: {status}");
    }

    /// One admin JSON-RPC call; its result (panics on a JSON-RPC error).
    async fn admin(&self, method: &str, params: Value) -> Value {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let response: Value = reqwest::Client::new()
            .post(format!("http://{}/", self.admin))
            .timeout(Duration::from_secs(60))
            .json(&body)
            .send()
            .await
            .expect("admin endpoint reachable")
            .json()
            .await
            .expect("a JSON answer");
        assert!(
            response.get("error").is_none(),
            "{method}: {response}; lesd log: {}",
            self.log.display()
        );
        response["result"].clone()
    }
}

impl Drop for Lesd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A decimal-string integer from the admin API.
fn number(value: &Value) -> u64 {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a decimal string: {value}"))
}

/// A decimal-string U256 from the admin API.
fn wei(value: &Value) -> U256 {
    value
        .as_str()
        .and_then(|s| U256::from_str_radix(s, 10).ok())
        .unwrap_or_else(|| panic!("not a decimal string: {value}"))
}

/// One PayReply, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ack {
    credited: u64,
    balance: u64,
    accepted: U256,
}

/// The paying side: the channel, the key its cheques are signed with (the session key the
/// payer named as the channel's signer, as a wallet-funded client does) and the server's
/// cheque domain.
struct Payer {
    key: NodeKey,
    channel: B256,
    payee: Address,
    domain: ChequeDomain,
}

impl Payer {
    /// Sends a cheque for `cumulative` and waits for its PayReply.
    async fn pay(&self, client: &mut PayClient, cumulative: U256) -> Ack {
        let cheque = Cheque { channel_id: self.channel, payee: self.payee, cumulative };
        let signature = cheque.sign(&self.key, &self.domain);
        let proof = ChannelProof { channel_id: self.channel, cumulative, signature }.encode();
        let reply = client
            .call(|req_id| LespayMessage::Pay { req_id, receiver: "channel".into(), proof })
            .await;
        let LespayMessage::PayReply { credited, balance, receipt, .. } = reply else {
            panic!("not a PayReply: {reply:?}")
        };
        let accepted =
            ChannelReceipt::decode(&receipt).expect("channel receipt").accepted_cumulative;
        Ack { credited, balance, accepted }
    }
}

/// lesd after the crash, with everything the tests compare against.
struct Crashed {
    anvil: Anvil,
    lesd: Lesd,
    chain: PayChain,
    contract: Address,
    payer: Payer,
    client_key: NodeKey,
    client_id: NodeId,
    /// The acknowledgements, in order.
    acks: Vec<Ack>,
    /// `les_paymentLog` read before the last cheque was sent.
    log_before_last: Vec<Value>,
    dir: PathBuf,
}

/// Sets up anvil, the contract, a channel and lesd; pays the [`CUMULATIVES`] cheques (each
/// checked against the conversion formula), SIGKILLs lesd right after the last PayReply and
/// starts it again on the same datadir and ports.
async fn pay_then_kill_9_then_restart(name: &str) -> Crashed {
    let anvil = Anvil::spawn();
    let dir = temp_dir(name);
    let contract = channel::deploy(&anvil, 1).await;

    // The payee key, funded for the redeem's gas.
    let payee_key = NodeKey::random().expect("rng");
    let payee = key_address(&payee_key);
    let payee_key_file = dir.join("payee.key");
    std::fs::write(&payee_key_file, hex(&payee_key.to_bytes()).trim_start_matches("0x"))
        .expect("write payee key");
    anvil.rpc("anvil_setBalance", json!([payee.to_string(), ETHER_HEX])).await;

    // The payer (anvil's dev account 0) opens a channel to the payee for a week, its cheques
    // signed by a session key (so lesd checks them against the channel's signer, not its payer).
    let session = NodeKey::random().expect("rng");
    let expiry = head_time(&anvil).await + 7 * 24 * 3600;
    let channel_id = channel::open_channel_signed_by(
        &anvil,
        contract,
        payee,
        key_address(&session),
        U256::from(DEPOSIT_WEI),
        expiry,
    )
    .await;

    let mut args = LesdArgs {
        upstream: anvil.url().to_owned(),
        datadir: dir.join("datadir"),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin: SocketAddr::from(([127, 0, 0, 1], 0)),
        contract,
        payee_key: payee_key_file,
        log: dir.join("lesd.log"),
    };
    let mut attempts = 0;
    let mut lesd = loop {
        let (listen, admin) = free_ports();
        args.listen.set_port(listen);
        args.admin.set_port(admin);
        match Lesd::try_start(&args) {
            Ok(lesd) => break lesd,
            Err(error) => {
                attempts += 1;
                assert!(attempts < PORT_ATTEMPTS, "{error}");
            }
        }
    };
    let chain = PayChain::of_upstream(anvil.url()).await;
    let client_key = NodeKey::random().expect("rng");
    let client_id = les::crypto::node_id(&client_key.public_key());
    let mut client =
        PayClient::connect_to(&lesd.enode, &chain, client_key.clone()).await.expect("admitted");

    // The prices the exact comparisons rely on are the ones in force.
    let prices = match client.call(|req_id| LespayMessage::PriceQuery { req_id }).await {
        LespayMessage::PriceReply { prices, .. } => prices,
        other => panic!("not a PriceReply: {other:?}"),
    };
    assert_eq!(prices.pos_factors, PriceFactors { time: 0, capacity: 0, request: 0 });
    assert_eq!(prices.tokens_per_wei, RATE);
    let terms = prices.channel.expect("channel terms");
    assert_eq!((terms.contract, terms.payee), (contract, payee));
    let payer = Payer { key: session, channel: channel_id, payee, domain: terms.domain() };

    let mut acks = Vec::new();
    let mut last = U256::ZERO;
    let mut balance = 0u64;
    let mut log_before_last = Vec::new();
    for (i, &step) in CUMULATIVES.iter().enumerate() {
        let cumulative = U256::from(step);
        if i == CUMULATIVES.len() - 1 {
            let log = lesd.admin("les_paymentLog", json!([0, 100])).await;
            log_before_last = log.as_array().expect("log entries").clone();
            assert_eq!(log_before_last.len(), i, "one entry per credit so far");
        }
        let ack = payer.pay(&mut client, cumulative).await;
        let credit = expected_credit(last, cumulative);
        balance += credit;
        assert_eq!(ack, Ack { credited: credit, balance, accepted: cumulative }, "cheque {i}");
        acks.push(ack);
        last = cumulative;
    }
    // Right after the last acknowledgement: no shutdown, no checkpoint, no flush.
    lesd.kill_9();
    drop(client);
    assert!(
        acks.iter().any(|ack| ack.credited > 0 && ack.credited < 1_000_000),
        "one credit below 1e6 tokens: {acks:?}"
    );

    let lesd = Lesd::start(&args);
    Crashed {
        anvil,
        lesd,
        chain,
        contract,
        payer,
        client_key,
        client_id,
        acks,
        log_before_last,
        dir,
    }
}

impl Crashed {
    fn last_ack(&self) -> Ack {
        *self.acks.last().expect("acks")
    }

    fn id(&self) -> String {
        self.client_id.to_string()
    }

    /// The client again, with the same node key (the channel is bound to it).
    async fn reconnect(&self) -> PayClient {
        PayClient::connect_to(&self.lesd.enode, &self.chain, self.client_key.clone())
            .await
            .expect("admitted after the restart")
    }

    /// The restarted lesd's admin view of the channel.
    async fn channel_row(&self) -> Value {
        let channels = self.lesd.admin("les_channels", json!([])).await;
        let rows = channels.as_array().expect("channel rows");
        assert_eq!(rows.len(), 1, "{channels}");
        assert_eq!(rows[0]["id"], json!(self.payer.channel.to_string()));
        rows[0].clone()
    }

    fn cleanup(self) {
        let dir = self.dir.clone();
        drop(self);
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test]
async fn check_22_kill_9_right_after_an_acknowledgement_loses_nothing() {
    let crashed = pay_then_kill_9_then_restart("pay-crash-22").await;
    let last = crashed.last_ack();
    let lesd = &crashed.lesd;
    let id = crashed.id();

    // pos: what the last PayReply said, for the (now disconnected) client.
    let info = lesd.admin("les_clientInfo", json!([[id.clone()]])).await;
    assert_eq!(info[&id]["isConnected"], json!(false), "{info}");
    assert_eq!(number(&info[&id]["balance"]), last.balance, "pos survived the SIGKILL: {info}");

    // The payment log: the entries before the last cheque unchanged, plus exactly one for
    // the last acknowledgement.
    let log = lesd.admin("les_paymentLog", json!([0, 100])).await;
    let log = log.as_array().expect("log entries");
    assert_eq!(log.len(), crashed.acks.len(), "one entry per credit: {log:?}");
    assert_eq!(&log[..log.len() - 1], crashed.log_before_last.as_slice());
    for (entry, ack) in log.iter().zip(&crashed.acks) {
        assert_eq!(entry["node"], json!(id));
        assert_eq!(entry["receiver"], json!("channel"));
        assert_eq!(entry["reference"]["channel"], json!(crashed.payer.channel.to_string()));
        assert_eq!(wei(&entry["reference"]["cumulative"]), ack.accepted, "{entry}");
        assert_eq!(number(&entry["credited"]), ack.credited, "{entry}");
        assert_eq!(number(&entry["debited"]), 0, "{entry}");
        assert_eq!(number(&entry["balanceAfter"]), ack.balance, "{entry}");
    }

    // The channel: lastAccepted is the last acknowledged cumulative, nothing redeemed yet.
    let row = crashed.channel_row().await;
    assert_eq!(row["node"], json!(id));
    assert_eq!(wei(&row["lastAccepted"]), last.accepted);
    assert_eq!(wei(&row["redeemed"]), U256::ZERO);
    assert_eq!(wei(&row["unredeemed"]), last.accepted);
    assert_eq!(number(&row["creditedTotal"]), last.balance);

    // The client reconnects: the same balance on the wire.
    let mut client = crashed.reconnect().await;
    assert_eq!(client.balance().await.pos, last.balance);

    // The same last cheque again: acknowledged, nothing credited, nothing logged.
    let again = crashed.payer.pay(&mut client, last.accepted).await;
    assert_eq!(again, Ack { credited: 0, ..last }, "a duplicate credits nothing");
    // A higher one credits exactly floor(new·R) − floor(old·R).
    let higher = last.accepted + U256::from(AFTER_RESTART_STEP);
    let ack = crashed.payer.pay(&mut client, higher).await;
    let credit = expected_credit(last.accepted, higher);
    assert_eq!(ack, Ack { credited: credit, balance: last.balance + credit, accepted: higher });
    let log = lesd.admin("les_paymentLog", json!([0, 100])).await;
    assert_eq!(log.as_array().map(Vec::len), Some(crashed.acks.len() + 1), "{log}");
    drop(client);
    crashed.cleanup();
}

#[tokio::test]
async fn redemption_pays_exactly_what_was_credited() {
    let crashed = pay_then_kill_9_then_restart("pay-crash-24").await;
    let lesd = &crashed.lesd;
    let anvil = &crashed.anvil;

    // One more cheque to the restarted process, so the credits span both runs.
    let mut client = crashed.reconnect().await;
    let cumulative = crashed.last_ack().accepted + U256::from(AFTER_RESTART_STEP);
    let ack = crashed.payer.pay(&mut client, cumulative).await;
    assert_eq!(ack.accepted, cumulative);
    drop(client);

    let payee = crashed.payer.payee;
    let before = balance_of(anvil, payee).await;
    let channel = crashed.payer.channel;
    let outcome = lesd.admin("les_redeem", json!([channel.to_string()])).await;
    assert_eq!(outcome["status"], json!("redeemed"), "{outcome}");
    assert_eq!(wei(&outcome["paidOut"]), cumulative, "{outcome}");
    let tx = &outcome["tx"];
    assert_eq!(tx["success"], json!(true), "{outcome}");

    // On chain: paidOut is the last accepted cumulative, and the payee got it, less the gas
    // of its own redeem transaction (the fee lesd reports is the receipt's).
    let on_chain = channel::on_chain(anvil, crashed.contract, channel).await;
    assert_eq!(U256::from(on_chain.paidOut), cumulative);
    assert_eq!(U256::from(on_chain.deposit), U256::from(DEPOSIT_WEI), "redeem leaves the deposit");
    assert!(!on_chain.closed);
    let receipt = anvil.rpc("eth_getTransactionReceipt", json!([tx["hash"]])).await;
    assert_eq!(
        receipt["from"].as_str().map(str::to_lowercase),
        Some(payee.to_string().to_lowercase())
    );
    let gas_used = U256::from_str(receipt["gasUsed"].as_str().expect("gasUsed")).expect("hex");
    let price = U256::from_str(receipt["effectiveGasPrice"].as_str().expect("price")).expect("hex");
    let fee = gas_used * price;
    assert_eq!(wei(&tx["fee"]), fee, "{outcome}");
    let after = balance_of(anvil, payee).await;
    assert_eq!(after + fee - before, cumulative, "the payee received exactly paidOut");

    // Research §8.24: the tokens credited for this channel, over both runs of lesd, are
    // floor(paidOut·R) — no more, no less.
    let log = lesd.admin("les_paymentLog", json!([0, 100])).await;
    let log = log.as_array().expect("log entries");
    assert_eq!(log.len(), crashed.acks.len() + 1, "{log:?}");
    let credited: u64 = log
        .iter()
        .filter(|entry| entry["reference"]["channel"] == json!(channel.to_string()))
        .map(|entry| number(&entry["credited"]))
        .sum();
    assert_eq!(U256::from(credited), worth(U256::from(on_chain.paidOut)));
    assert_eq!(credited, ack.balance, "and all of it is the client's balance");
    let row = crashed.channel_row().await;
    assert_eq!(wei(&row["redeemed"]), cumulative);
    assert_eq!(wei(&row["unredeemed"]), U256::ZERO);
    assert_eq!(number(&row["creditedTotal"]), credited);
    crashed.cleanup();
}
