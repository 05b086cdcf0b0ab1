//! Strict parsing of request parameters (EIP-1474 encodings, EIP-1898 block parameters).
//! Anything malformed is a -32602 naming the parameter; nothing here panics on input.

use super::error::RpcError;
use alloy_primitives::{Address, B256, Bytes, U256};
use serde_json::Value;

/// The positional parameters of one request.
#[derive(Debug)]
pub struct Params {
    method: String,
    items: Vec<Value>,
    /// The dapp sent an object: acceptable only for methods that take no parameters.
    by_name: bool,
}

impl Params {
    /// Accepts an array, `null` (absent) or an object (by-name parameters, which no method
    /// here takes); anything else is -32602.
    pub fn new(method: &str, params: Value) -> Result<Self, RpcError> {
        let (items, by_name) = match params {
            Value::Array(items) => (items, false),
            Value::Null => (Vec::new(), false),
            Value::Object(_) => (Vec::new(), true),
            other => {
                return Err(RpcError::invalid_params(format!(
                    "{method}: params must be an array, got {}",
                    kind(&other)
                )));
            }
        };
        Ok(Self { method: method.to_owned(), items, by_name })
    }

    /// Checks that there are between `required` and `max` parameters; a method that takes
    /// none ignores an object.
    pub fn arity(&self, required: usize, max: usize) -> Result<(), RpcError> {
        if self.by_name && max > 0 {
            return Err(RpcError::invalid_params(format!(
                "{}: params must be an array of positional parameters",
                self.method
            )));
        }
        let n = self.items.len();
        if n < required || n > max {
            let expected = if required == max {
                format!("{required}")
            } else {
                format!("{required} to {max}")
            };
            return Err(RpcError::invalid_params(format!(
                "{}: expected {expected} parameters, got {n}",
                self.method
            )));
        }
        Ok(())
    }

    /// Parameter `index`, or `None` if absent or `null` (optional trailing parameters).
    pub fn get(&self, index: usize) -> Option<&Value> {
        self.items.get(index).filter(|value| !value.is_null())
    }

    /// Parameter `index`, which must be present.
    pub fn required(&self, index: usize, name: &str) -> Result<&Value, RpcError> {
        self.get(index).ok_or_else(|| {
            RpcError::invalid_params(format!("{}: missing parameter {name}", self.method))
        })
    }

    /// The method these parameters belong to (for messages).
    pub fn method(&self) -> &str {
        &self.method
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn bad(name: &str, why: impl std::fmt::Display) -> RpcError {
    RpcError::invalid_params(format!("invalid {name}: {why}"))
}

fn string<'a>(value: &'a Value, name: &str) -> Result<&'a str, RpcError> {
    value.as_str().ok_or_else(|| bad(name, format!("expected a hex string, got {}", kind(value))))
}

/// The hex digits after a mandatory `0x`, all checked to be hex.
fn hex_digits<'a>(text: &'a str, name: &str) -> Result<&'a str, RpcError> {
    let digits = text
        .strip_prefix("0x")
        .ok_or_else(|| bad(name, format!("{text:?} does not start with 0x")))?;
    if let Some(c) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(bad(name, format!("{c:?} is not a hex digit")));
    }
    Ok(digits)
}

/// A QUANTITY's digits: at least one, no leading zero unless it is `0x0`.
fn quantity_digits<'a>(value: &'a Value, name: &str) -> Result<&'a str, RpcError> {
    let digits = hex_digits(string(value, name)?, name)?;
    if digits.is_empty() {
        return Err(bad(name, "a quantity needs at least one digit (zero is 0x0)"));
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return Err(bad(name, "a quantity has no leading zeros"));
    }
    Ok(digits)
}

/// A QUANTITY that fits a u64.
pub fn quantity_u64(value: &Value, name: &str) -> Result<u64, RpcError> {
    let digits = quantity_digits(value, name)?;
    u64::from_str_radix(digits, 16).map_err(|_| bad(name, "quantity does not fit 64 bits"))
}

