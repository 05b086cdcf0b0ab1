//! The executor: runs a call with revm until no state is missing (fetching the missing state
//! verified between runs), and on top of it `eth_call`, geth's `eth_estimateGas` binary
//! search and `eth_createAccessList` with an access-list inspector.

use super::db::{Caches, CallDb, Missing};
use super::{EvmError, EvmStats, MAX_ROUNDS, StateOverrides, spec};
use crate::chain::{Chain, ClientError};
use alloy_primitives::{Address, B256, Bytes, U256};
use futures_util::future::{join_all, join3};
use les::chain::SealedHeader;
use revm::context::{BlockEnv, CfgEnv, TxEnv};
use revm::context_interface::result::{EVMError, ExecutionResult, InvalidTransaction};
use revm::context_interface::transaction::{AccessList, AccessListItem};
use revm::handler::{EthPrecompiles, MainnetContext};
use revm::interpreter::interpreter_types::{InputsTr, Jumps};
use revm::interpreter::{Interpreter, interpreter::EthInterpreter};
use revm::primitives::hardfork::SpecId;
use revm::primitives::{KECCAK_EMPTY, TxKind};
use revm::{DatabaseRef, ExecuteEvm, InspectEvm, Inspector, MainBuilder};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};

/// geth's `params.TxGas`: the least a transaction costs.
const TX_GAS: u64 = 21_000;
/// geth's `params.CallStipend`, part of the optimistic first guess of the estimate.
const CALL_STIPEND: u64 = 2_300;
/// geth's `estimateGasErrorRatio`: the binary search stops once the window is this narrow
/// (the answer is then at most 1.5 % above the least gas that succeeds).
const ESTIMATE_ERROR_RATIO: f64 = 0.015;
/// How often `eth_createAccessList` re-runs with the list found so far before settling.
const ACCESS_LIST_ITERATIONS: usize = 4;

/// A call object (geth's `TransactionArgs`), parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallRequest {
    /// Sender; the zero address when absent.
    pub from: Option<Address>,
    /// Recipient; a contract creation when absent.
    pub to: Option<Address>,
    /// Gas limit; the block's gas limit when absent.
    pub gas: Option<u64>,
    /// Legacy gas price.
    pub gas_price: Option<u128>,
    /// EIP-1559 fee cap.
    pub max_fee_per_gas: Option<u128>,
    /// EIP-1559 tip cap.
    pub max_priority_fee_per_gas: Option<u128>,
    /// Wei sent.
    pub value: Option<U256>,
    /// Calldata (or init code).
    pub input: Bytes,
    /// Nonce (checks are off, as in geth's eth_call; used only as given).
    pub nonce: Option<u64>,
    /// EIP-2930 access list.
    pub access_list: Option<Vec<(Address, Vec<B256>)>>,
    /// EIP-4844 blob hashes.
    pub blob_versioned_hashes: Option<Vec<B256>>,
    /// EIP-4844 blob fee cap.
    pub max_fee_per_blob_gas: Option<u128>,
}

impl CallRequest {
    fn sender(&self) -> Address {
        self.from.unwrap_or(Address::ZERO)
    }

    /// The fee cap per gas the caller pays (geth's `feeCap`), zero when no fee is given.
    fn fee_cap(&self) -> u128 {
        self.max_fee_per_gas.or(self.gas_price).unwrap_or(0)
    }

    /// Whether no fee field is given: then, as in geth, the base fee is not checked and the
    /// block context's `BASEFEE` (and `BLOBBASEFEE`) read zero.
    fn no_fee(&self) -> bool {
        self.fee_cap() == 0 && self.max_priority_fee_per_gas.unwrap_or(0) == 0
    }
}

/// What a completed run came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// Returned: output, gas used (after refund), gas spent before the refund.
    Success {
        /// Return data (or deployed code).
        output: Bytes,
        /// Gas used, after the refund.
        gas_used: u64,
        /// Gas spent before the refund (geth's `MaxUsedGas`).
        gas_spent: u64,
    },
    /// `REVERT`.
    Revert {
        /// The revert data.
        output: Bytes,
        /// Gas used.
        gas_used: u64,
    },
    /// An exceptional halt.
    Halt {
        /// Why, as revm says it.
        reason: String,
        /// Out of gas (in any of its kinds), which the estimate tells apart.
        out_of_gas: bool,
    },
}

