//! The client's configuration as a dapp gives it to `createProvider`: the chain, the trusted
//! servers with their bridge URLs, the ULC fraction and where state is kept.

use alloy_primitives::B256;
use les::crypto::{Enode, NodeId};
use les::msg::{ForkSchedule, MAINNET_GENESIS_HASH, MAINNET_NETWORK_ID};
use les::ulc::{UlcConfig, UlcConfigError};
use serde::Deserialize;
use std::time::Duration;

/// The ULC fraction used when the configuration names none (design §3).
pub const DEFAULT_FRACTION: u32 = 75;

/// One LES server: its enode URL (the public key is the trust anchor) and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// `enode://<128 hex public key>@host:port`.
    pub enode: String,
    /// `ws://bridge/host:port` (browser) or empty for a direct TCP connection (native only).
    #[serde(default)]
    pub bridge: Option<String>,
    /// Whether the server counts towards the ULC quorum (default: yes). Untrusted servers
    /// only serve data, which is verified like any other.
    #[serde(default = "yes")]
    pub trusted: bool,
}

fn yes() -> bool {
    true
}

/// Where the client keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// IndexedDB (browser default): a reload resumes from the last accepted head.
    #[default]
    Indexeddb,
    /// Nothing survives the page.
    Memory,
}

/// The configuration as JSON: `{chainId, genesisHash?, servers: [{enode, bridge}], fraction?,
/// storage?}`. `genesisHash` may be left out for mainnet (chain ID 1).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConfig {
    /// EIP-155 chain ID; also the LES network ID.
    pub chain_id: u64,
    /// Genesis block hash (Status must match it).
    #[serde(default)]
    pub genesis_hash: Option<B256>,
    /// The servers to connect to.
    pub servers: Vec<ServerSpec>,
    /// ULC fraction in percent (clamped to 1..=100).
    #[serde(default = "default_fraction")]
    pub fraction: u32,
    /// Storage backend.
    #[serde(default)]
    pub storage: StorageKind,
    /// How the client pays servers (`pay`); none: it is served free only.
    #[serde(default)]
    pub payment: Option<PaymentSpec>,
}

/// The `payment` object: `{key?, wallet?, policy?}`, where `key` and `wallet` say how
/// channels are funded (at most one of them). `key` is a hot key (32-byte hex secret) holding
/// only the deposits it is to put into channels: the client opens channels with it without
/// asking anyone. `wallet: true` says the embedder hands over an EIP-1193 wallet (in JS,
/// `createProvider({payment: {wallet: provider}})`): the wallet's account funds each channel
/// with one `eth_sendTransaction` its user approves. Either way the cheques are signed by a
/// session key per channel, generated and stored by the client. `policy` has the shape
/// `ulc_setPaymentPolicy` takes and is followed from the start.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaymentSpec {
    /// The funded key's secret.
    #[serde(default)]
    pub key: Option<B256>,
    /// Channels are funded by a wallet the embedder passes beside the JSON.
    #[serde(default)]
    pub wallet: bool,
    /// The policy to follow from the start.
    #[serde(default)]
    pub policy: Option<crate::pay::policy::PaymentPolicy>,
}

impl std::fmt::Debug for PaymentSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("PaymentSpec")
            .field("key", &self.key.map(|_| "<secret>"))
            .field("wallet", &self.wallet)
            .field("policy", &self.policy)
            .finish()
    }
}

fn default_fraction() -> u32 {
    DEFAULT_FRACTION
}

