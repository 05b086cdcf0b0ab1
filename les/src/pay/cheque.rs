//! Payment-channel cheques: the EIP-712 message a channel's signer signs to promise a server a
//! *cumulative* amount out of one channel of `contracts/PaymentChannel.sol`, and the checks a
//! server makes on the signature before it looks at the channel's state; plus ([`contract`])
//! the contract's `open` call and `Opened` event, which a payer builds and reads.
//!
//! ```text
//! domain = EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)
//!          name "LesPaymentChannel", version "1"
//! type   = Cheque(bytes32 channelId,address payee,uint256 cumulativeAmount)
//! digest = keccak256(0x19 0x01 || domainSeparator || hashStruct(cheque))
//! sig    = r || s || v, 65 bytes, v in {27, 28}, s in the lower half of the group order
//! ```
//!
//! The signer is the address the payer named in `open` (itself, or a session key it delegated
//! cheque signing to); the contract's `redeem`/`close` recover it with exactly these rules,
//! so a cheque this
//! module accepts is one the chain accepts too. Low s is required (not normalised) because the
//! contract refuses high s: a server that credited a high-s cheque could not redeem it. The
//! EIP-712 hashing is alloy-sol-types' (`sol!` + `SolStruct`), so the encoding rules are not
//! written out again here; the tests recompute both hashes by hand from the type strings.

use crate::crypto::{self, CryptoError, NodeKey, NodePublicKey, RecoverableSignature};
use alloy_primitives::{Address, B256, U256};
use alloy_rlp::{Decodable, Encodable};
use alloy_sol_types::{Eip712Domain, SolStruct};
use std::borrow::Cow;

/// The EIP-712 domain name the contract uses.
pub const DOMAIN_NAME: &str = "LesPaymentChannel";
/// The EIP-712 domain version the contract uses.
pub const DOMAIN_VERSION: &str = "1";
/// The EIP-712 type string of a cheque; its keccak is the contract's `CHEQUE_TYPEHASH`.
pub const CHEQUE_TYPE: &str = "Cheque(bytes32 channelId,address payee,uint256 cumulativeAmount)";

mod sol {
    alloy_sol_types::sol! {
        /// The cheque as Solidity sees it (field names are part of the type hash).
        struct Cheque {
            bytes32 channelId;
            address payee;
            uint256 cumulativeAmount;
        }
    }
}

/// The upper bound of a low s: floor(n / 2) for the secp256k1 group order n.
const HALF_ORDER: U256 = U256::from_be_bytes(alloy_primitives::hex!(
    "7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0"
));

/// keccak256 of [`CHEQUE_TYPE`].
pub fn cheque_typehash() -> B256 {
    sol::Cheque { channelId: B256::ZERO, payee: Address::ZERO, cumulativeAmount: U256::ZERO }
        .eip712_type_hash()
}

/// Which deployment of the contract a cheque is for: the chain and the contract address.
/// Cheques for another chain or contract recover to a different (meaningless) address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChequeDomain {
    /// EIP-155 chain ID.
    pub chain_id: u64,
    /// The PaymentChannel contract (`verifyingContract`).
    pub contract: Address,
}

impl ChequeDomain {
    fn eip712(&self) -> Eip712Domain {
        Eip712Domain::new(
            Some(Cow::Borrowed(DOMAIN_NAME)),
            Some(Cow::Borrowed(DOMAIN_VERSION)),
            Some(U256::from(self.chain_id)),
            Some(self.contract),
            None,
        )
    }

    /// The domain separator; equals the contract's `DOMAIN_SEPARATOR()`.
    pub fn separator(&self) -> B256 {
        self.eip712().separator()
    }
}

/// A promise of `cumulative` wei in total (not an increment) from channel `channel_id` to
/// `payee`. A later cheque for the same channel supersedes an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cheque {
    /// The channel's ID, as returned by `open`.
    pub channel_id: B256,
    /// The channel's payee (the server's payment address).
    pub payee: Address,
    /// Total wei promised so far.
    pub cumulative: U256,
}