/// The result of `eth_createAccessList`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessListResult {
    /// Addresses and slots, sorted.
    pub access_list: Vec<(Address, Vec<B256>)>,
    /// Gas used with the list applied.
    pub gas_used: u64,
    /// Why the call failed with it, if it did (geth reports it beside the list).
    pub error: Option<String>,
}

/// One call's fixed inputs.
struct Job<'a> {
    header: &'a SealedHeader,
    spec: SpecId,
    block: BlockEnv,
    chain_id: u64,
    request: &'a CallRequest,
    overrides: &'a StateOverrides,
}

/// The EVM of one provider: its caches and counters.
#[derive(Debug, Default)]
pub struct Evm {
    caches: RefCell<Caches>,
    stats: Cell<EvmStats>,
}

impl Evm {
    /// The counters so far.
    pub fn stats(&self) -> EvmStats {
        self.stats.get()
    }

    fn count(&self, f: impl FnOnce(&mut EvmStats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
    }

    fn job<'a>(
        chain_id: u64,
        header: &'a SealedHeader,
        blob_gas_price: Option<u128>,
        request: &'a CallRequest,
        overrides: &'a StateOverrides,
    ) -> Job<'a> {
        let spec = spec::spec_for(chain_id, header.header().timestamp);
        let mut block = spec::block_env(header, spec, blob_gas_price);
        if request.no_fee() {
            block.basefee = 0;
            if request.max_fee_per_blob_gas.unwrap_or(0) == 0
                && let Some(blob) = block.blob_excess_gas_and_price.as_mut()
            {
                blob.blob_gasprice = 0;
            }
        }
        Job { header, spec, block, chain_id, request, overrides }
    }

    /// `eth_call`: runs `request` at `header` with `overrides` applied.
    pub async fn call<C: Chain>(
        &self,
        chain: &C,
        header: &SealedHeader,
        blob_gas_price: Option<u128>,
        request: &CallRequest,
        overrides: &StateOverrides,
    ) -> Result<CallOutcome, EvmError> {
        self.count(|s| s.calls += 1);
        let job = Self::job(chain.chain_id(), header, blob_gas_price, request, overrides);
        let gas = request.gas.unwrap_or(job.block.gas_limit);
        self.run(chain, &job, gas, None).await?.map(|(outcome, _)| outcome).map_err(invalid)
    }

    /// `eth_estimateGas`: geth's `gasestimator.Estimate`. The upper bound is the given gas
    /// (if at least 21000) or the block gas limit, capped by what the sender can pay when a
    /// fee is given; a plain transfer is 21000; then one run at the cap (a revert there is
    /// the answer, any other failure says the gas does not suffice), an optimistic guess,
    /// and a binary search to within 1.5 %.
    pub async fn estimate_gas<C: Chain>(
        &self,
        chain: &C,
        header: &SealedHeader,
        blob_gas_price: Option<u128>,
        request: &CallRequest,
        overrides: &StateOverrides,
    ) -> Result<u64, EvmError> {
        self.count(|s| s.calls += 1);
        let job = Self::job(chain.chain_id(), header, blob_gas_price, request, overrides);
        let mut hi = match request.gas {
            Some(gas) if gas >= TX_GAS => gas,
            _ => job.block.gas_limit,
        };
        let sender = request.sender();
        let fee_cap = request.fee_cap();
        if fee_cap != 0 {
            let balance = self.balance(chain, &job, sender).await?;
            let value = request.value.unwrap_or_default();
            if value >= balance && !value.is_zero() {
                return Err(EvmError::Invalid("insufficient funds for transfer".into()));
            }
            let available = balance - value;
            let allowance = available / U256::from(fee_cap);
            if let Ok(allowance) = u64::try_from(allowance) {
                hi = hi.min(allowance);
            }
        }
        // A plain transfer to an account without code needs exactly 21000 (geth's
        // shortcut, which the binary search would only approach).
        if request.input.is_empty()
            && let Some(to) = request.to
            && !self.has_code(chain, &job, to).await?
            && let Ok(Ok((CallOutcome::Success { .. }, _))) =
                self.run(chain, &job, TX_GAS, None).await
        {
            return Ok(TX_GAS);
        }
        let (used, spent) = match self.probe(chain, &job, hi).await? {
            Some(CallOutcome::Success { gas_used, gas_spent, .. }) => (gas_used, gas_spent),
            Some(CallOutcome::Revert { output, .. }) => {
                return Err(EvmError::Reverted(output));
            }
            Some(CallOutcome::Halt { reason, out_of_gas: false }) => {
                return Err(EvmError::Invalid(reason));
            }
            Some(CallOutcome::Halt { out_of_gas: true, .. }) | None => {
                return Err(EvmError::GasRequired(hi));
            }
        };
        let mut lo = used.saturating_sub(1);
        let optimistic = spent.saturating_add(CALL_STIPEND).saturating_mul(64) / 63;
        if optimistic < hi {
            match self.probe(chain, &job, optimistic).await? {
                Some(CallOutcome::Success { .. }) => hi = optimistic,
                _ => lo = optimistic,
            }
        }
        while lo + 1 < hi {
            if ((hi - lo) as f64 / hi as f64) < ESTIMATE_ERROR_RATIO {
                break;
            }
            let mut mid = lo + (hi - lo) / 2;
            if mid > lo.saturating_mul(2) {
                mid = lo * 2;
            }
            match self.probe(chain, &job, mid).await? {
                Some(CallOutcome::Success { .. }) => hi = mid,
                _ => lo = mid,
            }
        }
        Ok(hi)
    }

    /// `eth_createAccessList`: runs with an inspector collecting every address and slot the
    /// call touches (less the sender, the recipient and the precompiles, whose access is
    /// warm anyway), then again with that list until it no longer changes; `gas_used` is
    /// from the last run, with the list applied.
    pub async fn create_access_list<C: Chain>(
        &self,
        chain: &C,
        header: &SealedHeader,
        blob_gas_price: Option<u128>,
        request: &CallRequest,
        overrides: &StateOverrides,
    ) -> Result<AccessListResult, EvmError> {
        self.count(|s| s.calls += 1);
        let chain_id = chain.chain_id();
        let base = Self::job(chain_id, header, blob_gas_price, request, overrides);
        let gas = request.gas.unwrap_or(base.block.gas_limit);
        let mut excluded: BTreeSet<Address> =
            EthPrecompiles::new(base.spec).precompiles.addresses().copied().collect();
        excluded.insert(request.sender());
        if let Some(to) = request.to {
            excluded.insert(to);
        }
        let mut list = request.access_list.clone().unwrap_or_default();
        let mut last = None;
        for _ in 0..ACCESS_LIST_ITERATIONS {
            let attempt = CallRequest { access_list: Some(list.clone()), ..request.clone() };
            let job = Self::job(chain_id, header, blob_gas_price, &attempt, overrides);
            let inspector = AccessListInspector { excluded: &excluded, list: BTreeMap::new() };
            let (outcome, found) =
                self.run(chain, &job, gas, Some(inspector)).await?.map_err(invalid)?;
            let found: Vec<(Address, Vec<B256>)> =
                found.into_iter().map(|(a, slots)| (a, slots.into_iter().collect())).collect();
            let stable = found == list;
            last = Some(outcome);
            list = found;
            if stable {
                break;
            }
        }
        let (gas_used, error) = match last {
            Some(CallOutcome::Success { gas_used, .. }) => (gas_used, None),
            Some(CallOutcome::Revert { gas_used, output }) => {
                (gas_used, Some(revert_message(&output)))
            }
            Some(CallOutcome::Halt { reason, .. }) => (gas, Some(reason)),
            None => return Err(EvmError::Internal("no access-list run".into())),
        };
        Ok(AccessListResult { access_list: list, gas_used, error })
    }

    /// One estimate probe at `gas`: `None` if the gas does not even cover the intrinsic
    /// cost (geth's `ErrIntrinsicGas` / `ErrFloorDataGas`: raise the gas); other invalid
    /// transactions are errors.
    async fn probe<C: Chain>(
        &self,
        chain: &C,
        job: &Job<'_>,
        gas: u64,
    ) -> Result<Option<CallOutcome>, EvmError> {
        match self.run(chain, job, gas, None).await? {
            Ok((outcome, _)) => Ok(Some(outcome)),
            Err(
                InvalidTransaction::CallGasCostMoreThanGasLimit { .. }
                | InvalidTransaction::GasFloorMoreThanGasLimit { .. },
            ) => Ok(None),
            Err(other) => Err(invalid(other)),
        }
    }

    /// The sender's balance (with overrides), proven.
    async fn balance<C: Chain>(
        &self,
        chain: &C,
        job: &Job<'_>,
        address: Address,
    ) -> Result<U256, EvmError> {
        self.read(chain, job, address, |db| db.basic_ref(address).ok().flatten())
            .await
            .map(|info| info.map_or(U256::ZERO, |info| info.balance))
    }

    /// Whether `address` has code (with overrides), proven.
    async fn has_code<C: Chain>(
        &self,
        chain: &C,
        job: &Job<'_>,
        address: Address,
    ) -> Result<bool, EvmError> {
        self.read(chain, job, address, |db| db.basic_ref(address).ok().flatten())
            .await
            .map(|info| info.is_some_and(|info| info.code_hash != KECCAK_EMPTY))
    }

    /// Reads from the proven account `address` (fetched first if not cached).
    async fn read<C: Chain, T>(
        &self,
        chain: &C,
        job: &Job<'_>,
        address: Address,
        f: impl Fn(&CallDb<'_>) -> T,
    ) -> Result<T, EvmError> {
        let cached = {
            let caches = self.caches.borrow();
            caches.block(job.header.hash()).is_some_and(|b| b.accounts.contains_key(&address))
        };
        if !cached {
            let mut missing = Missing::default();
            missing.accounts.entry(address).or_default();
            self.fetch(chain, job.header, missing).await?;
        }
        let caches = self.caches.borrow();
        let db = CallDb::new(caches.block(job.header.hash()), &caches, job.overrides);
        Ok(f(&db))
    }

    /// Runs until a run lacks nothing; with an inspector, also returns what it collected.
    async fn run<C: Chain>(
        &self,
        chain: &C,
        job: &Job<'_>,
        gas: u64,
        mut inspector: Option<AccessListInspector<'_>>,
    ) -> Result<
        Result<(CallOutcome, BTreeMap<Address, BTreeSet<B256>>), InvalidTransaction>,
        EvmError,
    > {
        let tx = tx_env(job, gas);
        for _ in 0..MAX_ROUNDS {
            let (result, missing, collected) = {
                let caches = self.caches.borrow();
                let db = CallDb::new(caches.block(job.header.hash()), &caches, job.overrides);
                let ctx = MainnetContext::<CallDb<'_>>::new(db, job.spec)
                    .with_block(job.block.clone())
                    .with_cfg(cfg_env(job));
                self.count(|s| s.executions += 1);
                match inspector.take() {
                    None => {
                        let mut evm = ctx.build_mainnet();
                        let result = evm.transact(tx.clone()).map(|r| r.result);
                        (
                            result,
                            std::mem::take(&mut evm.ctx.journaled_state.database.missing),
                            None,
                        )
                    }
                    Some(collector) => {
                        let mut evm = ctx.build_mainnet_with_inspector(collector);
                        let result = evm.inspect_tx(tx.clone()).map(|r| r.result);
                        let missing = std::mem::take(&mut evm.ctx.journaled_state.database.missing);
                        let collector = evm.inspector;
                        (result, missing, Some(collector))
                    }
                }
            };
            if missing.is_empty() {
                let found = collected.map(|c| c.list).unwrap_or_default();
                return match result {
                    Ok(result) => Ok(Ok((outcome(result), found))),
                    Err(EVMError::Transaction(invalid)) => Ok(Err(invalid)),
                    Err(other) => Err(EvmError::Internal(other.to_string())),
                };
            }
            inspector = collected.map(|mut c| {
                c.list.clear();
                c
            });
            self.fetch(chain, job.header, missing).await?;
        }
        Err(EvmError::TooManyRounds(MAX_ROUNDS))
    }

    /// Fetches everything `missing` lists in one batch, concurrently: one proof request per
    /// account (with all its slots; an account seen for the first time with code also gets
    /// its code), code by hash, and the block hashes `BLOCKHASH` asked for.
    async fn fetch<C: Chain>(
        &self,
        chain: &C,
        header: &SealedHeader,
        missing: Missing,
    ) -> Result<(), EvmError> {
        if let Some(code_hash) = missing.orphan_code {
            return Err(EvmError::Internal(format!(
                "code {code_hash} asked for without its account"
            )));
        }
        self.count(|s| s.rounds += 1);
        let hash = header.hash();
        let known_code = |h: &B256| self.caches.borrow().code(h).is_some();
        let accounts = missing.accounts.into_iter().map(|(address, slots)| {
            let slots: Vec<B256> = slots.into_iter().collect();
            self.count(|s| s.proof_requests += 1);
            async move {
                let state = chain.account(header, address, slots.clone()).await?;
                if !state.storage.iter().map(|(slot, _, _)| slot).eq(slots.iter()) {
                    return Err(EvmError::Internal("the core answered for other slots".into()));
                }
                let code = match state.account {
                    Some(account)
                        if account.code_hash != KECCAK_EMPTY && !known_code(&account.code_hash) =>
                    {
                        self.count(|s| s.code_requests += 1);
                        Some((
                            account.code_hash,
                            chain.code(header, address, account.code_hash).await?,
                        ))
                    }
                    _ => None,
                };
                Ok::<_, EvmError>((address, state, code))
            }
        });
        let codes =
            missing.code.into_iter().map(|(code_hash, address)| {
                self.count(|s| s.code_requests += 1);
                async move {
                    Ok::<_, EvmError>((code_hash, chain.code(header, address, code_hash).await?))
                }
            });
        let needs_hashes = !missing.block_hashes.is_empty();
        let numbers: Vec<u64> = missing.block_hashes.into_iter().collect();
        let headers =
            numbers.iter().copied().chain(needs_hashes.then_some(header.number())).map(|number| {
                self.count(|s| s.header_requests += 1);
                async move { Ok::<_, EvmError>((number, chain.header_by_number(number).await?)) }
            });
        let (accounts, codes, headers) =
            join3(join_all(accounts), join_all(codes), join_all(headers)).await;

        let mut caches = self.caches.borrow_mut();
        for result in accounts {
            let (address, state, code) = result?;
            if let Some((code_hash, code)) = code {
                caches.insert_code(code_hash, code);
            }
            let block = caches.block_mut(hash);
            block.accounts.insert(address, state.account);
            let storage = block.storage.entry(address).or_default();
            for (slot, value, _) in state.storage {
                storage.insert(U256::from_be_bytes(slot.0), value);
            }
        }
        for result in codes {
            let (code_hash, code) = result?;
            caches.insert_code(code_hash, code);
        }
        let mut hashes = Vec::new();
        for result in headers {
            let (number, found) = result?;
            let found = found.ok_or_else(|| {
                EvmError::Chain(ClientError::Unavailable(format!("no header {number}")))
            })?;
            if number == header.number() {
                if found.hash() != hash {
                    return Err(EvmError::NonCanonicalBlockHash);
                }
            } else {
                hashes.push((number, found.hash()));
            }
        }
        caches.block_mut(hash).block_hashes.extend(hashes);
        Ok(())
    }
}

