//! The execution environment of a block: the revm spec in force and the block context
//! (`NUMBER`, `TIMESTAMP`, `COINBASE`, `PREVRANDAO`, `BASEFEE`, `GASLIMIT`, `BLOBBASEFEE`),
//! all from the verified header.

use les::chain::SealedHeader;
use les::msg::{MAINNET_NETWORK_ID, MAINNET_TIME_FORKS};
use revm::context::BlockEnv;
use revm::context_interface::block::BlobExcessGasAndPrice;
use revm::primitives::U256;
use revm::primitives::hardfork::SpecId;

/// The spec a block runs under. Mainnet: the latest of its timestamp forks active at the
/// block's time (Shanghai, Cancun, Prague, Osaka; the BPO forks change only blob
/// parameters), Paris before them — the client verifies recent blocks only. Any other
/// chain: the latest released spec, as anvil and dev chains run by default.
pub fn spec_for(chain_id: u64, timestamp: u64) -> SpecId {
    if chain_id != MAINNET_NETWORK_ID {
        return SpecId::OSAKA;
    }
    MAINNET_TIME_FORKS.iter().filter(|(_, time)| timestamp >= *time).fold(
        SpecId::MERGE,
        |spec, (name, _)| match *name {
            "Shanghai" => SpecId::SHANGHAI,
            "Cancun" => SpecId::CANCUN,
            "Prague" => SpecId::PRAGUE,
            "Osaka" => SpecId::OSAKA,
            // BPO1, BPO2: blob parameters only; the EVM stays as it was.
            _ => spec,
        },
    )
}

/// The block context of `header`. `blob_gas_price` is the chain's blob base fee where its
/// blob schedule is known (mainnet); elsewhere it is derived from the excess blob gas with
/// the spec's default update fraction.
pub fn block_env(header: &SealedHeader, spec: SpecId, blob_gas_price: Option<u128>) -> BlockEnv {
    let h = header.header();
    let blob = h.excess_blob_gas.map(|excess| match blob_gas_price {
        Some(price) => BlobExcessGasAndPrice { excess_blob_gas: excess, blob_gasprice: price },
        None => BlobExcessGasAndPrice::new_with_spec(excess, spec),
    });
    BlockEnv {
        number: U256::from(h.number),
        beneficiary: h.beneficiary,
        timestamp: U256::from(h.timestamp),
        gas_limit: h.gas_limit,
        basefee: h.base_fee_per_gas.unwrap_or(0),
        difficulty: h.difficulty,
        // After the merge the mix hash field carries RANDAO (EIP-4399).
        prevrandao: Some(h.mix_hash),
        blob_excess_gas_and_price: blob,
        ..BlockEnv::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mainnet_spec_follows_the_timestamp_forks() {
        assert_eq!(spec_for(1, 1_681_338_454), SpecId::MERGE);
        assert_eq!(spec_for(1, 1_681_338_455), SpecId::SHANGHAI);
        assert_eq!(spec_for(1, 1_710_338_135), SpecId::CANCUN);
        assert_eq!(spec_for(1, 1_746_612_311), SpecId::PRAGUE);
        assert_eq!(spec_for(1, 1_764_798_551), SpecId::OSAKA);
        assert_eq!(spec_for(1, 1_767_747_671), SpecId::OSAKA);
        assert_eq!(spec_for(31337, 0), SpecId::OSAKA);
    }
}