impl Cheque {
    fn sol(&self) -> sol::Cheque {
        sol::Cheque {
            channelId: self.channel_id,
            payee: self.payee,
            cumulativeAmount: self.cumulative,
        }
    }

    /// EIP-712 `hashStruct` of the cheque.
    pub fn struct_hash(&self) -> B256 {
        self.sol().eip712_hash_struct()
    }

    /// The 32-byte value that is signed; equals the contract's `chequeDigest`.
    pub fn digest(&self, domain: &ChequeDomain) -> B256 {
        self.sol().eip712_signing_hash(&domain.eip712())
    }

    /// Signs the cheque with the payer's key (deterministic RFC 6979 nonce, low s, v 27/28,
    /// the form `eth_signTypedData_v4` produces).
    pub fn sign(&self, key: &NodeKey, domain: &ChequeDomain) -> ChequeSignature {
        let mut sig = key.sign_prehash(&self.digest(domain));
        // crypto gives the recovery id 0/1; Ethereum's ecrecover wants 27/28.
        sig[64] += 27;
        ChequeSignature(sig)
    }

    /// The address that signed this cheque under `domain`. Refuses what the contract refuses:
    /// v outside {27, 28}, s above n/2, r or s zero or not below n.
    pub fn recover(
        &self,
        domain: &ChequeDomain,
        signature: &ChequeSignature,
    ) -> Result<Address, ChequeError> {
        let bytes = &signature.0;
        let v = bytes[64];
        if v != 27 && v != 28 {
            return Err(ChequeError::BadRecoveryByte(v));
        }
        if U256::from_be_slice(&bytes[32..64]) > HALF_ORDER {
            return Err(ChequeError::HighS);
        }
        let mut recoverable: RecoverableSignature = *bytes;
        recoverable[64] = v - 27;
        let public = crypto::recover(&self.digest(domain), &recoverable).map_err(|e| match e {
            CryptoError::RecoveryFailed => ChequeError::RecoveryFailed,
            _ => ChequeError::MalformedSignature,
        })?;
        Ok(address_of(&public))
    }
}

/// A cheque signature, `r || s || v` with v in {27, 28}. On the wire (RLP) it is a 65-byte
/// string; the contract takes the same 65 bytes as its `bytes sig` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChequeSignature(pub [u8; 65]);

impl ChequeSignature {
    /// The 65 bytes.
    pub fn as_bytes(&self) -> &[u8; 65] {
        &self.0
    }
}

impl From<[u8; 65]> for ChequeSignature {
    fn from(bytes: [u8; 65]) -> Self {
        Self(bytes)
    }
}

impl Encodable for ChequeSignature {
    fn encode(&self, out: &mut dyn alloy_rlp::BufMut) {
        self.0.encode(out);
    }

    fn length(&self) -> usize {
        self.0.length()
    }
}

impl Decodable for ChequeSignature {
    fn decode(buf: &mut &[u8]) -> alloy_rlp::Result<Self> {
        <[u8; 65]>::decode(buf).map(Self)
    }
}

/// The Ethereum address of a public key: the last 20 bytes of keccak256(X || Y).
pub fn address_of(public: &NodePublicKey) -> Address {
    Address::from_raw_public_key(public.as_slice())
}

/// The Ethereum address of a key: the payer address its cheques recover to.
pub fn key_address(key: &NodeKey) -> Address {
    address_of(&key.public_key())
}

/// Why a cheque signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChequeError {
    /// The last byte is not 27 or 28.
    #[error("cheque signature v = {0}, expected 27 or 28")]
    BadRecoveryByte(u8),
    /// s is in the upper half of the group order (the malleable twin of a valid signature).
    #[error("cheque signature has a high s")]
    HighS,
    /// r or s is zero or not below the group order.
    #[error("cheque signature r or s out of range")]
    MalformedSignature,
    /// Well formed, but no public key recovers from it.
    #[error("cheque signature does not recover to a public key")]
    RecoveryFailed,
}