/// A QUANTITY up to 256 bits.
pub fn quantity_u256(value: &Value, name: &str) -> Result<U256, RpcError> {
    let digits = quantity_digits(value, name)?;
    U256::from_str_radix(digits, 16).map_err(|_| bad(name, "quantity does not fit 256 bits"))
}

/// DATA: `0x` and two hex digits per byte.
pub fn data(value: &Value, name: &str) -> Result<Bytes, RpcError> {
    let digits = hex_digits(string(value, name)?, name)?;
    if digits.len() % 2 != 0 {
        return Err(bad(name, "data needs two hex digits per byte (odd length)"));
    }
    alloy_primitives::hex::decode(digits).map(Bytes::from).map_err(|e| bad(name, e))
}

/// DATA of exactly `N` bytes.
fn fixed<const N: usize>(value: &Value, name: &str) -> Result<[u8; N], RpcError> {
    let bytes = data(value, name)?;
    <[u8; N]>::try_from(bytes.as_ref())
        .map_err(|_| bad(name, format!("expected {N} bytes, got {}", bytes.len())))
}

/// A 20-byte address (any letter case; the checksum is not checked).
pub fn address(value: &Value, name: &str) -> Result<Address, RpcError> {
    fixed::<20>(value, name).map(Address::from)
}

/// A 32-byte hash.
pub fn hash(value: &Value, name: &str) -> Result<B256, RpcError> {
    fixed::<32>(value, name).map(B256::from)
}

/// A boolean.
pub fn boolean(value: &Value, name: &str) -> Result<bool, RpcError> {
    value.as_bool().ok_or_else(|| bad(name, format!("expected a boolean, got {}", kind(value))))
}

/// A storage slot as `eth_getStorageAt` and `eth_getProof` take it (geth's rule): `0x` and 1
/// to 64 hex digits, a quantity or data of up to 32 bytes, left-padded to 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotKey {
    /// The slot, padded.
    pub slot: B256,
    /// Given as the full 32 bytes (echoed that way by `eth_getProof`, else as a quantity).
    pub full_width: bool,
}

/// See [`SlotKey`].
pub fn slot(value: &Value, name: &str) -> Result<SlotKey, RpcError> {
    let digits = hex_digits(string(value, name)?, name)?;
    if digits.is_empty() || digits.len() > 64 {
        return Err(bad(name, format!("a slot has 1 to 64 hex digits, got {}", digits.len())));
    }
    let padded = format!("{digits:0>64}");
    let mut slot = [0u8; 32];
    alloy_primitives::hex::decode_to_slice(&padded, &mut slot).map_err(|e| bad(name, e))?;
    Ok(SlotKey { slot: B256::from(slot), full_width: digits.len() == 64 })
}

/// A block named by number or tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockTag {
    /// `latest`, and also `pending`, `safe` and `finalized`: ULC accepts one head and has no
    /// pending block and no finality gadget, so all four are the accepted head.
    Latest,
    /// `earliest`: block 0.
    Earliest,
    /// A block number.
    Number(u64),
}

/// A block parameter: a number or tag, or (EIP-1898) a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockId {
    /// By number or tag.
    Tag(BlockTag),
    /// By hash; `require_canonical` asks that the block be on the accepted head's chain.
    Hash {
        /// The block hash.
        hash: B256,
        /// EIP-1898 `requireCanonical` (default false).
        require_canonical: bool,
    },
}

impl BlockId {
    /// The accepted head.
    pub const LATEST: Self = Self::Tag(BlockTag::Latest);
}

/// A block number or tag (what `eth_getBlockByNumber` takes).
pub fn block_tag(value: &Value, name: &str) -> Result<BlockTag, RpcError> {
    match value.as_str() {
        Some("latest" | "pending" | "safe" | "finalized") => Ok(BlockTag::Latest),
        Some("earliest") => Ok(BlockTag::Earliest),
        Some(text) if text.starts_with("0x") => quantity_u64(value, name).map(BlockTag::Number),
        Some(text) => Err(bad(
            name,
            format!(
                "{text:?} is neither a block number (0x-prefixed hex) nor one of latest, \
                 pending, safe, finalized, earliest"
            ),
        )),
        None => Err(bad(name, format!("expected a block number or tag, got {}", kind(value)))),
    }
}

