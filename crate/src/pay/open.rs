//! Opening a payment channel: `open(payee, signer, expiry)` on the channel contract with the
//! deposit as value, then the channel ID from the `Opened` event of the verified receipt; and
//! topping one up: `topUp(id)` with the added deposit as value, then the new deposit from the
//! `ToppedUp` event.
//!
//! The account that funds the channel (the payer, who alone gets refunds and may extend or
//! reclaim) and the key that signs its cheques are separate: the client generates a session
//! key per channel (`channel::SessionKey`) and names it as the channel's `signer`, so a wallet
//! approves one transaction per channel instead of a signature per cheque. The session key
//! is stored before the transaction is sent (`channel::ChannelPayer::begin_open`).
//!
//! Who sends the transaction is a [`ChannelOpener`]:
//! - [`FundedKey`] (native and wasm): a local key with funds builds and signs the EIP-1559
//!   transaction itself ([`Submission::Raw`]); the client sends it through its verified send
//!   path (`Chain::send_raw_transaction`) and finds the receipt like `eth_getTransactionReceipt`
//!   (located by the servers, checked against the block's verified body and receipts root).
//!   Its channels are signed by session keys too: one cheque path for every opener, and the
//!   funded key signs one transaction per channel and nothing else.
//! - a wallet (EIP-1193, `web::wallet`): the payer is the wallet's account, `submit` asks the
//!   wallet to send `{from, to: contract, value: deposit, data: open(..)}`
//!   (`eth_sendTransaction`) and answers [`Submission::Sent`] with the hash; the receipt is
//!   then verified by the client in the same way.

use super::PayError;
use alloy_consensus::{SignableTransaction, TxEip1559, TxReceipt};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, Signature, TxKind, U256};
use futures_util::future::LocalBoxFuture;
use les::crypto::NodeKey;
use les::pay::cheque::contract::{self, Opened};
use les::pay::cheque::key_address;

pub use les::pay::cheque::contract::{
    OPEN_SIGNATURE, OPENED_SIGNATURE, TOP_UP_SIGNATURE, TOPPED_UP_SIGNATURE,
};

/// Gas for `open` (a fresh channel record: four new storage slots and a nonce).
pub const OPEN_GAS_LIMIT: u64 = 200_000;
/// Gas for `topUp` (one storage slot rewritten; measured 33,202 on anvil).
pub const TOP_UP_GAS_LIMIT: u64 = 80_000;

/// Which call of the channel contract a transaction makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelCall {
    /// `open(payee, signer, expiry)`.
    Open {
        /// The server's payee address.
        payee: Address,
        /// Who signs the channel's cheques (the session key's address).
        signer: Address,
        /// Unix seconds from which the payer may reclaim.
        expiry: u64,
    },
    /// `topUp(channel_id)`.
    TopUp {
        /// The channel.
        channel_id: B256,
    },
}

/// Everything a channel transaction (open or top-up) needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    /// The chain (EIP-155).
    pub chain_id: u64,
    /// The channel contract.
    pub contract: Address,
    /// The account that funds the channel (the transaction's sender).
    pub payer: Address,
    /// The call.
    pub call: ChannelCall,
    /// The deposit (or what a top-up adds), wei: the transaction's value.
    pub deposit: U256,
    /// The payer's next nonce, from its proven account (0 and unused when the opener does not
    /// [`need it`](ChannelOpener::needs_nonce)).
    pub nonce: u64,
    /// EIP-1559 fee cap.
    pub max_fee_per_gas: u128,
    /// EIP-1559 tip.
    pub max_priority_fee_per_gas: u128,
    /// Gas limit.
    pub gas_limit: u64,
}

impl OpenRequest {
    /// The call data: `open(payee, signer, expiry)` or `topUp(id)`.
    pub fn calldata(&self) -> Bytes {
        match self.call {
            ChannelCall::Open { payee, signer, expiry } => {
                contract::open_calldata(payee, signer, expiry)
            }
            ChannelCall::TopUp { channel_id } => contract::top_up_calldata(channel_id),
        }
    }
}

/// How the opener got the transaction out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    /// A signed EIP-2718 transaction for the client to send.
    Raw(Bytes),
    /// The opener sent it itself (a wallet); its hash.
    Sent(B256),
}