/// The contract's `open` and `topUp` calls and their `Opened` and `ToppedUp` events as a payer
/// builds and reads them, coded by alloy-sol-types from the Solidity declarations (so the ABI
/// rules are not written out here).
pub mod contract {
    use alloy_primitives::{Address, B256, Bytes, LogData, U256};
    use alloy_sol_types::{SolCall, SolEvent};

    mod sol {
        alloy_sol_types::sol! {
            function open(address payee, address signer, uint64 expiry) external payable returns (bytes32 id);
            event Opened(bytes32 indexed id, address indexed payer, address indexed payee, uint256 deposit, uint64 expiry, address signer);
            function topUp(bytes32 id) external payable;
            event ToppedUp(bytes32 indexed id, uint256 deposit);
        }
    }

    /// The `open` function's signature (its selector is the first 4 bytes of its hash).
    pub const OPEN_SIGNATURE: &str = "open(address,address,uint64)";
    /// The `Opened` event's signature (topic 0 is its hash).
    pub const OPENED_SIGNATURE: &str = "Opened(bytes32,address,address,uint256,uint64,address)";
    /// The `topUp` function's signature.
    pub const TOP_UP_SIGNATURE: &str = "topUp(bytes32)";
    /// The `ToppedUp` event's signature.
    pub const TOPPED_UP_SIGNATURE: &str = "ToppedUp(bytes32,uint256)";

    /// The call data of `topUp(id)`: the transaction's value is added to channel `id`'s
    /// deposit.
    pub fn top_up_calldata(id: B256) -> Bytes {
        sol::topUpCall { id }.abi_encode().into()
    }

    /// The `ToppedUp` event in a log: (channel ID, the channel's whole deposit after it).
    pub fn decode_topped_up(data: &LogData) -> Option<(B256, U256)> {
        let event = sol::ToppedUp::decode_log_data(data).ok()?;
        Some((event.id, event.deposit))
    }

    /// The call data of `open(payee, signer, expiry)`: a channel to `payee` whose cheques
    /// `signer` signs, reclaimable by the sender from `expiry` (Unix seconds).
    pub fn open_calldata(payee: Address, signer: Address, expiry: u64) -> Bytes {
        sol::openCall { payee, signer, expiry }.abi_encode().into()
    }