fn invalid(error: InvalidTransaction) -> EvmError {
    EvmError::Invalid(error.to_string())
}

fn cfg_env(job: &Job<'_>) -> CfgEnv {
    let mut cfg = CfgEnv::new_with_spec(job.spec);
    cfg.chain_id = job.chain_id;
    // geth's eth_call: no nonce check, no EOA check of the sender, gas beyond the block
    // limit allowed, no base-fee check (without a fee there is nothing to compare); the
    // EIP-7825 per-transaction cap is off as in anvil (its --tx-gas-limit is opt-in).
    cfg.disable_nonce_check = true;
    cfg.disable_eip3607 = true;
    cfg.disable_block_gas_limit = true;
    cfg.disable_base_fee = job.request.no_fee();
    cfg.tx_gas_limit_cap = Some(u64::MAX);
    cfg
}

fn tx_env(job: &Job<'_>, gas: u64) -> TxEnv {
    let r = job.request;
    let access_list = AccessList(
        r.access_list
            .iter()
            .flatten()
            .map(|(address, keys)| AccessListItem { address: *address, storage_keys: keys.clone() })
            .collect(),
    );
    let blob_hashes = r.blob_versioned_hashes.clone().unwrap_or_default();
    let dynamic = r.max_fee_per_gas.is_some() || r.max_priority_fee_per_gas.is_some();
    let tx_type = if !blob_hashes.is_empty() {
        3
    } else if dynamic {
        2
    } else if r.access_list.is_some() {
        1
    } else {
        0
    };
    TxEnv {
        tx_type,
        caller: r.sender(),
        gas_limit: gas,
        gas_price: r.fee_cap(),
        kind: r.to.map_or(TxKind::Create, TxKind::Call),
        value: r.value.unwrap_or_default(),
        data: r.input.clone(),
        nonce: r.nonce.unwrap_or(0),
        chain_id: Some(job.chain_id),
        access_list,
        gas_priority_fee: if dynamic {
            Some(r.max_priority_fee_per_gas.unwrap_or(0))
        } else {
            None
        },
        blob_hashes,
        max_fee_per_blob_gas: r.max_fee_per_blob_gas.unwrap_or(0),
        ..TxEnv::default()
    }
}