/// A block number, tag, or EIP-1898 object `{blockHash, requireCanonical?}` / `{blockNumber}`.
pub fn block_id(value: &Value, name: &str) -> Result<BlockId, RpcError> {
    let Value::Object(object) = value else {
        return block_tag(value, name).map(BlockId::Tag);
    };
    if let Some(key) = object
        .keys()
        .find(|key| !matches!(key.as_str(), "blockHash" | "blockNumber" | "requireCanonical"))
    {
        return Err(bad(name, format!("unknown key {key:?} in a block parameter object")));
    }
    match (object.get("blockHash"), object.get("blockNumber")) {
        (Some(hash_value), None) => {
            let require_canonical = match object.get("requireCanonical") {
                None => false,
                Some(flag) => boolean(flag, &format!("{name}.requireCanonical"))?,
            };
            Ok(BlockId::Hash {
                hash: hash(hash_value, &format!("{name}.blockHash"))?,
                require_canonical,
            })
        }
        (None, Some(number)) if !object.contains_key("requireCanonical") => {
            block_tag(number, &format!("{name}.blockNumber")).map(BlockId::Tag)
        }
        (None, Some(_)) => Err(bad(name, "requireCanonical goes with blockHash, not blockNumber")),
        (Some(_), Some(_)) => Err(bad(name, "give blockHash or blockNumber, not both")),
        (None, None) => Err(bad(name, "a block parameter object needs blockHash or blockNumber")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::error::codes::INVALID_PARAMS;
    use serde_json::json;

    fn rejects<T: std::fmt::Debug>(result: Result<T, RpcError>, needle: &str) {
        let error = result.expect_err("accepted bad input");
        assert_eq!(error.code, INVALID_PARAMS);
        assert!(error.message.contains(needle), "{:?} does not mention {needle:?}", error.message);
    }

    #[test]
    fn quantities_are_minimal_and_prefixed() {
        assert_eq!(quantity_u64(&json!("0x0"), "n").unwrap(), 0);
        assert_eq!(quantity_u64(&json!("0x1f"), "n").unwrap(), 31);
        assert_eq!(quantity_u64(&json!("0xAb"), "n").unwrap(), 0xab);
        assert_eq!(quantity_u64(&json!("0xffffffffffffffff"), "n").unwrap(), u64::MAX);
        rejects(quantity_u64(&json!("0x01"), "blockNumber"), "blockNumber");
        rejects(quantity_u64(&json!("0x01"), "n"), "leading zeros");
        rejects(quantity_u64(&json!("0x"), "n"), "at least one digit");
        rejects(quantity_u64(&json!("12"), "n"), "0x");
        rejects(quantity_u64(&json!("0xg"), "n"), "hex digit");
        rejects(quantity_u64(&json!(12), "n"), "a number");
        rejects(quantity_u64(&json!("0x10000000000000000"), "n"), "64 bits");
        assert_eq!(quantity_u256(&json!(format!("0x{}", "f".repeat(64))), "v").unwrap(), U256::MAX);
        rejects(quantity_u256(&json!(format!("0x1{}", "0".repeat(64))), "v"), "256 bits");
    }

    #[test]
    fn data_addresses_and_hashes_have_exact_widths() {
        assert_eq!(data(&json!("0x"), "d").unwrap(), Bytes::new());
        assert_eq!(data(&json!("0x00fF"), "d").unwrap(), Bytes::from(vec![0, 255]));
        rejects(data(&json!("0x0"), "d"), "odd length");
        rejects(data(&json!("00"), "d"), "0x");
        let lower = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed";
        let checksummed = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        assert_eq!(
            address(&json!(lower), "a").unwrap(),
            address(&json!(checksummed), "a").unwrap()
        );
        rejects(address(&json!(&lower[..40]), "address"), "expected 20 bytes, got 19");
        rejects(address(&json!(format!("{lower}00")), "address"), "got 21");
        rejects(hash(&json!(lower), "blockHash"), "expected 32 bytes");
        assert_eq!(
            hash(&json!(format!("0x{}", "11".repeat(32))), "h").unwrap(),
            B256::repeat_byte(0x11)
        );
        rejects(boolean(&json!("true"), "full"), "expected a boolean");
    }

    #[test]
    fn slots_take_quantities_or_data_left_padded() {
        let one = B256::with_last_byte(1);
        assert_eq!(slot(&json!("0x1"), "s").unwrap(), SlotKey { slot: one, full_width: false });
        assert_eq!(slot(&json!("0x01"), "s").unwrap(), SlotKey { slot: one, full_width: false });
        let full = format!("0x{}", "0".repeat(63) + "1");
        assert_eq!(slot(&json!(full), "s").unwrap(), SlotKey { slot: one, full_width: true });
        rejects(slot(&json!(format!("0x{}", "0".repeat(65))), "slot"), "1 to 64");
        rejects(slot(&json!("0x"), "slot"), "1 to 64");
        rejects(slot(&json!("1"), "slot"), "0x");
    }

    #[test]
    fn block_parameters_cover_tags_numbers_and_eip1898() {
        for tag in ["latest", "pending", "safe", "finalized"] {
            assert_eq!(block_id(&json!(tag), "b").unwrap(), BlockId::LATEST);
        }
        assert_eq!(block_id(&json!("earliest"), "b").unwrap(), BlockId::Tag(BlockTag::Earliest));
        assert_eq!(block_id(&json!("0x10"), "b").unwrap(), BlockId::Tag(BlockTag::Number(16)));
        let h = format!("0x{}", "ab".repeat(32));
        assert_eq!(
            block_id(&json!({"blockHash": h}), "b").unwrap(),
            BlockId::Hash { hash: B256::repeat_byte(0xab), require_canonical: false }
        );
        assert_eq!(
            block_id(&json!({"blockHash": h, "requireCanonical": true}), "b").unwrap(),
            BlockId::Hash { hash: B256::repeat_byte(0xab), require_canonical: true }
        );
        assert_eq!(
            block_id(&json!({"blockNumber": "0x2"}), "b").unwrap(),
            BlockId::Tag(BlockTag::Number(2))
        );
        rejects(block_id(&json!({"blockHash": h, "blockNumber": "0x2"}), "b"), "not both");
        rejects(block_id(&json!({}), "b"), "needs blockHash");
        rejects(block_id(&json!({"blockHash": h, "x": 1}), "b"), "unknown key");
        rejects(
            block_id(&json!({"blockNumber": "0x1", "requireCanonical": true}), "b"),
            "goes with",
        );
        rejects(block_id(&json!({"blockHash": "0x12"}), "block"), "block.blockHash");
        rejects(block_id(&json!("newest"), "block"), "neither");
        rejects(block_id(&json!("0x01"), "block"), "leading zeros");
        rejects(block_id(&json!(1), "block"), "a number");
        // eth_getBlockByNumber takes no object.
        rejects(block_tag(&json!({"blockNumber": "0x1"}), "block"), "an object");
    }

    #[test]
    fn params_shape_and_arity() {
        let p = Params::new("eth_x", json!(["0x1"])).unwrap();
        assert!(p.arity(1, 2).is_ok());
        rejects(p.arity(2, 2), "expected 2 parameters, got 1");
        rejects(p.arity(0, 0), "expected 0 parameters");
        let none = Params::new("eth_chainId", Value::Null).unwrap();
        assert!(none.arity(0, 0).is_ok());
        let object = Params::new("eth_chainId", json!({})).unwrap();
        assert!(object.arity(0, 0).is_ok());
        let object = Params::new("eth_getBalance", json!({"address": "0x"})).unwrap();
        rejects(object.arity(1, 2), "positional");
        rejects(Params::new("eth_x", json!("0x1")), "must be an array");
        let with_null = Params::new("eth_x", json!(["0x1", null])).unwrap();
        assert!(with_null.get(1).is_none());
        rejects(with_null.required(1, "block").map(|_| ()), "missing parameter block");
    }
}
