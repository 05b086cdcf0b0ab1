//! Opening a payment channel: `open(payee, expiry)` on the channel contract with the deposit
//! as value, then the channel ID from the `Opened` event of the verified receipt.
//!
//! Who sends the transaction is a [`ChannelOpener`]:
//! - [`FundedKey`] (native and wasm): a local key with funds builds and signs the EIP-1559
//!   transaction itself ([`Submission::Raw`]); the client sends it through its verified send
//!   path (`Chain::send_raw_transaction`) and finds the receipt like `eth_getTransactionReceipt`
//!   (located by the servers, checked against the block's verified body and receipts root).
//! - a wrapped wallet (to be implemented on the JS side): `payer()` is the wallet's account,
//!   `submit` asks the wallet to send `{to: contract, value: deposit, data: open_calldata(..)}`
//!   (`eth_sendTransaction`) and answers [`Submission::Sent`] with the hash; the receipt is
//!   then verified by the client in the same way. The wallet must then also sign the cheques
//!   (a `channel::ChequeSigner` over `eth_signTypedData_v4`), since the contract checks them
//!   against the account that opened the channel.

use super::PayError;
use super::channel::{ChequeSigner, KeySigner};
use alloy_consensus::{SignableTransaction, TxEip1559, TxReceipt};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, Signature, TxKind, U256, keccak256};
use futures_util::future::LocalBoxFuture;
use les::crypto::NodeKey;

/// The `open` function's signature (its selector is the first 4 bytes of its hash).
pub const OPEN_SIGNATURE: &str = "open(address,uint64)";
/// The `Opened` event's signature (topic 0 is its hash).
pub const OPENED_SIGNATURE: &str = "Opened(bytes32,address,address,uint256,uint64)";
/// Gas for `open` (a fresh channel record: four new storage slots and a nonce).
pub const OPEN_GAS_LIMIT: u64 = 200_000;

/// Everything the opening transaction needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    /// The chain (EIP-155).
    pub chain_id: u64,
    /// The channel contract.
    pub contract: Address,
    /// The server's payee address.
    pub payee: Address,
    /// The deposit, wei (the transaction's value).
    pub deposit: U256,
    /// Unix seconds from which the payer may reclaim.
    pub expiry: u64,
    /// The payer's next nonce, from its proven account.
    pub nonce: u64,
    /// EIP-1559 fee cap.
    pub max_fee_per_gas: u128,
    /// EIP-1559 tip.
    pub max_priority_fee_per_gas: u128,
    /// Gas limit.
    pub gas_limit: u64,
}

/// How the opener got the transaction out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    /// A signed EIP-2718 transaction for the client to send.
    Raw(Bytes),
    /// The opener sent it itself (a wallet); its hash.
    Sent(B256),
}

/// Something that can open a channel from the payer's account.
pub trait ChannelOpener {
    /// The account that opens the channel (and whose key must sign its cheques).
    fn payer(&self) -> Address;
    /// Signs (and possibly sends) the `open` transaction.
    fn submit(&self, request: OpenRequest)
    -> LocalBoxFuture<'static, Result<Submission, PayError>>;
}

/// A local key with funds: signs its own `open` transaction and its cheques.
#[derive(Debug, Clone)]
pub struct FundedKey {
    signer: KeySigner,
}

impl FundedKey {
    /// The account of `key`.
    pub fn new(key: NodeKey) -> Self {
        Self { signer: KeySigner::new(key) }
    }

    /// The cheque signer of the same key.
    pub fn signer(&self) -> KeySigner {
        self.signer.clone()
    }

    /// The signed `open` transaction, EIP-2718 encoded.
    pub fn sign_open(&self, request: &OpenRequest) -> Bytes {
        let tx = TxEip1559 {
            chain_id: request.chain_id,
            nonce: request.nonce,
            gas_limit: request.gas_limit,
            max_fee_per_gas: request.max_fee_per_gas,
            max_priority_fee_per_gas: request.max_priority_fee_per_gas,
            to: TxKind::Call(request.contract),
            value: request.deposit,
            input: open_calldata(request.payee, request.expiry),
            ..Default::default()
        };
        let sig = self.signer.key().sign_prehash(&tx.signature_hash());
        let signature = Signature::new(
            U256::from_be_slice(&sig[..32]),
            U256::from_be_slice(&sig[32..64]),
            sig[64] == 1,
        );
        tx.into_signed(signature).encoded_2718().into()
    }
}

impl ChannelOpener for FundedKey {
    fn payer(&self) -> Address {
        self.signer.address()
    }

    fn submit(
        &self,
        request: OpenRequest,
    ) -> LocalBoxFuture<'static, Result<Submission, PayError>> {
        let raw = self.sign_open(&request);
        Box::pin(async move { Ok(Submission::Raw(raw)) })
    }
}

fn word(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[32 - bytes.len()..].copy_from_slice(bytes);
    out
}

/// The ABI call data of `open(payee, expiry)`.
pub fn open_calldata(payee: Address, expiry: u64) -> Bytes {
    let mut data = keccak256(OPEN_SIGNATURE)[..4].to_vec();
    data.extend_from_slice(&word(payee.as_slice()));
    data.extend_from_slice(&word(&expiry.to_be_bytes()));
    data.into()
}