/// Something that can fund channels from the payer's account.
pub trait ChannelOpener {
    /// The account that funds channels (a wallet is asked for it, and may ask its user).
    fn payer(&self) -> LocalBoxFuture<'static, Result<Address, PayError>>;
    /// Whether [`submit`](Self::submit) needs the payer's nonce and the fees filled in: a
    /// local key signs a complete transaction, a wallet fills in its own.
    fn needs_nonce(&self) -> bool;
    /// Signs (and possibly sends) the channel transaction.
    fn submit(&self, request: OpenRequest)
    -> LocalBoxFuture<'static, Result<Submission, PayError>>;
}

/// A local key with funds: signs its own `open` transactions.
#[derive(Debug, Clone)]
pub struct FundedKey {
    key: NodeKey,
    address: Address,
}

impl FundedKey {
    /// The account of `key`.
    pub fn new(key: NodeKey) -> Self {
        let address = key_address(&key);
        Self { key, address }
    }

    /// The account's address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The signed channel transaction, EIP-2718 encoded.
    pub fn sign_open(&self, request: &OpenRequest) -> Bytes {
        let tx = TxEip1559 {
            chain_id: request.chain_id,
            nonce: request.nonce,
            gas_limit: request.gas_limit,
            max_fee_per_gas: request.max_fee_per_gas,
            max_priority_fee_per_gas: request.max_priority_fee_per_gas,
            to: TxKind::Call(request.contract),
            value: request.deposit,
            input: request.calldata(),
            ..Default::default()
        };
        let sig = self.key.sign_prehash(&tx.signature_hash());
        let signature = Signature::new(
            U256::from_be_slice(&sig[..32]),
            U256::from_be_slice(&sig[32..64]),
            sig[64] == 1,
        );
        tx.into_signed(signature).encoded_2718().into()
    }
}

impl ChannelOpener for FundedKey {
    fn payer(&self) -> LocalBoxFuture<'static, Result<Address, PayError>> {
        let address = self.address;
        Box::pin(async move { Ok(address) })
    }

    fn needs_nonce(&self) -> bool {
        true
    }

    fn submit(
        &self,
        request: OpenRequest,
    ) -> LocalBoxFuture<'static, Result<Submission, PayError>> {
        let raw = self.sign_open(&request);
        Box::pin(async move { Ok(Submission::Raw(raw)) })
    }
}

/// The channel's whole deposit after a top-up, from the `ToppedUp` event of `contract` for
/// `channel_id` in a (verified) receipt.
pub fn find_topped_up(
    receipt: &impl TxReceipt<Log = alloy_primitives::Log>,
    contract: Address,
    channel_id: B256,
) -> Result<U256, PayError> {
    if !receipt.status() {
        return Err(PayError::Open("the topUp transaction reverted".into()));
    }
    receipt
        .logs()
        .iter()
        .filter(|log| log.address == contract)
        .filter_map(|log| contract::decode_topped_up(&log.data))
        .find(|(id, _)| *id == channel_id)
        .map(|(_, deposit)| deposit)
        .ok_or_else(|| PayError::Open("no ToppedUp event for this channel".into()))
}

