//! Fee methods derived from verified headers, bodies and receipts, never constants:
//! `eth_feeHistory` (base fees, gas used ratios, blob fields, percentiles of effective tips
//! weighted by gas used, as geth computes them), `eth_maxPriorityFeePerGas` (geth's gas
//! price oracle, simplified as documented on [`suggest_tip`]) and `eth_gasPrice` (that tip
//! plus the latest base fee, as geth).

use super::encode::{self, qty};
use super::error::RpcError;
use super::params::{self, Params};
use super::{RpcFuture, internal};
use crate::chain::Chain;
use alloy_consensus::Transaction;
use alloy_eips::eip1559::{BaseFeeParams, calc_next_block_base_fee};
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use les::chain::SealedHeader;
use serde_json::{Map, Value, json};
use std::rc::Rc;

/// The most blocks one `eth_feeHistory` covers (geth's default `maxBlockHistory`); a larger
/// `blockCount` is clamped to it, as geth does.
pub const MAX_FEE_HISTORY: u64 = 1024;
/// The most reward percentiles one request may ask for.
pub const MAX_PERCENTILES: usize = 100;
/// geth's oracle: how many recent blocks are sampled.
pub const ORACLE_BLOCKS: u64 = 20;
/// geth's oracle: how many of each block's lowest tips are sampled.
pub const ORACLE_SAMPLES: usize = 3;
/// geth's oracle: the percentile of the samples suggested.
pub const ORACLE_PERCENTILE: usize = 60;
/// geth's oracle: tips below this (wei) are ignored.
pub const ORACLE_IGNORE_BELOW: u128 = 2;
/// geth's oracle: the suggestion's cap, 500 gwei.
pub const ORACLE_MAX: u128 = 500_000_000_000;
/// The tip suggested when the sampled blocks hold no transaction to learn from: 1 gwei
/// (geth's long-time default gas price; a wallet needs some non-zero tip to be included).
pub const DEFAULT_TIP: u128 = 1_000_000_000;
/// How many blocks are fetched at once.
const CONCURRENT_FETCHES: usize = 4;

/// geth's `blockCount`: a hex quantity, a decimal string, or a JSON integer.
fn block_count(value: &Value) -> Result<u64, RpcError> {
    match value {
        Value::Number(n) => n.as_u64().ok_or_else(|| {
            RpcError::invalid_params("invalid blockCount: expected a non-negative integer")
        }),
        Value::String(s) if !s.starts_with("0x") => s.parse::<u64>().map_err(|_| {
            RpcError::invalid_params(format!("invalid blockCount: {s:?} is not a number"))
        }),
        other => params::quantity_u64(other, "blockCount"),
    }
}

/// Reward percentiles: at most [`MAX_PERCENTILES`], each in 0..=100, strictly increasing
/// (geth's rule).
pub fn percentiles(value: Option<&Value>) -> Result<Vec<f64>, RpcError> {
    let Some(value) = value else { return Ok(Vec::new()) };
    let list = value.as_array().ok_or_else(|| {
        RpcError::invalid_params("invalid rewardPercentiles: expected an array of numbers")
    })?;
    if list.len() > MAX_PERCENTILES {
        return Err(RpcError::invalid_params(format!(
            "invalid rewardPercentiles: {} percentiles, at most {MAX_PERCENTILES}",
            list.len()
        )));
    }
    let mut out: Vec<f64> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let p = item.as_f64().filter(|p| (0.0..=100.0).contains(p)).ok_or_else(|| {
            RpcError::invalid_params(format!(
                "invalid reward percentile {item}: expected a number from 0 to 100"
            ))
        })?;
        if out.last().is_some_and(|last| p <= *last) {
            return Err(RpcError::invalid_params(format!(
                "invalid reward percentile: #{i} ({p}) is not above #{} ({})",
                i - 1,
                out[i - 1]
            )));
        }
        out.push(p);
    }
    Ok(out)
}

/// geth's reward row of one block: the transactions sorted by effective tip (stable), and
/// for each percentile `p` the tip of the first transaction at which the gas used so far
/// reaches `p` % of the block's gas used. No transactions: all zero.
pub fn rewards(block_gas_used: u64, mut txs: Vec<(u128, u64)>, percentiles: &[f64]) -> Vec<u128> {
    if txs.is_empty() {
        return vec![0; percentiles.len()];
    }
    txs.sort_by_key(|(tip, _)| *tip);
    let mut index = 0;
    let mut sum = txs[0].1;
    percentiles
        .iter()
        .map(|p| {
            // geth: uint64(float64(gasUsed) * p / 100).
            let threshold = (block_gas_used as f64 * p / 100.0) as u64;
            while sum < threshold && index < txs.len() - 1 {
                index += 1;
                sum += txs[index].1;
            }
            txs[index].0
        })
        .collect()
}

