//! The PaymentChannel contract as lesd uses it: `channels(id)` read with `eth_call` at a
//! confirmed block, and `redeem` transactions built, signed with the payee key and sent
//! through the upstream, with their receipts polled.
//!
//! The ABI comes from `alloy-sol-types` (`sol!`), written out from contracts/PaymentChannel.sol;
//! transactions are EIP-1559 (alloy-consensus) signed with a secp256k1 key of the same type as
//! the node key (`--payee-key`), but a separate one: it holds the money.

use crate::upstream::{Upstream, UpstreamError};
use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, Signature, TxKind, U256};
use alloy_sol_types::{SolCall, sol};
use les::crypto::NodeKey;
use les::pay::cheque::{ChequeSignature, key_address};
use std::path::Path;

sol! {
    /// `PaymentChannel.channels(bytes32)`.
    function channels(bytes32 id) external view returns (address payer, address payee, uint128 deposit, uint128 paidOut, uint64 expiry, bool closed, address signer);
    /// `PaymentChannel.redeem(bytes32,uint256,bytes)`.
    function redeem(bytes32 id, uint256 cumulative, bytes sig) external;
}

/// Why a chain read or a transaction failed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The upstream failed or refused.
    #[error("upstream: {0}")]
    Upstream(#[from] UpstreamError),
    /// An `eth_call` answer does not decode as the function's return type.
    #[error("cannot decode {function} result: {source}")]
    Decode {
        /// The function.
        function: &'static str,
        /// The ABI error.
        source: alloy_sol_types::Error,
    },
    /// The payee key file could not be read or created.
    #[error("payee key: {0}")]
    Key(Box<crate::daemon::StartError>),
}

/// A channel as the contract holds it (all zero for an unknown id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnChainChannel {
    /// Who pays (zero if the channel does not exist).
    pub payer: Address,
    /// Who is paid.
    pub payee: Address,
    /// The deposit, wei, including top-ups.
    pub deposit: U256,
    /// Paid out to the payee so far, wei.
    pub paid_out: U256,
    /// Unix seconds after which `redeem` reverts and the payer may reclaim.
    pub expiry: u64,
    /// Closed by the payee or reclaimed by the payer.
    pub closed: bool,
    /// Whose signature a cheque must carry: named by the payer at `open` (the payer itself, or
    /// a session key it delegated to). Refunds still go to the payer.
    pub signer: Address,
}

impl OnChainChannel {
    /// Whether the contract knows the channel.
    pub fn exists(&self) -> bool {
        self.payer != Address::ZERO
    }
}

/// The block a read was made against and the chain's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainView {
    /// The head block's number.
    pub head: u64,
    /// The head block's timestamp (Unix seconds): the contract's notion of now.
    pub head_timestamp: u64,
    /// The block the state was read at (head minus the confirmations).
    pub read_at: u64,
    /// The head's base fee, wei per gas (0 before London).
    pub base_fee: u128,
}

/// The payee key: signs redemptions; its address is the channels' payee.
#[derive(Clone)]
pub struct PayeeKey {
    key: NodeKey,
    address: Address,
}

impl std::fmt::Debug for PayeeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayeeKey").field("address", &self.address).finish_non_exhaustive()
    }
}

impl PayeeKey {
    /// From a key.
    pub fn from_key(key: NodeKey) -> Self {
        let address = key_address(&key);
        Self { key, address }
    }

    /// Reads the key (64 hex characters) from `path`, creating a random one there if the file
    /// does not exist (it must then be funded for gas before redemptions can be sent).
    pub fn load_or_create(path: &Path) -> Result<Self, ChainError> {
        crate::daemon::load_or_create_key(path)
            .map(Self::from_key)
            .map_err(|error| ChainError::Key(Box::new(error)))
    }

    /// The payee address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// Signs an EIP-1559 transaction: its EIP-2718 bytes and hash.
    pub fn sign(&self, tx: TxEip1559) -> (Bytes, B256) {
        let sig = self.key.sign_prehash(&tx.signature_hash());
        let signature = Signature::new(
            U256::from_be_slice(&sig[..32]),
            U256::from_be_slice(&sig[32..64]),
            sig[64] == 1,
        );
        let signed = tx.into_signed(signature);
        let hash = *signed.hash();
        (signed.encoded_2718().into(), hash)
    }
}

/// Fee parameters of a transaction, wei per gas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fees {
    /// `maxFeePerGas`.
    pub max_fee_per_gas: u128,
    /// `maxPriorityFeePerGas`.
    pub max_priority_fee_per_gas: u128,
}

/// What a mined transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxOutcome {
    /// The transaction.
    pub hash: B256,
    /// Whether it succeeded (status 1).
    pub success: bool,
    /// The block it is in.
    pub block: u64,
    /// Gas used.
    pub gas_used: u64,
    /// Price paid per gas, wei.
    pub effective_gas_price: u128,
}

