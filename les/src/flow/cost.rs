//! The maximum request cost table (MRC) and a client's flow-control parameters, with the
//! defaults a geth v1.12 server advertises when no bandwidth limits are configured.

use crate::msg::{RequestCost, codes};
use std::collections::BTreeMap;

/// The maximum cost of each request type, keyed by message code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CostTable {
    entries: BTreeMap<u64, RequestCost>,
}

/// How many maximum-size requests of each type the smallest buffer must hold
/// (geth `minBufferMultiplier`).
pub const MIN_BUFFER_MULTIPLIER: u64 = 3;

/// Buffer limit divided by minimum recharge: a drained buffer refills in 6000 ms
/// (geth `bufLimitRatio`). A capacity of MRR goes with BL = MRR × this.
pub const BUF_LIMIT_RATIO: u64 = 6000;

/// geth v1.12 defaults (`reqAvgTimeCost` × `maxCostFactor` 2, so independent of the
/// global cost factor when no bandwidth limits are set), with the item count a minimum
/// buffer must fit [`MIN_BUFFER_MULTIPLIER`] times (`minBufferReqAmount`).
/// Columns: code, base cost, cost per item, item count for the minimum buffer.
const GETH_DEFAULT_COSTS: [(u64, u64, u64, u64); 8] = [
    (codes::GET_BLOCK_HEADERS, 300_000, 60_000, 192),
    (codes::GET_BLOCK_BODIES, 0, 1_400_000, 1),
    (codes::GET_RECEIPTS, 0, 2_000_000, 1),
    (codes::GET_CONTRACT_CODES, 0, 900_000, 1),
    (codes::GET_PROOFS_V2, 0, 1_200_000, 1),
    (codes::GET_HELPER_TRIE_PROOFS, 0, 2_000_000, 16),
    (codes::SEND_TX_V2, 0, 900_000, 8),
    (codes::GET_TX_STATUS, 0, 500_000, 64),
];

impl CostTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The table geth v1.12 advertises by default.
    pub fn geth_default() -> Self {
        GETH_DEFAULT_COSTS
            .iter()
            .map(|&(code, base_cost, request_cost, _)| RequestCost {
                code,
                base_cost,
                request_cost,
            })
            .collect()
    }

    /// The smallest buffer limit geth gives with its default table:
    /// [`MIN_BUFFER_MULTIPLIER`] × the largest `base + req × amount` over all request types.
    pub fn geth_min_buffer_limit() -> u64 {
        let largest = GETH_DEFAULT_COSTS
            .iter()
            .map(|&(_, base, req, amount)| base.saturating_add(req.saturating_mul(amount)))
            .max()
            .unwrap_or(0);
        largest.saturating_mul(MIN_BUFFER_MULTIPLIER)
    }

    /// Adds or replaces the entry for `entry.code`.
    pub fn insert(&mut self, entry: RequestCost) {
        self.entries.insert(entry.code, entry);
    }

    /// The entry for `code`.
    pub fn get(&self, code: u64) -> Option<RequestCost> {
        self.entries.get(&code).copied()
    }

    /// All entries, ordered by code.
    pub fn entries(&self) -> impl Iterator<Item = RequestCost> + '_ {
        self.entries.values().copied()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Applies an update announced by the server: its entries replace ours code by code,
    /// codes it does not mention keep their old cost.
    pub fn merge(&mut self, update: &CostTable) {
        for entry in update.entries() {
            self.insert(entry);
        }
    }

    /// `base_cost + request_cost * items` for `code`, saturating at `u64::MAX`; `None` if the
    /// table has no entry for `code`.
    pub fn max_cost(&self, code: u64, items: u64) -> Option<u64> {
        self.get(code)
            .map(|entry| entry.base_cost.saturating_add(entry.request_cost.saturating_mul(items)))
    }
}

/// Builds a table from entries; a later entry for the same code replaces an earlier one
/// (as geth's map does when it reads an MRC list).
impl FromIterator<RequestCost> for CostTable {
    fn from_iter<I: IntoIterator<Item = RequestCost>>(iter: I) -> Self {
        let mut table = Self::new();
        for entry in iter {
            table.insert(entry);
        }
        table
    }
}