/// The base fee after `header` by the EIP-1559 formula (mainnet parameters); 0 before
/// London, as geth reports pre-London blocks.
pub fn next_base_fee(header: &SealedHeader) -> u64 {
    let h = header.header();
    h.base_fee_per_gas.map_or(0, |base_fee| {
        calc_next_block_base_fee(h.gas_used, h.gas_limit, base_fee, BaseFeeParams::ethereum())
    })
}

/// The (effective tip, gas used) of each transaction of a block, from its verified body and
/// receipts (gas used = difference of cumulative figures).
async fn tips_and_gas<C: Chain>(
    chain: &C,
    header: &SealedHeader,
) -> Result<Vec<(u128, u64)>, RpcError> {
    let (body, receipts) =
        futures_util::future::try_join(chain.body(header), chain.receipts(header)).await?;
    let transactions = body.body.transactions();
    let receipts = receipts.receipts();
    if transactions.len() != receipts.len() {
        return Err(internal(encode::EncodeError::ReceiptCount {
            block: header.hash(),
            receipts: receipts.len(),
            transactions: transactions.len(),
        }));
    }
    let base_fee = header.header().base_fee_per_gas.unwrap_or(0);
    let mut previous = 0u64;
    let mut out = Vec::with_capacity(transactions.len());
    for (index, (tx, receipt)) in transactions.iter().zip(receipts).enumerate() {
        let cumulative = receipt.cumulative_gas_used();
        let gas = cumulative
            .checked_sub(previous)
            .ok_or(encode::EncodeError::CumulativeGas { block: header.hash(), index })
            .map_err(internal)?;
        previous = cumulative;
        out.push((tx.effective_tip_per_gas(base_fee).unwrap_or(0), gas));
    }
    Ok(out)
}

/// `eth_feeHistory [blockCount, newestBlock, rewardPercentiles?]`.
pub fn fee_history<C: Chain>(chain: Rc<C>, p: &Params) -> Result<RpcFuture, RpcError> {
    p.arity(2, 3)?;
    let count = block_count(p.required(0, "blockCount")?)?.min(MAX_FEE_HISTORY);
    let newest = params::block_tag(p.required(1, "newestBlock")?, "newestBlock")?;
    let percentiles = percentiles(p.get(2))?;
    Ok(async move {
        let head = chain.head().await?.header.number();
        let newest = super::logs::tag_number(newest, head);
        if newest > head {
            return Err(RpcError::new(
                super::codes::INVALID_INPUT,
                format!("request beyond head block: requested {newest}, head {head}"),
            ));
        }
        if count == 0 {
            return Ok(json!({"oldestBlock": qty(0u64), "baseFeePerGas": [], "gasUsedRatio": []}));
        }
        let count = count.min(newest + 1);
        let oldest = newest + 1 - count;
        let mut headers = Vec::with_capacity(count as usize);
        for number in (oldest..=newest).rev() {
            headers.push(chain.header_by_number(number).await?.ok_or_else(|| {
                RpcError::new(super::codes::INVALID_INPUT, format!("block {number} not found"))
            })?);
        }
        headers.reverse();
        let rewards: Vec<Vec<u128>> = if percentiles.is_empty() {
            Vec::new()
        } else {
            let chain = &*chain;
            let percentiles = &percentiles;
            futures_util::stream::iter(headers.iter())
                .map(|header| async move {
                    let gas_used = header.header().gas_used;
                    // A block that used no gas has no transactions: nothing to fetch.
                    let txs = if gas_used == 0 {
                        Vec::new()
                    } else {
                        tips_and_gas(chain, header).await?
                    };
                    Ok::<_, RpcError>(rewards(gas_used, txs, percentiles))
                })
                .buffered(CONCURRENT_FETCHES)
                .try_collect()
                .await?
        };
        Ok(history_object(chain.chain_id(), oldest, &headers, &rewards, !percentiles.is_empty()))
    }
    .boxed_local())
}