fn outcome(result: ExecutionResult) -> CallOutcome {
    match result {
        ExecutionResult::Success { gas, output, .. } => CallOutcome::Success {
            output: output.into_data(),
            gas_used: gas.tx_gas_used(),
            gas_spent: gas.total_gas_spent(),
        },
        ExecutionResult::Revert { gas, output, .. } => {
            CallOutcome::Revert { output, gas_used: gas.tx_gas_used() }
        }
        ExecutionResult::Halt { reason, .. } => {
            let out_of_gas =
                matches!(reason, revm::context_interface::result::HaltReason::OutOfGas(_));
            // geth's wording for the common case; revm's name of the halt otherwise.
            let reason = if out_of_gas { "out of gas".into() } else { format!("{reason:?}") };
            CallOutcome::Halt { reason, out_of_gas }
        }
    }
}

/// geth's message for a revert: "execution reverted", with `": <reason>"` when the data is
/// an ABI `Error(string)`.
pub fn revert_message(output: &[u8]) -> String {
    match revert_reason(output) {
        Some(reason) => format!("execution reverted: {reason}"),
        None => "execution reverted".into(),
    }
}

/// The string of an ABI-encoded `Error(string)` (selector 0x08c379a0), if that is what
/// `output` is.
pub fn revert_reason(output: &[u8]) -> Option<String> {
    let body = output.strip_prefix(&[0x08, 0xc3, 0x79, 0xa0])?;
    let word = |at: usize| -> Option<usize> {
        let word = body.get(at..at.checked_add(32)?)?;
        let value = U256::from_be_slice(word);
        usize::try_from(value).ok()
    };
    let offset = word(0)?;
    let length = word(offset)?;
    let start = offset.checked_add(32)?;
    let bytes = body.get(start..start.checked_add(length)?)?;
    String::from_utf8(bytes.to_vec()).ok()
}