/// A channel as its `Opened` event reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// The channel ID.
    pub channel_id: B256,
    /// The deposit.
    pub deposit: U256,
    /// Unix seconds of expiry.
    pub expiry: u64,
}

/// The `Opened` event of `contract` for `payer` and `payee` in a (verified) receipt.
pub fn find_opened(
    receipt: &impl TxReceipt<Log = alloy_primitives::Log>,
    contract: Address,
    payer: Address,
    payee: Address,
) -> Result<Opened, PayError> {
    if !receipt.status() {
        return Err(PayError::Open("the open transaction reverted".into()));
    }
    let topic0 = keccak256(OPENED_SIGNATURE);
    let want = [topic0, B256::from(word(payer.as_slice())), B256::from(word(payee.as_slice()))];
    receipt
        .logs()
        .iter()
        .filter(|log| log.address == contract)
        .find_map(|log| {
            let topics = log.data.topics();
            let data = &log.data.data;
            if topics.len() != 4
                || topics[0] != want[0]
                || topics[2..] != want[1..]
                || data.len() != 64
            {
                return None;
            }
            let expiry = U256::from_be_slice(&data[32..64]);
            Some(Opened {
                channel_id: topics[1],
                deposit: U256::from_be_slice(&data[..32]),
                expiry: u64::try_from(expiry).ok()?,
            })
        })
        .ok_or_else(|| PayError::Open("no Opened event for this payer and payee".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_consensus::{Receipt, TxEnvelope};
    use alloy_eips::eip2718::Decodable2718;
    use alloy_primitives::{Log, LogData};
    use les::pay::cheque::key_address;

    fn request() -> OpenRequest {
        OpenRequest {
            chain_id: 31337,
            contract: Address::repeat_byte(0xcc),
            payee: Address::repeat_byte(0xee),
            deposit: U256::from(10u64).pow(U256::from(17u64)),
            expiry: 1_800_000_000,
            nonce: 4,
            max_fee_per_gas: 3_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            gas_limit: OPEN_GAS_LIMIT,
        }
    }

    #[test]
    fn the_open_transaction_is_signed_by_the_funded_key() {
        let key = NodeKey::from_bytes(&[9u8; 32]).expect("key");
        let opener = FundedKey::new(key.clone());
        let raw = opener.sign_open(&request());
        let tx = TxEnvelope::decode_2718_exact(&raw).expect("EIP-2718");
        let TxEnvelope::Eip1559(signed) = &tx else { panic!("not EIP-1559: {tx:?}") };
        let sig = signed.signature();
        let mut bytes = [0u8; 65];
        bytes[..32].copy_from_slice(&sig.r().to_be_bytes::<32>());
        bytes[32..64].copy_from_slice(&sig.s().to_be_bytes::<32>());
        bytes[64] = u8::from(sig.v());
        let public = les::crypto::recover(&signed.signature_hash(), &bytes).expect("recover");
        let sender = les::pay::cheque::address_of(&public);
        assert_eq!(sender, key_address(&key));
        assert_eq!(opener.payer(), sender);
        let inner = signed.tx();
        assert_eq!(
            (inner.nonce, inner.value, inner.to),
            (4, request().deposit, TxKind::Call(request().contract))
        );
        // The selector in contracts/artifacts/PaymentChannel.json's methodIdentifiers.
        assert_eq!(&inner.input[..4], &[0xc0, 0xd0, 0x45, 0xff]);
        assert_eq!(&inner.input[16..36], request().payee.as_slice());
        assert_eq!(U256::from_be_slice(&inner.input[36..68]), U256::from(1_800_000_000u64));
        assert_eq!(inner.input.len(), 68);
    }

    fn opened_log(contract: Address, payer: Address, payee: Address) -> Log {
        let mut data = word(&100u64.to_be_bytes()).to_vec();
        data.extend_from_slice(&word(&1_900_000_000u64.to_be_bytes()));
        Log {
            address: contract,
            data: LogData::new_unchecked(
                vec![
                    keccak256(OPENED_SIGNATURE),
                    B256::repeat_byte(0x1d),
                    B256::from(word(payer.as_slice())),
                    B256::from(word(payee.as_slice())),
                ],
                data.into(),
            ),
        }
    }

    #[test]
    fn the_channel_id_comes_from_the_matching_opened_event() {
        let (contract, payer, payee) =
            (Address::repeat_byte(0xcc), Address::repeat_byte(0xaa), Address::repeat_byte(0xee));
        let receipt = |status: bool, logs: Vec<Log>| Receipt {
            status: status.into(),
            cumulative_gas_used: 100_000,
            logs,
        };
        let good = receipt(
            true,
            vec![
                opened_log(Address::repeat_byte(1), payer, payee), // another contract
                opened_log(contract, Address::repeat_byte(2), payee), // another payer
                opened_log(contract, payer, payee),
            ],
        );
        assert_eq!(
            find_opened(&good, contract, payer, payee),
            Ok(Opened {
                channel_id: B256::repeat_byte(0x1d),
                deposit: U256::from(100u64),
                expiry: 1_900_000_000
            })
        );
        let reverted = receipt(false, vec![opened_log(contract, payer, payee)]);
        assert!(find_opened(&reverted, contract, payer, payee).is_err());
        let none = receipt(true, vec![opened_log(contract, payer, Address::repeat_byte(3))]);
        assert!(find_opened(&none, contract, payer, payee).is_err());
    }
}