/// The `eth_feeHistory` result for consecutive `headers` (oldest first). Blob fields appear
/// where every header has them and the chain's blob schedule is known (mainnet).
fn history_object(
    chain_id: u64,
    oldest: u64,
    headers: &[SealedHeader],
    rewards: &[Vec<u128>],
    with_rewards: bool,
) -> Value {
    let mut base_fees: Vec<Value> =
        headers.iter().map(|h| qty(h.header().base_fee_per_gas.unwrap_or(0))).collect();
    let ratios: Vec<Value> = headers
        .iter()
        .map(|h| {
            let h = h.header();
            let ratio = if h.gas_limit == 0 { 0.0 } else { h.gas_used as f64 / h.gas_limit as f64 };
            json!(ratio)
        })
        .collect();
    if let Some(newest) = headers.last() {
        base_fees.push(qty(next_base_fee(newest)));
    }
    let mut out = Map::new();
    out.insert("oldestBlock".into(), qty(oldest));
    out.insert("baseFeePerGas".into(), Value::Array(base_fees));
    out.insert("gasUsedRatio".into(), Value::Array(ratios));
    if let Some((blob_fees, blob_ratios)) = blob_fields(chain_id, headers) {
        out.insert("baseFeePerBlobGas".into(), Value::Array(blob_fees));
        out.insert("blobGasUsedRatio".into(), Value::Array(blob_ratios));
    }
    if with_rewards {
        let rows = rewards.iter().map(|row| row.iter().map(|r| qty(*r)).collect()).collect();
        out.insert("reward".into(), Value::Array(rows));
    }
    Value::Object(out)
}

/// `baseFeePerBlobGas` (one more than blocks: the next block's, from the newest header by
/// the newest header's blob parameters) and `blobGasUsedRatio`.
fn blob_fields(chain_id: u64, headers: &[SealedHeader]) -> Option<(Vec<Value>, Vec<Value>)> {
    let mut fees = Vec::with_capacity(headers.len() + 1);
    let mut ratios = Vec::with_capacity(headers.len());
    for header in headers {
        let h = header.header();
        let params = encode::blob_params(chain_id, h.timestamp)?;
        let (excess, used) = (h.excess_blob_gas?, h.blob_gas_used?);
        fees.push(qty(params.calc_blob_fee(excess)));
        let max = params.max_blob_gas_per_block();
        ratios.push(json!(if max == 0 { 0.0 } else { used as f64 / max as f64 }));
    }
    let newest = headers.last()?.header();
    let params = encode::blob_params(chain_id, newest.timestamp)?;
    let next_excess = params.next_block_excess_blob_gas_osaka(
        newest.excess_blob_gas?,
        newest.blob_gas_used?,
        newest.base_fee_per_gas.unwrap_or(0),
    );
    fees.push(qty(params.calc_blob_fee(next_excess)));
    Some((fees, ratios))
}

/// The oracle's samples of one block: the [`ORACLE_SAMPLES`] lowest effective tips, of
/// transactions not sent by the block's fee recipient and not below
/// [`ORACLE_IGNORE_BELOW`].
pub fn block_samples(mut tips: Vec<u128>) -> Vec<u128> {
    tips.retain(|tip| *tip >= ORACLE_IGNORE_BELOW);
    tips.sort_unstable();
    tips.truncate(ORACLE_SAMPLES);
    tips
}

/// The suggestion from all samples: their [`ORACLE_PERCENTILE`]th percentile (geth's index
/// `(n - 1) * 60 / 100` of the sorted samples), capped at [`ORACLE_MAX`]; no samples:
/// [`DEFAULT_TIP`].
pub fn pick(mut samples: Vec<u128>) -> u128 {
    if samples.is_empty() {
        return DEFAULT_TIP;
    }
    samples.sort_unstable();
    samples[(samples.len() - 1) * ORACLE_PERCENTILE / 100].min(ORACLE_MAX)
}

/// The suggested priority fee at the head: geth's oracle over the last [`ORACLE_BLOCKS`]
/// blocks, from verified headers and bodies. Simplified: a block with nothing to sample
/// (empty, or only the fee recipient's own transactions) contributes no sample, where geth
/// contributes its previous suggestion and then samples up to 20 more blocks; with no
/// samples at all the answer is [`DEFAULT_TIP`]. So the answer depends only on the blocks.
pub async fn suggest_tip<C: Chain>(chain: &C) -> Result<(u128, SealedHeader), RpcError> {
    let head = chain.head().await?.header;
    let lowest = head.number().saturating_sub(ORACLE_BLOCKS - 1);
    let mut headers = vec![head.clone()];
    for number in (lowest..head.number()).rev() {
        if let Some(header) = chain.header_by_number(number).await? {
            headers.push(header);
        }
    }
    let samples: Vec<Vec<u128>> = futures_util::stream::iter(headers)
        .map(|header| async move {
            if header.header().gas_used == 0 {
                return Ok::<_, RpcError>(Vec::new());
            }
            let body = chain.body(&header).await?;
            let h = header.header();
            let base_fee = h.base_fee_per_gas.unwrap_or(0);
            let tips = body
                .body
                .transactions()
                .iter()
                .zip(&body.senders)
                .filter(|(_, sender)| **sender != h.beneficiary)
                .filter_map(|(tx, _)| tx.effective_tip_per_gas(base_fee))
                .collect();
            Ok(block_samples(tips))
        })
        .buffered(CONCURRENT_FETCHES)
        .try_collect()
        .await?;
    Ok((pick(samples.into_iter().flatten().collect()), head))
}