    /// A channel as its `Opened` event reports it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Opened {
        /// The channel ID.
        pub channel_id: B256,
        /// Who funded it (the transaction's sender): refunds go there.
        pub payer: Address,
        /// Who is paid.
        pub payee: Address,
        /// The deposit, wei.
        pub deposit: U256,
        /// Unix seconds from which the payer may reclaim.
        pub expiry: u64,
        /// Whose signatures the channel's cheques must carry.
        pub signer: Address,
    }

    /// The `Opened` event in a log's topics and data, or `None` if it is another event or
    /// does not decode (the emitting address is the caller's to check).
    pub fn decode_opened(data: &LogData) -> Option<Opened> {
        let event = sol::Opened::decode_log_data(data).ok()?;
        Some(Opened {
            channel_id: event.id,
            payer: event.payer,
            payee: event.payee,
            deposit: event.deposit,
            expiry: event.expiry,
            signer: event.signer,
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use alloy_primitives::keccak256;

        #[test]
        fn the_abi_matches_the_signatures() {
            assert_eq!(sol::openCall::SELECTOR, keccak256(OPEN_SIGNATURE)[..4]);
            assert_eq!(sol::Opened::SIGNATURE_HASH, keccak256(OPENED_SIGNATURE));
            assert_eq!(sol::topUpCall::SELECTOR, keccak256(TOP_UP_SIGNATURE)[..4]);
            assert_eq!(sol::ToppedUp::SIGNATURE_HASH, keccak256(TOPPED_UP_SIGNATURE));
            let top_up = top_up_calldata(B256::repeat_byte(0x1d));
            assert_eq!((top_up.len(), &top_up[4..]), (36, B256::repeat_byte(0x1d).as_slice()));
            let topped = LogData::new_unchecked(
                vec![keccak256(TOPPED_UP_SIGNATURE), B256::repeat_byte(0x1d)],
                U256::from(300u64).to_be_bytes::<32>().to_vec().into(),
            );
            assert_eq!(
                decode_topped_up(&topped),
                Some((B256::repeat_byte(0x1d), U256::from(300u64)))
            );
            let data = open_calldata(Address::repeat_byte(0xee), Address::repeat_byte(0x5e), 7);
            assert_eq!(data.len(), 4 + 3 * 32);
            assert_eq!(&data[16..36], Address::repeat_byte(0xee).as_slice());
            assert_eq!(&data[48..68], Address::repeat_byte(0x5e).as_slice());
            assert_eq!(U256::from_be_slice(&data[68..100]), U256::from(7u64));
        }

        #[test]
        fn an_opened_log_decodes_and_others_do_not() {
            let word = |a: Address| B256::left_padding_from(a.as_slice());
            let (payer, payee, signer) = (
                Address::repeat_byte(0xaa),
                Address::repeat_byte(0xee),
                Address::repeat_byte(0x5e),
            );
            let mut data = U256::from(100u64).to_be_bytes::<32>().to_vec();
            data.extend_from_slice(&U256::from(1_900_000_000u64).to_be_bytes::<32>());
            data.extend_from_slice(word(signer).as_slice());
            let topics = vec![
                keccak256(OPENED_SIGNATURE),
                B256::repeat_byte(0x1d),
                word(payer),
                word(payee),
            ];
            let log = LogData::new_unchecked(topics.clone(), data.clone().into());
            assert_eq!(
                decode_opened(&log),
                Some(Opened {
                    channel_id: B256::repeat_byte(0x1d),
                    payer,
                    payee,
                    deposit: U256::from(100u64),
                    expiry: 1_900_000_000,
                    signer
                })
            );
            // The old five-field event (no signer) is another signature: not decoded.
            let mut old = topics.clone();
            old[0] = keccak256("Opened(bytes32,address,address,uint256,uint64)");
            assert_eq!(decode_opened(&LogData::new_unchecked(old, data.clone().into())), None);
            assert_eq!(
                decode_opened(&LogData::new_unchecked(topics, data[..64].to_vec().into())),
                None
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{address, b256, hex, keccak256};

    /// The secp256k1 group order n.
    const ORDER: U256 = U256::from_be_bytes(hex!(
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
    ));

    fn keccak_str(s: &str) -> B256 {
        keccak256(s.as_bytes())
    }

    const PAYER_SECRET: [u8; 32] =
        hex!("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318");

    fn domain() -> ChequeDomain {
        ChequeDomain {
            chain_id: 31337,
            contract: address!("5FbDB2315678afecb367f032d93F642f64180aa3"),
        }
    }

    fn cheque() -> Cheque {
        Cheque {
            channel_id: b256!("1111111111111111111111111111111111111111111111111111111111111111"),
            payee: address!("70997970C51812dc3A010C7d01b50e0d17dc79C8"),
            cumulative: U256::from(1_000_000_000_000_000u64),
        }
    }

    fn word(value: U256) -> [u8; 32] {
        value.to_be_bytes()
    }

    fn address_word(address: Address) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[12..].copy_from_slice(address.as_slice());
        out
    }

    #[test]
    fn hashes_match_a_recomputation_from_the_type_strings() {
        assert_eq!(cheque_typehash(), keccak_str(CHEQUE_TYPE));
        let d = domain();
        let domain_type = keccak_str(
            "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)",
        );
        let mut encoded = Vec::new();
        encoded.extend_from_slice(domain_type.as_slice());
        encoded.extend_from_slice(keccak_str(DOMAIN_NAME).as_slice());
        encoded.extend_from_slice(keccak_str(DOMAIN_VERSION).as_slice());
        encoded.extend_from_slice(&word(U256::from(d.chain_id)));
        encoded.extend_from_slice(&address_word(d.contract));
        assert_eq!(d.separator(), keccak256(&encoded));

        let c = cheque();
        let mut encoded = Vec::new();
        encoded.extend_from_slice(keccak_str(CHEQUE_TYPE).as_slice());
        encoded.extend_from_slice(c.channel_id.as_slice());
        encoded.extend_from_slice(&address_word(c.payee));
        encoded.extend_from_slice(&word(c.cumulative));
        assert_eq!(c.struct_hash(), keccak256(&encoded));

        let mut signed = vec![0x19, 0x01];
        signed.extend_from_slice(d.separator().as_slice());
        signed.extend_from_slice(c.struct_hash().as_slice());
        assert_eq!(c.digest(&d), keccak256(&signed));
    }

    #[test]
    fn half_order_is_n_over_2() {
        assert_eq!(HALF_ORDER, ORDER >> 1);
    }

    #[test]
    fn address_of_known_keys() {
        // anvil's first dev account, and the key of the web3.js accounts documentation.
        let anvil = hex!("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80");
        let key = NodeKey::from_bytes(&anvil).unwrap();
        assert_eq!(key_address(&key), address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266"));
        let key = NodeKey::from_bytes(&PAYER_SECRET).unwrap();
        assert_eq!(key_address(&key), address!("2c7536E3605D9C16a7a3D7b1898e529396a65c23"));
    }

    #[test]
    fn sign_then_recover_round_trips_with_low_s_and_v_27_28() {
        let mut seen_v = [false; 2];
        for i in 1u8..=40 {
            let key = NodeKey::from_bytes(&[i; 32]).unwrap();
            let c = Cheque { cumulative: U256::from(i), ..cheque() };
            let sig = c.sign(&key, &domain());
            let v = sig.0[64];
            assert!(v == 27 || v == 28, "v = {v}");
            seen_v[usize::from(v - 27)] = true;
            assert!(U256::from_be_slice(&sig.0[32..64]) <= HALF_ORDER);
            assert_eq!(c.recover(&domain(), &sig), Ok(key_address(&key)));
        }
        assert_eq!(seen_v, [true, true], "40 signatures should use both recovery ids");
    }

    #[test]
    fn the_high_s_twin_is_rejected() {
        let key = NodeKey::from_bytes(&PAYER_SECRET).unwrap();
        let c = cheque();
        let sig = c.sign(&key, &domain());
        let s = U256::from_be_slice(&sig.0[32..64]);
        let mut twin = sig;
        twin.0[32..64].copy_from_slice(&(ORDER - s).to_be_bytes::<32>());
        twin.0[64] = if sig.0[64] == 27 { 28 } else { 27 };
        assert_eq!(c.recover(&domain(), &twin), Err(ChequeError::HighS));
        // The twin is a valid ECDSA signature of the same key: only the rule refuses it.
        let mut recoverable = twin.0;
        recoverable[64] -= 27;
        assert_eq!(
            crypto::recover(&c.digest(&domain()), &recoverable).map(|p| address_of(&p)),
            Ok(key_address(&key))
        );
    }

    #[test]
    fn bad_v_r_s_are_rejected() {
        let key = NodeKey::from_bytes(&PAYER_SECRET).unwrap();
        let c = cheque();
        let sig = c.sign(&key, &domain());
        for v in [0u8, 1, 26, 29, 255] {
            let mut bad = sig;
            bad.0[64] = v;
            assert_eq!(c.recover(&domain(), &bad), Err(ChequeError::BadRecoveryByte(v)));
        }
        let mut zero_r = sig;
        zero_r.0[..32].fill(0);
        assert_eq!(c.recover(&domain(), &zero_r), Err(ChequeError::MalformedSignature));
        let mut zero_s = sig;
        zero_s.0[32..64].fill(0);
        assert_eq!(c.recover(&domain(), &zero_s), Err(ChequeError::MalformedSignature));
        let mut big_r = sig;
        big_r.0[..32].copy_from_slice(&ORDER.to_be_bytes::<32>());
        assert_eq!(c.recover(&domain(), &big_r), Err(ChequeError::MalformedSignature));
    }

    #[test]
    fn another_domain_or_field_recovers_another_address() {
        let key = NodeKey::from_bytes(&PAYER_SECRET).unwrap();
        let payer = key_address(&key);
        let c = cheque();
        let sig = c.sign(&key, &domain());
        let other_chain = ChequeDomain { chain_id: 1, ..domain() };
        let other_contract = ChequeDomain { contract: Address::repeat_byte(0x42), ..domain() };
        for d in [other_chain, other_contract] {
            assert_ne!(d.separator(), domain().separator());
            assert_ne!(c.recover(&d, &sig).ok(), Some(payer), "{d:?}");
        }
        let others = [
            Cheque { channel_id: B256::repeat_byte(0x22), ..c },
            Cheque { payee: Address::repeat_byte(0x33), ..c },
            Cheque { cumulative: c.cumulative + U256::from(1), ..c },
        ];
        for other in others {
            assert_ne!(other.digest(&domain()), c.digest(&domain()));
            assert_ne!(other.recover(&domain(), &sig).ok(), Some(payer), "{other:?}");
        }
    }

    /// contracts/test-vectors/cheque.json: a cheque signed with viem's `signTypedData`
    /// (helper B's generator, checked there against the deployed contract). Every value must
    /// match byte for byte, independently of our own recomputation above.
    #[test]
    fn matches_the_viem_vector() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../contracts/test-vectors/cheque.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} is part of the repository: {e}", path.display()));
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let s = |ptr: &str| v.pointer(ptr).and_then(|x| x.as_str()).expect(ptr).to_owned();
        let secret: [u8; 32] = hex::decode(s("/privateKey")).unwrap().try_into().unwrap();
        let key = NodeKey::from_bytes(&secret).unwrap();
        assert_eq!(s("/domain/name"), DOMAIN_NAME);
        assert_eq!(s("/domain/version"), DOMAIN_VERSION);
        let domain = ChequeDomain {
            chain_id: v.pointer("/domain/chainId").and_then(|x| x.as_u64()).expect("chainId"),
            contract: s("/domain/verifyingContract").parse().unwrap(),
        };
        let cheque = Cheque {
            channel_id: s("/message/channelId").parse().unwrap(),
            payee: s("/message/payee").parse().unwrap(),
            cumulative: s("/message/cumulativeAmount").parse().unwrap(),
        };
        let b256 = |ptr: &str| s(ptr).parse::<B256>().unwrap();
        assert_eq!(cheque_typehash(), b256("/typeHash"));
        assert_eq!(domain.separator(), b256("/domainSeparator"));
        assert_eq!(cheque.struct_hash(), b256("/structHash"));
        assert_eq!(cheque.digest(&domain), b256("/digest"));
        let expected: [u8; 65] = hex::decode(s("/signature")).unwrap().try_into().unwrap();
        assert_eq!(cheque.sign(&key, &domain), ChequeSignature(expected));
        let signer: Address = s("/signer").parse().unwrap();
        assert_eq!(key_address(&key), signer);
        assert_eq!(cheque.recover(&domain, &ChequeSignature(expected)), Ok(signer));
    }

    #[test]
    fn signature_rlp_is_a_65_byte_string() {
        let sig = ChequeSignature([7u8; 65]);
        let encoded = alloy_rlp::encode(sig);
        assert_eq!(&encoded[..2], &hex!("b841"));
        assert_eq!(ChequeSignature::decode(&mut &encoded[..]), Ok(sig));
        let short = alloy_rlp::encode([7u8; 64]);
        assert!(ChequeSignature::decode(&mut &short[..]).is_err());
    }
}