/// Collects the addresses and slots a call touches, as revm-inspectors' (and geth's)
/// access-list tracer does: `SLOAD`/`SSTORE` slots of the executing contract, and the
/// addresses of `BALANCE`, `EXTCODE*`, `SELFDESTRUCT` and the `CALL` family unless excluded.
struct AccessListInspector<'a> {
    excluded: &'a BTreeSet<Address>,
    list: BTreeMap<Address, BTreeSet<B256>>,
}

impl<CTX> Inspector<CTX, EthInterpreter> for AccessListInspector<'_> {
    fn step(&mut self, interp: &mut Interpreter<EthInterpreter>, _context: &mut CTX) {
        use revm::bytecode::opcode;
        let address_at = |depth: usize| {
            interp.stack.peek(depth).ok().map(|word| Address::from_word(B256::from(word)))
        };
        match interp.bytecode.opcode() {
            opcode::SLOAD | opcode::SSTORE => {
                if let Ok(slot) = interp.stack.peek(0) {
                    let contract = interp.input.target_address();
                    self.list.entry(contract).or_default().insert(B256::from(slot));
                }
            }
            opcode::EXTCODECOPY
            | opcode::EXTCODEHASH
            | opcode::EXTCODESIZE
            | opcode::BALANCE
            | opcode::SELFDESTRUCT => {
                if let Some(address) = address_at(0).filter(|a| !self.excluded.contains(a)) {
                    self.list.entry(address).or_default();
                }
            }
            opcode::DELEGATECALL | opcode::CALL | opcode::STATICCALL | opcode::CALLCODE => {
                if let Some(address) = address_at(1).filter(|a| !self.excluded.contains(a)) {
                    self.list.entry(address).or_default();
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revert_reasons_decode_error_strings_only() {
        // Error("DemoToken: balance exceeded")
        let reason = "DemoToken: balance exceeded";
        let mut data = vec![0x08, 0xc3, 0x79, 0xa0];
        data.extend_from_slice(&U256::from(32).to_be_bytes::<32>());
        data.extend_from_slice(&U256::from(reason.len()).to_be_bytes::<32>());
        let mut text = reason.as_bytes().to_vec();
        text.resize(64, 0);
        data.extend_from_slice(&text);
        assert_eq!(revert_reason(&data).as_deref(), Some(reason));
        assert_eq!(revert_message(&data), format!("execution reverted: {reason}"));
        assert_eq!(revert_message(&[]), "execution reverted");
        assert_eq!(revert_message(&data[..40]), "execution reverted");
        // A huge length must not be trusted.
        let mut bad = data.clone();
        bad[4 + 32..4 + 64].copy_from_slice(&[0xff; 32]);
        assert_eq!(revert_reason(&bad), None);
    }
}