/// `eth_maxPriorityFeePerGas []`.
pub fn max_priority_fee<C: Chain>(chain: Rc<C>, p: &Params) -> Result<RpcFuture, RpcError> {
    p.arity(0, 0)?;
    Ok(async move { Ok(qty(suggest_tip(&*chain).await?.0)) }.boxed_local())
}

/// `eth_gasPrice []`: the suggested tip plus the head's base fee (geth's sum).
pub fn gas_price<C: Chain>(chain: Rc<C>, p: &Params) -> Result<RpcFuture, RpcError> {
    p.arity(0, 0)?;
    Ok(async move {
        let (tip, head) = suggest_tip(&*chain).await?;
        let base_fee = u128::from(head.header().base_fee_per_gas.unwrap_or(0));
        Ok(qty(tip.saturating_add(base_fee)))
    }
    .boxed_local())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_consensus::Header;

    #[test]
    fn rewards_are_gas_weighted_percentiles_of_tips() {
        // Tips 1, 2, 3 using 10, 80, 10 gas: half the gas is at the tip of 2.
        let txs = vec![(3, 10), (1, 10), (2, 80)];
        assert_eq!(
            rewards(100, txs.clone(), &[0.0, 10.0, 11.0, 50.0, 90.0, 91.0, 100.0]),
            vec![1, 1, 2, 2, 2, 3, 3]
        );
        assert_eq!(rewards(0, Vec::new(), &[10.0, 90.0]), vec![0, 0]);
        assert_eq!(rewards(100, txs, &[]), Vec::<u128>::new());
    }

    #[test]
    fn percentiles_are_checked_like_geth() {
        assert_eq!(percentiles(Some(&json!([10, 50.5, 90]))).unwrap(), vec![10.0, 50.5, 90.0]);
        assert_eq!(percentiles(None).unwrap(), Vec::<f64>::new());
        for bad in [json!([50, 50]), json!([60, 10]), json!([101]), json!([-1]), json!("x")] {
            assert!(percentiles(Some(&bad)).is_err(), "{bad}");
        }
        assert_eq!(block_count(&json!("0x10")).unwrap(), 16);
        assert_eq!(block_count(&json!("16")).unwrap(), 16);
        assert_eq!(block_count(&json!(16)).unwrap(), 16);
        assert!(block_count(&json!(-1)).is_err());
        assert!(block_count(&json!("0x")).is_err());
    }

    #[test]
    fn next_base_fee_follows_eip1559() {
        let header = |gas_used, base_fee| {
            SealedHeader::seal(Header {
                gas_limit: 30_000_000,
                gas_used,
                base_fee_per_gas: base_fee,
                ..Default::default()
            })
        };
        // At the target (half the limit): unchanged; full: +12.5 %; empty: -12.5 %.
        assert_eq!(next_base_fee(&header(15_000_000, Some(1_000_000_000))), 1_000_000_000);
        assert_eq!(next_base_fee(&header(30_000_000, Some(1_000_000_000))), 1_125_000_000);
        assert_eq!(next_base_fee(&header(0, Some(1_000_000_000))), 875_000_000);
        assert_eq!(next_base_fee(&header(0, None)), 0);
    }

    #[test]
    fn oracle_takes_the_60th_percentile_of_each_blocks_lowest_tips() {
        // Below 2 wei ignored, then the three lowest.
        assert_eq!(block_samples(vec![9, 1, 5, 7, 0, 8]), vec![5, 7, 8]);
        assert_eq!(pick(Vec::new()), DEFAULT_TIP);
        // Sorted 1..=10: index (10 - 1) * 60 / 100 = 5, the value 6.
        assert_eq!(pick((1..=10).rev().collect()), 6);
        assert_eq!(pick(vec![ORACLE_MAX * 2]), ORACLE_MAX);
    }
}