/// The flow-control parameters a server gives a client (Status keys `flowControl/BL`,
/// `flowControl/MRR`, `flowControl/MRC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowParams {
    /// BL: the most the buffer can hold, in cost units.
    pub buffer_limit: u64,
    /// MRR: the least the buffer recharges per millisecond, in cost units.
    pub min_recharge: u64,
    /// MRC: the maximum cost of each request type.
    pub costs: CostTable,
}

impl FlowParams {
    /// Parameters for a capacity of `min_recharge` units per ms, with the buffer limit
    /// geth pairs with it (`min_recharge` × [`BUF_LIMIT_RATIO`], saturating).
    pub fn for_capacity(min_recharge: u64, costs: CostTable) -> Self {
        Self { buffer_limit: min_recharge.saturating_mul(BUF_LIMIT_RATIO), min_recharge, costs }
    }

    /// geth's minimum (free-client) parameters with the default cost table: the smallest
    /// capacity whose buffer holds [`CostTable::geth_min_buffer_limit`].
    pub fn geth_default() -> Self {
        let min_capacity = CostTable::geth_min_buffer_limit().div_ceil(BUF_LIMIT_RATIO);
        Self::for_capacity(min_capacity, CostTable::geth_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geth_default_numbers() {
        // research §5.4: minBufLimit 96,000,000 (3 × 16 × 2,000,000 helper-trie proofs,
        // tied with 64 × 500,000 tx status), ratio 6000, MRR 16,000, BL 96,000,000.
        assert_eq!(CostTable::geth_min_buffer_limit(), 96_000_000);
        let params = FlowParams::geth_default();
        assert_eq!(params.min_recharge, 16_000);
        assert_eq!(params.buffer_limit, 96_000_000);
        assert_eq!(params.costs.len(), 8);
        assert_eq!(params.costs.max_cost(0x02, 192), Some(300_000 + 192 * 60_000));
        assert_eq!(params.costs.max_cost(0x14, 64), Some(32_000_000));
        assert_eq!(params.costs.max_cost(0x00, 1), None);
    }

    #[test]
    fn max_cost_saturates() {
        let table: CostTable = [RequestCost { code: 1, base_cost: u64::MAX - 5, request_cost: 3 }]
            .into_iter()
            .collect();
        assert_eq!(table.max_cost(1, 1), Some(u64::MAX - 2));
        assert_eq!(table.max_cost(1, 2), Some(u64::MAX));
        assert_eq!(table.max_cost(1, u64::MAX), Some(u64::MAX));
        assert_eq!(table.max_cost(1, 0), Some(u64::MAX - 5));
    }

    #[test]
    fn later_entries_and_merges_replace_by_code() {
        let mut table: CostTable = [
            RequestCost { code: 2, base_cost: 1, request_cost: 1 },
            RequestCost { code: 4, base_cost: 0, request_cost: 10 },
            RequestCost { code: 2, base_cost: 5, request_cost: 5 },
        ]
        .into_iter()
        .collect();
        assert_eq!(table.len(), 2);
        assert_eq!(table.max_cost(2, 1), Some(10));
        let update: CostTable = [
            RequestCost { code: 4, base_cost: 1, request_cost: 1 },
            RequestCost { code: 6, base_cost: 0, request_cost: 7 },
        ]
        .into_iter()
        .collect();
        table.merge(&update);
        assert_eq!(table.max_cost(2, 1), Some(10));
        assert_eq!(table.max_cost(4, 1), Some(2));
        assert_eq!(table.max_cost(6, 2), Some(14));
        let codes: Vec<u64> = table.entries().map(|e| e.code).collect();
        assert_eq!(codes, [2, 4, 6]);
    }

    #[test]
    fn capacity_pairs_with_buffer_limit() {
        let params = FlowParams::for_capacity(20_000, CostTable::new());
        assert_eq!(params.buffer_limit, 120_000_000);
        assert_eq!(FlowParams::for_capacity(u64::MAX, CostTable::new()).buffer_limit, u64::MAX);
    }
}