/// A configuration that cannot be used, with what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not JSON of the expected shape.
    #[error("configuration: {0}")]
    Json(#[from] serde_json::Error),
    /// An enode URL did not parse.
    #[error("server {index}: {source}")]
    Enode {
        /// Position in `servers`.
        index: usize,
        /// What was wrong.
        #[source]
        source: les::crypto::EnodeError,
    },
    /// No trusted server, or another ULC configuration problem.
    #[error("ULC: {0}")]
    Ulc(#[from] UlcConfigError),
    /// A chain other than mainnet needs its genesis hash.
    #[error("chain {chain_id} needs genesisHash")]
    MissingGenesis {
        /// The configured chain.
        chain_id: u64,
    },
    /// No servers at all.
    #[error("no servers configured")]
    NoServers,
    /// `payment.key` is not a valid secp256k1 secret (zero or not below the curve order).
    #[error("payment.key: {0}")]
    PaymentKey(#[source] les::crypto::CryptoError),
    /// `payment` names both a key and a wallet to fund channels with.
    #[error("payment: key and wallet are mutually exclusive (one account funds the channels)")]
    PaymentKeyAndWallet,
    /// `payment.wallet` is set but the embedder passed no wallet.
    #[error("payment.wallet: no EIP-1193 wallet was passed")]
    MissingWallet,
    /// `payment.policy` cannot be followed.
    #[error("payment.policy: {0}")]
    PaymentPolicy(#[from] crate::pay::policy::PolicyError),
}

/// A server with its parsed enode.
#[derive(Debug, Clone)]
pub struct Server {
    /// As configured.
    pub spec: ServerSpec,
    /// The parsed enode URL.
    pub enode: Enode,
}

impl Server {
    /// keccak256 of the server's public key.
    pub fn node_id(&self) -> NodeId {
        self.enode.node_id()
    }
}

/// How long the client core waits for things. Not part of the dapp's JSON: the defaults
/// suit browsers; tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// A call waits this long for the first accepted head and a connected server before
    /// it fails with "disconnected" (EIP-1193 4900).
    pub head_wait: Duration,
    /// A request with no reply after this long is abandoned and tried on the next server.
    pub request_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self { head_wait: Duration::from_secs(15), request_timeout: Duration::from_secs(10) }
    }
}

/// How the client may pay servers (`pay`), resolved from [`PaymentSpec`] (a native embedder
/// or a test may also set it directly; the dapp can change the policy later with
/// `ulc_setPaymentPolicy`).
#[derive(Debug, Clone, Default)]
pub struct PaymentConfig {
    /// A funded key that opens channels (`pay::open::FundedKey`).
    pub key: Option<les::crypto::NodeKey>,
    /// Whether the configuration asked for a wallet; the embedder sets [`Self::opener`].
    pub wallet: bool,
    /// Any other channel opener, e.g. the wallet the embedder passed (`web::wallet`).
    /// Exclusive with [`Self::key`]: the client refuses to start with both.
    pub opener: Option<Opener>,
    /// The policy to follow from the start (validated by [`ClientConfig::resolve`]'s caller:
    /// the client refuses an invalid one at start).
    pub policy: Option<crate::pay::policy::PaymentPolicy>,
    /// How often the policy runs (default 1 s).
    pub tick: Option<Duration>,
}

/// A channel opener handed to the client (shared: the client keeps it for its lifetime).
#[derive(Clone)]
pub struct Opener(pub std::rc::Rc<dyn crate::pay::open::ChannelOpener>);

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Opener(..)")
    }
}

/// A checked configuration, ready for the client core.
#[derive(Debug, Clone)]
pub struct ResolvedConfig {
    /// Chain and network ID.
    pub chain_id: u64,
    /// Genesis hash and fork schedule for Status.
    pub fork_schedule: ForkSchedule,
    /// Every server, in configuration order.
    pub servers: Vec<Server>,
    /// The trusted set and fraction.
    pub ulc: UlcConfig,
    /// Storage backend.
    pub storage: StorageKind,
    /// Waiting times.
    pub timing: Timing,
    /// Payments.
    pub payment: PaymentConfig,
}