/// The `Opened` event of `contract` for `payer`, `payee` and `signer` in a (verified) receipt.
/// A channel naming another signer would take cheques we cannot sign: it is not ours.
pub fn find_opened(
    receipt: &impl TxReceipt<Log = alloy_primitives::Log>,
    contract: Address,
    payer: Address,
    payee: Address,
    signer: Address,
) -> Result<Opened, PayError> {
    if !receipt.status() {
        return Err(PayError::Open("the open transaction reverted".into()));
    }
    receipt
        .logs()
        .iter()
        .filter(|log| log.address == contract)
        .filter_map(|log| contract::decode_opened(&log.data))
        .find(|o| (o.payer, o.payee, o.signer) == (payer, payee, signer))
        .ok_or_else(|| PayError::Open("no Opened event for this payer, payee and signer".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_consensus::{Receipt, TxEnvelope};
    use alloy_eips::eip2718::Decodable2718;
    use alloy_primitives::{Log, LogData, keccak256};

    fn request(payer: Address) -> OpenRequest {
        OpenRequest {
            chain_id: 31337,
            contract: Address::repeat_byte(0xcc),
            payer,
            call: ChannelCall::Open {
                payee: Address::repeat_byte(0xee),
                signer: Address::repeat_byte(0x5e),
                expiry: 1_800_000_000,
            },
            deposit: U256::from(10u64).pow(U256::from(17u64)),
            nonce: 4,
            max_fee_per_gas: 3_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            gas_limit: OPEN_GAS_LIMIT,
        }
    }

    #[test]
    fn the_open_transaction_is_signed_by_the_funded_key_and_names_the_signer() {
        let key = NodeKey::from_bytes(&[9u8; 32]).expect("key");
        let opener = FundedKey::new(key.clone());
        let request = request(opener.address());
        let raw = opener.sign_open(&request);
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
        assert_eq!(crate::pay::block_on(opener.payer()), Ok(sender));
        let inner = signed.tx();
        assert_eq!(
            (inner.nonce, inner.value, inner.to),
            (4, request.deposit, TxKind::Call(request.contract))
        );
        // The selector in contracts/artifacts/PaymentChannel.json's methodIdentifiers.
        assert_eq!(&inner.input[..4], &[0xfe, 0xc9, 0x98, 0x8c]);
        assert_eq!(&inner.input[16..36], Address::repeat_byte(0xee).as_slice());
        assert_eq!(&inner.input[48..68], Address::repeat_byte(0x5e).as_slice());
        assert_eq!(U256::from_be_slice(&inner.input[68..100]), U256::from(1_800_000_000u64));
        assert_eq!(inner.input.len(), 100);
        // A top-up: the selector of topUp(bytes32) and the channel ID.
        let top_up = OpenRequest {
            call: ChannelCall::TopUp { channel_id: B256::repeat_byte(0x1d) },
            gas_limit: TOP_UP_GAS_LIMIT,
            ..request
        };
        let raw = opener.sign_open(&top_up);
        let TxEnvelope::Eip1559(signed) = TxEnvelope::decode_2718_exact(&raw).expect("2718") else {
            panic!("not EIP-1559")
        };
        assert_eq!(&signed.tx().input[..4], &[0xcf, 0xa5, 0x4f, 0x39]);
        assert_eq!(&signed.tx().input[4..], B256::repeat_byte(0x1d).as_slice());
    }

    fn opened_log(contract: Address, payer: Address, payee: Address, signer: Address) -> Log {
        let word = |a: Address| B256::left_padding_from(a.as_slice());
        let mut data = U256::from(100u64).to_be_bytes::<32>().to_vec();
        data.extend_from_slice(&U256::from(1_900_000_000u64).to_be_bytes::<32>());
        data.extend_from_slice(word(signer).as_slice());
        Log {
            address: contract,
            data: LogData::new_unchecked(
                vec![
                    keccak256(OPENED_SIGNATURE),
                    B256::repeat_byte(0x1d),
                    word(payer),
                    word(payee),
                ],
                data.into(),
            ),
        }
    }

    #[test]
    fn the_channel_id_comes_from_the_matching_opened_event() {
        let (contract, payer, payee, signer) = (
            Address::repeat_byte(0xcc),
            Address::repeat_byte(0xaa),
            Address::repeat_byte(0xee),
            Address::repeat_byte(0x5e),
        );
        let receipt = |status: bool, logs: Vec<Log>| Receipt {
            status: status.into(),
            cumulative_gas_used: 100_000,
            logs,
        };
        let good = receipt(
            true,
            vec![
                opened_log(Address::repeat_byte(1), payer, payee, signer), // another contract
                opened_log(contract, Address::repeat_byte(2), payee, signer), // another payer
                opened_log(contract, payer, payee, Address::repeat_byte(3)), // another signer
                opened_log(contract, payer, payee, signer),
            ],
        );
        assert_eq!(
            find_opened(&good, contract, payer, payee, signer),
            Ok(Opened {
                channel_id: B256::repeat_byte(0x1d),
                payer,
                payee,
                deposit: U256::from(100u64),
                expiry: 1_900_000_000,
                signer,
            })
        );
        let reverted = receipt(false, vec![opened_log(contract, payer, payee, signer)]);
        assert!(find_opened(&reverted, contract, payer, payee, signer).is_err());
        let none =
            receipt(true, vec![opened_log(contract, payer, Address::repeat_byte(3), signer)]);
        assert!(find_opened(&none, contract, payer, payee, signer).is_err());
        let other_signer =
            receipt(true, vec![opened_log(contract, payer, payee, Address::repeat_byte(4))]);
        assert!(find_opened(&other_signer, contract, payer, payee, signer).is_err());
    }
}