impl TxOutcome {
    /// What the sender paid for gas, wei.
    pub fn fee(&self) -> U256 {
        U256::from(self.gas_used) * U256::from(self.effective_gas_price)
    }
}

/// The contract at one address on the upstream's chain.
#[derive(Debug, Clone)]
pub struct ChannelContract {
    upstream: Upstream,
    address: Address,
}

impl ChannelContract {
    /// The contract at `address`, reached through `upstream`.
    pub fn new(upstream: Upstream, address: Address) -> Self {
        Self { upstream, address }
    }

    /// The contract's address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The chain id (part of the cheque domain and of every transaction).
    pub fn chain_id(&self) -> u64 {
        self.upstream.chain_id()
    }

    /// The upstream.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// The head block (number, timestamp, base fee), without reading any state.
    pub async fn view(&self, confirmations: u64) -> Result<ChainView, ChainError> {
        let sealed = self.upstream.head().await?.header;
        let head = sealed.header();
        let number = head.number;
        Ok(ChainView {
            head: number,
            head_timestamp: head.timestamp,
            read_at: number.saturating_sub(confirmations),
            base_fee: u128::from(head.base_fee_per_gas.unwrap_or(0)),
        })
    }

    /// `channels(id)` in the state after block `block`.
    pub async fn channel_at(&self, id: B256, block: u64) -> Result<OnChainChannel, ChainError> {
        let data = channelsCall { id }.abi_encode();
        let answer = self.upstream.call(self.address, &data, block).await?;
        let r = channelsCall::abi_decode_returns(&answer)
            .map_err(|source| ChainError::Decode { function: "channels", source })?;
        Ok(OnChainChannel {
            payer: r.payer,
            payee: r.payee,
            deposit: U256::from(r.deposit),
            paid_out: U256::from(r.paidOut),
            expiry: r.expiry,
            closed: r.closed,
            signer: r.signer,
        })
    }

    /// `channels(id)` at the head minus `confirmations` blocks, with the view it was read in.
    pub async fn channel(
        &self,
        id: B256,
        confirmations: u64,
    ) -> Result<(OnChainChannel, ChainView), ChainError> {
        let view = self.view(confirmations).await?;
        Ok((self.channel_at(id, view.read_at).await?, view))
    }

    /// The calldata of `redeem(id, cumulative, sig)`.
    pub fn redeem_calldata(id: B256, cumulative: U256, signature: &ChequeSignature) -> Bytes {
        redeemCall { id, cumulative, sig: Bytes::copy_from_slice(signature.as_bytes()) }
            .abi_encode()
            .into()
    }

    /// Fees for a transaction now: the node's suggested tip, and a cap of twice the head's
    /// base fee plus the tip (room for six full blocks of base-fee rise).
    pub async fn fees(&self) -> Result<Fees, ChainError> {
        let view = self.view(0).await?;
        let tip = self.upstream.max_priority_fee_per_gas().await?;
        Ok(Fees {
            max_fee_per_gas: view.base_fee.saturating_mul(2).saturating_add(tip),
            max_priority_fee_per_gas: tip,
        })
    }

    /// The gas a redeem call needs now, with a 25 % margin; an `Rpc` error if it reverts.
    pub async fn redeem_gas(&self, from: Address, calldata: &[u8]) -> Result<u64, ChainError> {
        let gas = self.upstream.estimate_gas(from, self.address, calldata).await?;
        Ok(gas.saturating_add(gas / 4))
    }

    /// Builds and signs a redeem transaction (nothing is sent): its bytes and hash.
    pub fn build_redeem(
        &self,
        key: &PayeeKey,
        calldata: Bytes,
        nonce: u64,
        gas_limit: u64,
        fees: Fees,
    ) -> (Bytes, B256) {
        key.sign(TxEip1559 {
            chain_id: self.chain_id(),
            nonce,
            gas_limit,
            max_fee_per_gas: fees.max_fee_per_gas,
            max_priority_fee_per_gas: fees.max_priority_fee_per_gas,
            to: TxKind::Call(self.address),
            value: U256::ZERO,
            input: calldata,
            ..Default::default()
        })
    }

    /// Submits signed transaction bytes.
    pub async fn send(&self, raw: &[u8]) -> Result<B256, ChainError> {
        Ok(self.upstream.send_raw_transaction(raw).await?)
    }

    /// The next nonce of `address`, counting pending transactions.
    pub async fn nonce(&self, address: Address) -> Result<u64, ChainError> {
        Ok(self.upstream.transaction_count(address).await?)
    }

    /// The outcome of a transaction, `None` while it is not mined.
    pub async fn outcome(&self, hash: B256) -> Result<Option<TxOutcome>, ChainError> {
        let Some(receipt) = self.upstream.transaction_receipt(hash).await? else {
            return Ok(None);
        };
        Ok(Some(TxOutcome {
            hash,
            success: receipt.status(),
            block: receipt.block_number.unwrap_or(0),
            gas_used: receipt.gas_used,
            effective_gas_price: receipt.effective_gas_price,
        }))
    }
}