impl ClientConfig {
    /// Parses the JSON form.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        Ok(serde_json::from_str(text)?)
    }

    /// Checks the configuration and parses what it names.
    pub fn resolve(&self) -> Result<ResolvedConfig, ConfigError> {
        if self.servers.is_empty() {
            return Err(ConfigError::NoServers);
        }
        let servers = self
            .servers
            .iter()
            .enumerate()
            .map(|(index, spec)| {
                let enode: Enode =
                    spec.enode.parse().map_err(|source| ConfigError::Enode { index, source })?;
                Ok(Server { spec: spec.clone(), enode })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let fork_schedule = match self.genesis_hash {
            Some(hash) if hash == MAINNET_GENESIS_HASH => ForkSchedule::mainnet(),
            // Our devnets (anvil) activate every fork at genesis, as lesd assumes for them.
            Some(hash) => ForkSchedule::new(hash, 0, [], []),
            None if self.chain_id == MAINNET_NETWORK_ID => ForkSchedule::mainnet(),
            None => return Err(ConfigError::MissingGenesis { chain_id: self.chain_id }),
        };
        let trusted: Vec<NodeId> =
            servers.iter().filter(|s| s.spec.trusted).map(Server::node_id).collect();
        let ulc = UlcConfig::new(trusted, self.fraction)?;
        let payment = match &self.payment {
            None => PaymentConfig::default(),
            Some(spec) => {
                if spec.key.is_some() && spec.wallet {
                    return Err(ConfigError::PaymentKeyAndWallet);
                }
                let key = spec
                    .key
                    .map(|secret| les::crypto::NodeKey::from_bytes(&secret.0))
                    .transpose()
                    .map_err(ConfigError::PaymentKey)?;
                if let Some(policy) = &spec.policy {
                    policy.validate()?;
                }
                PaymentConfig {
                    key,
                    wallet: spec.wallet,
                    opener: None,
                    policy: spec.policy.clone(),
                    tick: None,
                }
            }
        };
        Ok(ResolvedConfig {
            chain_id: self.chain_id,
            fork_schedule,
            servers,
            ulc,
            storage: self.storage,
            timing: Timing::default(),
            payment,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENODE: &str = "enode://a979fb575495b8d6db44f750317d0f4622bf4c2aa3365d6af7c284339968eef29b69ad0dce72a4d8db5ebb4968de0e3bec910127f134779fbcb0cb6d3331163c@127.0.0.1:30303";
    const KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

    fn with_payment(payment: &str) -> String {
        format!(r#"{{"chainId": 1, "servers": [{{"enode": "{ENODE}"}}], "payment": {payment}}}"#)
    }

    #[test]
    fn payment_key_and_policy_reach_the_resolved_config() {
        let json = with_payment(&format!(
            r#"{{"key": "{KEY}", "policy": {{"budgetWei": "0x1000", "targetCapacity": 500000}}}}"#
        ));
        let resolved = ClientConfig::from_json(&json).expect("parses").resolve().expect("resolves");
        let key = resolved.payment.key.expect("key");
        let secret: B256 = KEY.parse().expect("hex");
        assert_eq!(key.to_bytes(), secret.0);
        let policy = resolved.payment.policy.expect("policy");
        assert_eq!(policy.target_capacity, 500_000);
        assert_eq!(policy.budget_wei, alloy_primitives::U256::from(0x1000));
    }

    #[test]
    fn a_wallet_request_reaches_the_resolved_config_without_a_key() {
        let json = with_payment(r#"{"wallet": true}"#);
        let resolved = ClientConfig::from_json(&json).expect("parses").resolve().expect("resolves");
        assert!(resolved.payment.wallet && resolved.payment.key.is_none());
        assert!(resolved.payment.opener.is_none(), "the embedder supplies the wallet itself");
    }

    #[test]
    fn no_payment_means_free_only() {
        let json = format!(r#"{{"chainId": 1, "servers": [{{"enode": "{ENODE}"}}]}}"#);
        let resolved = ClientConfig::from_json(&json).expect("parses").resolve().expect("resolves");
        assert!(resolved.payment.key.is_none() && resolved.payment.policy.is_none());
    }

    #[test]
    fn bad_payment_settings_are_typed_errors() {
        let zero = format!(r#"{{"key": "0x{}"}}"#, "00".repeat(32));
        let err = ClientConfig::from_json(&with_payment(&zero)).expect("parses").resolve();
        assert!(matches!(err, Err(ConfigError::PaymentKey(_))), "{err:?}");

        let short = with_payment(r#"{"key": "0x1234"}"#);
        assert!(matches!(ClientConfig::from_json(&short), Err(ConfigError::Json(_))));

        let both = with_payment(&format!(r#"{{"key": "{KEY}", "wallet": true}}"#));
        let err = ClientConfig::from_json(&both).expect("parses").resolve();
        assert!(matches!(err, Err(ConfigError::PaymentKeyAndWallet)), "{err:?}");

        let unknown = with_payment(r#"{"secret": "0x00"}"#);
        assert!(matches!(ClientConfig::from_json(&unknown), Err(ConfigError::Json(_))));

        let periods = with_payment(
            r#"{"policy": {"budgetWei": "0x1", "targetCapacity": 1, "lowBalanceSecs": 60, "topUpSecs": 30}}"#,
        );
        let err = ClientConfig::from_json(&periods).expect("parses").resolve();
        assert!(
            matches!(
                err,
                Err(ConfigError::PaymentPolicy(crate::pay::policy::PolicyError::Periods { .. }))
            ),
            "{err:?}"
        );
    }

    #[test]
    fn debug_output_hides_the_key() {
        let spec =
            PaymentSpec { key: Some(KEY.parse().expect("hex")), wallet: false, policy: None };
        let shown = format!("{spec:?}");
        assert!(!shown.contains("4c0883a6"), "{shown}");
    }
}
