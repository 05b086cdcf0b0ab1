//! LES message vectors (research §3.3-§3.9), Status validation in both roles, and the
//! decoder's refusals.

use alloy_primitives::{Address, B256, Bytes, U256, b256, hex, keccak256};
use alloy_rlp::{Encodable, Header};
use les::msg::{
    AccountKey, Announce, AnnounceType, BlockHeaders, ContractCodes, ForkId, ForkIdError,
    ForkSchedule, GetBlockHeaders, GetTxStatus, HelperTrieRequest, KvList, LesMessage, LesVersion,
    LocalStatus, MAINNET_GENESIS_HASH, MAX_MESSAGE_SIZE, MsgError, ProofRequest, ProofTarget,
    RemoteClient, RequestCost, Resume, Status, StatusError, TxLookup, TxState, TxStatusEntry,
    codes, keys, limits,
};

const CLIENT_STATUS: [u8; 174] = hex!(
    "f8acd18f70726f746f636f6c56657273696f6e04cb896e6574776f726b496401c886686561645464
     80ea886865616448617368a000000000000000000000000000000000000000000000000000000000
     00000000c987686561644e756d80ed8b67656e6573697348617368a0d4e56740f876aef8c010b86a
     40d5f56745a118d0906a34e69aec8c0db1cb8fa3d286666f726b4944ca84c376cf8b846930b057ce
     8c616e6e6f756e63655479706502"
);

const SERVER_STATUS: [u8; 389] = hex!(
    "f90182d18f70726f746f636f6c56657273696f6e04cb896e6574776f726b496401d2866865616454
     648a0c70d815d562d3cfa955ea886865616448617368a08371d7ce39a84aaaf59ba23ba00e5f6186
     8db2543bb3089f73712c4fedce5d6ccc87686561644e756d83bc614eed8b67656e65736973486173
     68a0d4e56740f876aef8c010b86a40d5f56745a118d0906a34e69aec8c0db1cb8fa3d286666f726b
     4944ca84c376cf8b846930b057ce8c73657276654865616465727380d18f7365727665436861696e
     53696e636580d18f7365727665537461746553696e636580d2907365727665526563656e74537461
     74657cc987747852656c617980d08e726563656e7454784c6f6f6b757080d48e666c6f77436f6e74
     726f6c2f424c8405b8d800d38f666c6f77436f6e74726f6c2f4d5252823e80f84c8f666c6f77436f
     6e74726f6c2f4d5243f83ac802830493e082ea60c6048083155cc0c60680831e8480c60a80830dbb
     a0c60f8083124f80c61180831e8480c61380830dbba0c614808307a120"
);

const SIGNED_ANNOUNCE: [u8; 127] = hex!(
    "f87da08371d7ce39a84aaaf59ba23ba00e5f61868db2543bb3089f73712c4fedce5d6c83bc614e8a0c70d815d562d3cfa95580
     f84af848847369676eb841fcfe4bcddbcb4e06ae695c323d3fd13faddbec4720a0e0b76d42d6931dca297f3bffd1171565e958
     9e572bcc1cea1b86d219b484c94704c753b99a06d58c2bca00"
);

const HEAD_HASH: B256 = b256!("8371d7ce39a84aaaf59ba23ba00e5f61868db2543bb3089f73712c4fedce5d6c");
const HEAD_NUMBER: u64 = 12_345_678;
const PRAGUE_TIME: u64 = 1_746_612_311;

fn head_td() -> U256 {
    U256::from_be_slice(&hex!("0c70d815d562d3cfa955"))
}

fn prague_fork_id() -> ForkId {
    ForkId { hash: hex!("c376cf8b"), next: 1_764_798_551 }
}

fn local(schedule: &ForkSchedule, version: LesVersion) -> LocalStatus<'_> {
    LocalStatus {
        version,
        network_id: 1,
        fork_schedule: schedule,
        head_number: 22_500_000,
        head_time: PRAGUE_TIME + 1000,
    }
}

/// geth's default server cost table (research §5.4).
fn default_costs() -> Vec<RequestCost> {
    [
        (0x02, 300_000, 60_000),
        (0x04, 0, 1_400_000),
        (0x06, 0, 2_000_000),
        (0x0a, 0, 900_000),
        (0x0f, 0, 1_200_000),
        (0x11, 0, 2_000_000),
        (0x13, 0, 900_000),
        (0x14, 0, 500_000),
    ]
    .into_iter()
    .map(|(code, base_cost, request_cost)| RequestCost { code, base_cost, request_cost })
    .collect()
}

fn server_status(schedule: &ForkSchedule) -> Status {
    let mut status = local(schedule, LesVersion::Les4).status();
    status.head_td = Some(head_td());
    status.head_hash = Some(HEAD_HASH);
    status.head_number = Some(HEAD_NUMBER);
    status.serve_headers = true;
    status.serve_chain_since = Some(0);
    status.serve_state_since = Some(0);
    status.serve_recent_state = Some(124);
    status.tx_relay = true;
    status.recent_tx_lookup = Some(0);
    status.buffer_limit = Some(96_000_000);
    status.min_recharge = Some(16_000);
    status.request_costs = Some(default_costs());
    status
}

fn client_status(schedule: &ForkSchedule) -> Status {
    let mut status = local(schedule, LesVersion::Les4).status();
    status.announce_type = Some(AnnounceType::Signed);
    status
}

fn decode(version: LesVersion, code: u64, payload: &[u8]) -> Result<LesMessage, MsgError> {
    LesMessage::decode(version, code, payload)
}

// ---------------------------------------------------------------------------------------
// Status vectors

#[test]
fn client_status_vector_encodes_and_decodes() {
    let schedule = ForkSchedule::mainnet();
    let status = client_status(&schedule);
    assert_eq!(status.fork_id, Some(prague_fork_id()));
    let message = LesMessage::Status(Box::new(status));
    assert_eq!(message.encode(), CLIENT_STATUS);
    assert_eq!(decode(LesVersion::Les4, codes::STATUS, &CLIENT_STATUS), Ok(message));
}

#[test]
fn server_status_vector_encodes_and_decodes() {
    let schedule = ForkSchedule::mainnet();
    let message = LesMessage::Status(Box::new(server_status(&schedule)));
    assert_eq!(message.encode(), SERVER_STATUS);
    assert_eq!(decode(LesVersion::Les4, codes::STATUS, &SERVER_STATUS), Ok(message));
}

#[test]
fn status_values_are_raw_items() {
    let kv = KvList::decode(&SERVER_STATUS).unwrap();
    assert_eq!(kv.get_raw(keys::FORK_ID), Some(&hex!("ca84c376cf8b846930b057")[..]));
    assert_eq!(
        kv.get_raw(keys::FLOW_CONTROL_MRC),
        Some(
            &hex!(
                "f83ac802830493e082ea60c6048083155cc0c60680831e8480c60a80830dbba0c60f8083124f80c61180831e8480c61380830dbba0c614808307a120"
            )[..]
        )
    );
    assert_eq!(kv.get_raw(keys::SERVE_HEADERS), Some(&hex!("80")[..]));
    assert!(kv.accounted_size() < 100_000);
}

// ---------------------------------------------------------------------------------------
// Status validation

#[test]
fn client_accepts_the_vector_server() {
    let schedule = ForkSchedule::mainnet();
    let status = Status::decode(&SERVER_STATUS).unwrap();
    let server = status.validate_from_server(&local(&schedule, LesVersion::Les4), false).unwrap();
    assert_eq!(
        (server.head_hash, server.head_number, server.head_td),
        (HEAD_HASH, HEAD_NUMBER, head_td())
    );
    assert!(!server.announce_only);
    assert_eq!((server.buffer_limit, server.min_recharge), (96_000_000, 16_000));
    assert_eq!(server.request_costs, default_costs());
}

#[test]
fn server_classifies_the_vector_client_and_servers() {
    let schedule = ForkSchedule::mainnet();
    let local = local(&schedule, LesVersion::Les4);
    let client = Status::decode(&CLIENT_STATUS).unwrap();
    assert_eq!(
        client.validate_from_client(&local),
        Ok(RemoteClient::LightClient { announce_type: AnnounceType::Signed })
    );
    let mut default_client = client.clone();
    default_client.announce_type = None;
    assert_eq!(
        default_client.validate_from_client(&local),
        Ok(RemoteClient::LightClient { announce_type: AnnounceType::Simple })
    );
    let server = Status::decode(&SERVER_STATUS).unwrap();
    assert_eq!(server.validate_from_client(&local), Ok(RemoteClient::Server));
}

#[test]
fn common_checks_refuse_other_chains_and_versions() {
    let schedule = ForkSchedule::mainnet();
    let local4 = local(&schedule, LesVersion::Les4);
    let good = Status::decode(&CLIENT_STATUS).unwrap();

    let mut status = good.clone();
    status.genesis_hash = B256::repeat_byte(1);
    assert_eq!(
        status.validate_from_client(&local4),
        Err(StatusError::GenesisMismatch {
            expected: MAINNET_GENESIS_HASH,
            received: B256::repeat_byte(1)
        })
    );

    let mut status = good.clone();
    status.network_id = 5;
    assert_eq!(
        status.validate_from_client(&local4),
        Err(StatusError::NetworkIdMismatch { expected: 1, received: 5 })
    );

    // A les/4 Status on a connection negotiated as les/3.
    assert_eq!(
        good.validate_from_client(&local(&schedule, LesVersion::Les3)),
        Err(StatusError::ProtocolVersionMismatch { expected: 3, received: 4 })
    );

    let mut status = good.clone();
    status.fork_id = None;
    assert_eq!(
        status.validate_from_client(&local4),
        Err(StatusError::MissingKey { key: "forkID" })
    );

    let mut status = good.clone();
    status.fork_id = Some(ForkId { hash: hex!("12345678"), next: 0 });
    assert_eq!(
        status.validate_from_client(&local4),
        Err(StatusError::ForkId(ForkIdError::LocalIncompatibleOrStale))
    );

    // On les/3 the fork ID is neither required nor checked.
    let mut status = good;
    status.protocol_version = 3;
    status.fork_id = None;
    assert!(status.validate_from_client(&local(&schedule, LesVersion::Les3)).is_ok());
}

#[test]
fn client_refuses_incomplete_servers() {
    let schedule = ForkSchedule::mainnet();
    let local4 = local(&schedule, LesVersion::Les4);
    let good = server_status(&schedule);
    let missing = |key| Err(StatusError::MissingKey { key });

    let mut status = good.clone();
    status.head_td = None;
    assert_eq!(status.validate_from_server(&local4, true), missing("headTd"));

    let mut status = good.clone();
    status.head_number = None;
    assert_eq!(status.validate_from_server(&local4, true), missing("headNum"));

    let mut status = good.clone();
    status.recent_tx_lookup = None;
    assert_eq!(status.validate_from_server(&local4, false), missing("recentTxLookup"));

    let mut status = good.clone();
    status.min_recharge = None;
    assert_eq!(status.validate_from_server(&local4, false), missing("flowControl/MRR"));

    let mut status = good.clone();
    status.request_costs = Some(default_costs().into_iter().filter(|c| c.code != 0x14).collect());
    assert_eq!(
        status.validate_from_server(&local4, false),
        Err(StatusError::MissingRequestCost { code: 0x14 })
    );

    // Costs for codes outside the version are ignored, a repeated code keeps the last.
    let mut status = good.clone();
    let mut costs = default_costs();
    costs.push(RequestCost { code: 0x30, base_cost: 1, request_cost: 1 });
    costs.push(RequestCost { code: 0x02, base_cost: 7, request_cost: 8 });
    status.request_costs = Some(costs);
    let server = status.validate_from_server(&local4, false).unwrap();
    assert_eq!(server.request_costs.len(), 8);
    assert_eq!(server.request_costs[0], RequestCost { code: 0x02, base_cost: 7, request_cost: 8 });
}

#[test]
fn announce_only_servers_need_trust() {
    let schedule = ForkSchedule::mainnet();
    let local4 = local(&schedule, LesVersion::Les4);
    for strip in [
        (|s: &mut Status| s.tx_relay = false) as fn(&mut Status),
        |s| s.serve_chain_since = None,
        |s| s.serve_state_since = None,
    ] {
        let mut status = server_status(&schedule);
        strip(&mut status);
        // An announce-only server need not list costs for every request.
        status.request_costs = Some(Vec::new());
        assert_eq!(status.validate_from_server(&local4, false), Err(StatusError::UselessPeer));
        let server = status.validate_from_server(&local4, true).unwrap();
        assert!(server.announce_only);
    }
}

#[test]
fn recent_tx_lookup_is_optional_before_les4() {
    let schedule = ForkSchedule::mainnet();
    let mut status = server_status(&schedule);
    status.protocol_version = 3;
    status.fork_id = None;
    status.recent_tx_lookup = None;
    assert!(status.validate_from_server(&local(&schedule, LesVersion::Les3), false).is_ok());
}

#[test]
fn status_decoding_requirements() {
    // Every role needs protocolVersion, networkId and genesisHash.
    let mut kv = KvList::decode(&CLIENT_STATUS).unwrap();
    kv.remove(keys::NETWORK_ID);
    assert_eq!(
        Status::decode(&alloy_rlp::encode(&kv)),
        Err(MsgError::Status(StatusError::MissingKey { key: "networkId" }))
    );
    // A known key with a malformed value.
    let mut kv = KvList::decode(&CLIENT_STATUS).unwrap();
    kv.insert(keys::HEAD_HASH, &B256::ZERO.as_slice()[..31].to_vec());
    assert!(matches!(
        Status::decode(&alloy_rlp::encode(&kv)),
        Err(MsgError::Rlp { context: "headHash", .. })
    ));
    let mut kv = KvList::decode(&CLIENT_STATUS).unwrap();
    kv.insert(keys::ANNOUNCE_TYPE, &3u64);
    assert_eq!(
        Status::decode(&alloy_rlp::encode(&kv)),
        Err(MsgError::UnknownValue { context: "announceType", value: 3 })
    );
}

#[test]
fn status_keeps_unknown_keys_and_lets_the_last_duplicate_win() {
    let mut kv = KvList::decode(&SERVER_STATUS).unwrap();
    kv.insert("checkpoint/registerHeight", &12u64);
    let with_extra = alloy_rlp::encode(&kv);
    let status = Status::decode(&with_extra).unwrap();
    assert_eq!(status.other.get::<u64>("checkpoint/registerHeight"), Ok(Some(12)));
    assert_eq!(alloy_rlp::encode(&status), with_extra);

    // A repeated key: the later value is the one typed, and the list re-encodes exactly.
    let entries = &CLIENT_STATUS[2..];
    let again = hex!("ce 8c616e6e6f756e636554797065 01");
    let mut payload = Vec::new();
    Header { list: true, payload_length: entries.len() + again.len() }.encode(&mut payload);
    payload.extend_from_slice(entries);
    payload.extend_from_slice(&again);
    let status = Status::decode(&payload).unwrap();
    assert_eq!(status.announce_type, Some(AnnounceType::Simple));
    assert_eq!(alloy_rlp::encode(KvList::decode(&payload).unwrap()), payload);
}

#[test]
fn oversized_status_list_is_refused() {
    let mut kv = KvList::decode(&CLIENT_STATUS).unwrap();
    kv.insert("padding", &vec![0u8; 100_000].as_slice());
    let payload = alloy_rlp::encode(&kv);
    assert!(matches!(
        decode(LesVersion::Les4, codes::STATUS, &payload),
        Err(MsgError::Status(StatusError::TooLarge { size })) if size > 100_000
    ));
}

// ---------------------------------------------------------------------------------------
// Announce

#[test]
fn signed_announce_vector() {
    let sig = hex!(
        "fcfe4bcddbcb4e06ae695c323d3fd13faddbec4720a0e0b76d42d6931dca297f
         3bffd1171565e9589e572bcc1cea1b86d219b484c94704c753b99a06d58c2bca00"
    );
    let message = decode(LesVersion::Les4, codes::ANNOUNCE, &SIGNED_ANNOUNCE).unwrap();
    let LesMessage::Announce(announce) = &message else { panic!("not an Announce: {message:?}") };
    assert_eq!(announce.head_hash, HEAD_HASH);
    assert_eq!(announce.head_number, HEAD_NUMBER);
    assert_eq!(announce.head_td, head_td());
    assert_eq!(announce.reorg_depth, 0);
    assert!(!announce.is_parameter_update());
    assert!(announce.head_td_within_limit());
    assert_eq!(announce.signature(), Ok(Some(sig)));
    assert_eq!(message.encode(), SIGNED_ANNOUNCE);

    // Built from its parts, the unsigned announcement plus the signature gives the same bytes.
    let unsigned = Announce {
        head_hash: HEAD_HASH,
        head_number: HEAD_NUMBER,
        head_td: head_td(),
        reorg_depth: 0,
        params: KvList::new(),
    };
    assert_eq!(unsigned.signature(), Ok(None));
    assert_eq!(alloy_rlp::encode(unsigned.with_signature(&sig)), SIGNED_ANNOUNCE);

    // The vector's signature covers keccak256(rlp([hash, number, td])) and recovers to the
    // node ID the research lists (EIP-8 static key B).
    let mut signed = Vec::new();
    let payload_length = HEAD_HASH.length() + HEAD_NUMBER.length() + head_td().length();
    Header { list: true, payload_length }.encode(&mut signed);
    HEAD_HASH.encode(&mut signed);
    HEAD_NUMBER.encode(&mut signed);
    head_td().encode(&mut signed);
    let prehash = keccak256(&signed);
    assert_eq!(prehash, b256!("56d566d5171d0092e5582c92a90f6f3f3ce74e708d085f71e05e743b2ebba937"));
    assert_eq!(
        les::crypto::recover_node_id(&prehash, &sig).unwrap(),
        b256!("a448f24c6d18e575453db13171562b71999873db5b286df957af199ec94617f7")
    );
}

// ---------------------------------------------------------------------------------------
// Request/reply examples

#[test]
fn get_block_headers_example() {
    let payload = hex!("c701c56481c08080");
    let message = decode(LesVersion::Les2, codes::GET_BLOCK_HEADERS, &payload).unwrap();
    let expected = GetBlockHeaders {
        request_id: 1,
        origin: 100u64.into(),
        max_headers: 192,
        skip: 0,
        reverse: false,
    };
    assert_eq!(message, LesMessage::GetBlockHeaders(expected.clone()));
    assert_eq!(message.encode(), payload);
    assert_eq!(message.request_id(), Some(1));

    // By hash, reverse.
    let by_hash = GetBlockHeaders { origin: HEAD_HASH.into(), reverse: true, ..expected };
    let encoded = LesMessage::GetBlockHeaders(by_hash.clone()).encode();
    let mut expected_bytes = hex!("e7 01 e5 a0").to_vec();
    expected_bytes.extend_from_slice(HEAD_HASH.as_slice());
    expected_bytes.extend_from_slice(&hex!("81c0 80 01"));
    assert_eq!(encoded, expected_bytes);
    assert_eq!(GetBlockHeaders::decode(&encoded), Ok(by_hash));
}

#[test]
fn helper_trie_example() {
    let payload = hex!("d207d0cf808201f4880000000000fa00058002");
    let request = les::msg::GetHelperTrieProofs {
        request_id: 7,
        requests: vec![HelperTrieRequest::cht_with_header(500, 16_384_005)],
    };
    let message = LesMessage::GetHelperTrieProofs(request);
    assert_eq!(message.encode(), payload);
    assert_eq!(decode(LesVersion::Les4, codes::GET_HELPER_TRIE_PROOFS, &payload), Ok(message));
}

#[test]
fn tx_status_examples() {
    let unknown = TxStatusEntry { status: TxState::Unknown, lookup: None, error: String::new() };
    assert_eq!(alloy_rlp::encode(&unknown), hex!("c380c080"));

    let block_hash = B256::repeat_byte(0xab);
    let included = TxStatusEntry {
        status: TxState::Included,
        lookup: Some(TxLookup { block_hash, block_number: 15_537_393, index: 7 }),
        error: String::new(),
    };
    let mut included_bytes = hex!("e9 03 e6 a0").to_vec();
    included_bytes.extend_from_slice(block_hash.as_slice());
    included_bytes.extend_from_slice(&hex!("83ed14f1 07 80"));
    assert_eq!(alloy_rlp::encode(&included), included_bytes);

    // The whole reply: [reqID 9, BV 1000, [unknown, included]].
    let reply = les::msg::TxStatus {
        request_id: 9,
        buffer_value: 1000,
        statuses: vec![unknown.clone(), included.clone()],
    };
    let mut payload = Vec::new();
    let entries_length = 4 + included_bytes.len();
    let mut body = hex!("09 8203e8").to_vec();
    Header { list: true, payload_length: entries_length }.encode(&mut body);
    body.extend_from_slice(&hex!("c380c080"));
    body.extend_from_slice(&included_bytes);
    Header { list: true, payload_length: body.len() }.encode(&mut payload);
    payload.extend_from_slice(&body);
    let message = LesMessage::TxStatus(reply);
    assert_eq!(message.encode(), payload);
    assert_eq!(decode(LesVersion::Les2, codes::TX_STATUS, &payload), Ok(message));
}

#[test]
fn tx_status_two_element_entries_are_understood() {
    // [1, 2, [[0, "nonce too low"], [3, rlp([hash, 5, 1]) as a string], [3, [hash, 5, 1]], [2, ""]]]
    let hash = B256::repeat_byte(0x11);
    let lookup = TxLookup { block_hash: hash, block_number: 5, index: 1 };
    let lookup_rlp = alloy_rlp::encode(lookup);
    let mut entries = Vec::new();
    let entry = |fields: &[&dyn Encodable], out: &mut Vec<u8>| {
        let payload_length = fields.iter().map(|f| f.length()).sum();
        Header { list: true, payload_length }.encode(out);
        for f in fields {
            f.encode(out);
        }
    };
    entry(&[&0u64, &"nonce too low".as_bytes()], &mut entries);
    entry(&[&3u64, &lookup_rlp.as_slice()], &mut entries);
    entry(&[&3u64, &lookup], &mut entries);
    entry(&[&2u64, &"".as_bytes()], &mut entries);
    let mut body = hex!("01 02").to_vec();
    Header { list: true, payload_length: entries.len() }.encode(&mut body);
    body.extend_from_slice(&entries);
    let mut payload = Vec::new();
    Header { list: true, payload_length: body.len() }.encode(&mut payload);
    payload.extend_from_slice(&body);

    let Ok(LesMessage::TxStatus(reply)) = decode(LesVersion::Les4, codes::TX_STATUS, &payload)
    else {
        panic!("two-element entries refused")
    };
    let statuses: Vec<_> =
        reply.statuses.iter().map(|s| (s.status, s.lookup, s.error.as_str())).collect();
    assert_eq!(
        statuses,
        [
            (TxState::Unknown, None, "nonce too low"),
            (TxState::Included, Some(lookup), ""),
            (TxState::Included, Some(lookup), ""),
            (TxState::Pending, None, ""),
        ]
    );
}

#[test]
fn stop_and_resume() {
    assert_eq!(LesMessage::Stop.encode(), hex!("c0"));
    assert_eq!(decode(LesVersion::Les3, codes::STOP, &hex!("c0")), Ok(LesMessage::Stop));
    assert!(matches!(
        decode(LesVersion::Les3, codes::STOP, &hex!("c180")),
        Err(MsgError::WrongElementCount { expected: 0, found: 1, .. })
    ));
    let resume = LesMessage::Resume(Resume { buffer_value: 96_000_000 });
    assert_eq!(resume.encode(), hex!("8405b8d800"));
    assert_eq!(decode(LesVersion::Les4, codes::RESUME, &hex!("8405b8d800")), Ok(resume.clone()));
    // The spec's list form is accepted too.
    assert_eq!(decode(LesVersion::Les4, codes::RESUME, &hex!("c58405b8d800")), Ok(resume.clone()));
    assert_eq!(resume.buffer_value(), Some(96_000_000));
    assert!(decode(LesVersion::Les4, codes::RESUME, &hex!("c0")).is_err());
    assert!(decode(LesVersion::Les4, codes::RESUME, &hex!("c28080")).is_err());
}

#[test]
fn account_keys_of_every_geth_generation() {
    let address = Address::repeat_byte(0x42);
    let block_hash = B256::repeat_byte(1);
    let storage = ProofRequest::storage(block_hash, address, B256::with_last_byte(3));
    // Our key forms: the address and the raw slot (see ProofRequest's docs).
    assert_eq!(storage.account, AccountKey::Address(address));
    assert_eq!(storage.key.as_ref(), B256::with_last_byte(3).as_slice());
    assert_eq!(
        storage.target(),
        Some(ProofTarget::Storage { address, slot: B256::with_last_byte(3) })
    );
    let account = ProofRequest::account(block_hash, address);
    assert_eq!(account.account, AccountKey::AccountTrie);
    assert_eq!(account.key.as_ref(), address.as_slice());
    assert_eq!(account.target(), Some(ProofTarget::Account(address)));
    let by_account_key = ProofRequest { key: Bytes::new(), ..storage.clone() };
    assert_eq!(by_account_key.target(), Some(ProofTarget::Account(address)));
    // geth's hashed account key names nothing we can prove.
    let hashed_account = ProofRequest { key: keccak256(address).into(), ..account.clone() };
    assert_eq!(hashed_account.target(), None);

    // geth <= v1.12.0 sends keccak256(address): understood as Hashed.
    let legacy =
        ProofRequest { account: AccountKey::Hashed(keccak256(address)), ..storage.clone() };
    assert_eq!(legacy.target(), None);
    let request = les::msg::GetProofsV2 { request_id: 3, requests: vec![account, storage, legacy] };
    let message = LesMessage::GetProofsV2(request);
    let payload = message.encode();
    assert_eq!(decode(LesVersion::Les2, codes::GET_PROOFS_V2, &payload), Ok(message));
    assert_eq!(
        AccountKey::Address(address).hashed(),
        AccountKey::Hashed(keccak256(address)).hashed()
    );

    // Any other length is refused.
    let mut entry = Vec::new();
    block_hash.encode(&mut entry);
    [0x42u8; 21].encode(&mut entry);
    let mut entries = Vec::new();
    Header { list: true, payload_length: entry.len() }.encode(&mut entries);
    entries.extend_from_slice(&entry);
    let mut body = vec![0x03];
    Header { list: true, payload_length: entries.len() }.encode(&mut body);
    body.extend_from_slice(&entries);
    let mut payload = Vec::new();
    Header { list: true, payload_length: body.len() }.encode(&mut payload);
    payload.extend_from_slice(&body);
    assert_eq!(
        decode(LesVersion::Les2, codes::GET_CONTRACT_CODES, &payload),
        Err(MsgError::InvalidLength { context: "GetContractCodes entry accountKey", found: 21 })
    );
}

// ---------------------------------------------------------------------------------------
// Limits

#[test]
fn request_limits() {
    let headers = |max_headers| {
        LesMessage::GetBlockHeaders(GetBlockHeaders {
            request_id: 1,
            origin: 0u64.into(),
            max_headers,
            skip: 0,
            reverse: false,
        })
    };
    for (max_headers, ok) in [(0, false), (1, true), (192, true), (193, false)] {
        let message = headers(max_headers);
        let request = message.as_request().unwrap();
        assert_eq!(request.item_count(), max_headers);
        assert_eq!(request.max_items(), limits::MAX_HEADER_FETCH);
        assert_eq!(request.within_limits(), ok, "{max_headers}");
    }
    for (count, ok) in [(256, true), (257, false)] {
        let message = LesMessage::GetTxStatus(GetTxStatus {
            request_id: 1,
            tx_hashes: vec![B256::ZERO; count],
        });
        let request = message.as_request().unwrap();
        assert_eq!(
            (request.code(), request.item_count(), request.within_limits()),
            (codes::GET_TX_STATUS, count as u64, ok)
        );
    }
    assert!(LesMessage::Stop.as_request().is_none());
}

// ---------------------------------------------------------------------------------------
// Refusals

#[test]
fn refuses_trailing_bytes() {
    assert_eq!(
        decode(LesVersion::Les4, codes::GET_BLOCK_HEADERS, &hex!("c701c56481c0808000")),
        Err(MsgError::TrailingBytes { context: "GetBlockHeaders", extra: 1 })
    );
    assert!(matches!(
        decode(LesVersion::Les4, codes::RESUME, &hex!("8405b8d80001")),
        Err(MsgError::TrailingBytes { extra: 1, .. })
    ));
}

#[test]
fn refuses_non_canonical_integers() {
    use alloy_rlp::Error::{LeadingZero, NonCanonicalSingleByte};
    let cases: [(&[u8], alloy_rlp::Error); 5] = [
        // reqID 5 as `81 05`.
        (&hex!("c8 8105 c56481c08080"), NonCanonicalSingleByte),
        // reqID with a leading zero byte.
        (&hex!("c9 820001 c56481c08080"), LeadingZero),
        // reqID 0 as `00`.
        (&hex!("c7 00 c56481c08080"), LeadingZero),
        // maxHeaders with a leading zero.
        (&hex!("c8 01 c6648200c08080"), LeadingZero),
        // reverse as `00`.
        (&hex!("c7 01 c56481c08000"), LeadingZero),
    ];
    for (payload, expected) in cases {
        match decode(LesVersion::Les4, codes::GET_BLOCK_HEADERS, payload) {
            Err(MsgError::Rlp { source, .. }) => assert_eq!(source, expected, "{payload:x?}"),
            other => panic!("{payload:x?}: {other:?}"),
        }
    }
    // reverse = 2 is not a bool.
    assert!(matches!(
        decode(LesVersion::Les4, codes::GET_BLOCK_HEADERS, &hex!("c701c56481c08002")),
        Err(MsgError::Rlp { context: "GetBlockHeaders reverse", .. })
    ));
    // A BV with a leading zero in a reply.
    assert!(matches!(
        decode(LesVersion::Les4, codes::BLOCK_HEADERS, &hex!("c5 01 820005 c0")),
        Err(MsgError::Rlp { context: "BlockHeaders BV", source: LeadingZero })
    ));
}

#[test]
fn refuses_wrong_shapes() {
    let wrong_count = |payload: &[u8], code| match decode(LesVersion::Les4, code, payload) {
        Err(MsgError::WrongElementCount { expected, found, .. }) => (expected, found),
        other => panic!("{payload:x?}: {other:?}"),
    };
    // Query with 3 elements, request frame with 3, reply frame with 2.
    assert_eq!(wrong_count(&hex!("c601c46481c080"), codes::GET_BLOCK_HEADERS), (4, 3));
    assert_eq!(wrong_count(&hex!("c801c56481c0808001"), codes::GET_BLOCK_HEADERS), (2, 3));
    assert_eq!(wrong_count(&hex!("c201c0"), codes::BLOCK_HEADERS), (3, 2));
    // HelperTrieProofs body must be [[nodes], [aux]].
    assert_eq!(wrong_count(&hex!("c40102c1c0"), codes::HELPER_TRIE_PROOFS), (2, 1));
    // A TxStatus entry of 4 elements.
    assert_eq!(wrong_count(&hex!("c80102c5c480c08080"), codes::TX_STATUS), (3, 4));
    // A Status entry of 3 elements.
    assert_eq!(wrong_count(&hex!("c4c3808080"), codes::STATUS), (2, 3));

    // Origin of 9 bytes; origin as a list.
    assert_eq!(
        decode(
            LesVersion::Les4,
            codes::GET_BLOCK_HEADERS,
            &hex!("d0 01 ce 89010203040506070809 81c0 80 80")
        ),
        Err(MsgError::InvalidLength { context: "GetBlockHeaders origin", found: 9 })
    );
    assert_eq!(
        decode(LesVersion::Les4, codes::GET_BLOCK_HEADERS, &hex!("c701c5c081c08080")),
        Err(MsgError::ExpectedString { context: "GetBlockHeaders origin" })
    );
    // A header that is a string, a code that is a list, a 31-byte hash.
    assert_eq!(
        decode(LesVersion::Les4, codes::BLOCK_HEADERS, &hex!("c50102c28180")),
        Err(MsgError::ExpectedList { context: "BlockHeaders header" })
    );
    assert_eq!(
        decode(LesVersion::Les4, codes::CONTRACT_CODES, &hex!("c40102c1c0")),
        Err(MsgError::ExpectedString { context: "ContractCodes code" })
    );
    let mut short_hash = hex!("e2 01 e0 9f").to_vec();
    short_hash.extend_from_slice(&[7; 31]);
    assert!(matches!(
        decode(LesVersion::Les4, codes::GET_BLOCK_BODIES, &short_hash),
        Err(MsgError::Rlp { context: "GetBlockBodies hash", .. })
    ));
    // A TxStatus with state 5.
    assert_eq!(
        decode(LesVersion::Les4, codes::TX_STATUS, &hex!("c70102c4c305c080")),
        Err(MsgError::UnknownValue { context: "TxStatus entry status", value: 5 })
    );
    // A request body that is a string; an empty payload.
    assert_eq!(
        decode(LesVersion::Les4, codes::GET_RECEIPTS, &hex!("c20180")),
        Err(MsgError::ExpectedList { context: "GetReceipts hashes" })
    );
    assert!(matches!(
        decode(LesVersion::Les4, codes::GET_RECEIPTS, &[]),
        Err(MsgError::Rlp { .. })
    ));
    // A list whose declared length runs past the input.
    assert!(matches!(
        decode(LesVersion::Les4, codes::GET_RECEIPTS, &hex!("c701c0")),
        Err(MsgError::Rlp { source: alloy_rlp::Error::InputTooShort, .. })
    ));
}

#[test]
fn refuses_codes_outside_the_version() {
    let unknown = |version, code| Err(MsgError::UnknownCode { version, code });
    for code in [
        codes::GET_PROOFS_V1,
        codes::PROOFS_V1,
        codes::SEND_TX_V1,
        codes::GET_HEADER_PROOFS_V1,
        codes::HEADER_PROOFS_V1,
        0x18,
        0xff,
    ] {
        assert_eq!(decode(LesVersion::Les4, code, &hex!("c0")), unknown(LesVersion::Les4, code));
    }
    assert_eq!(
        decode(LesVersion::Les2, codes::STOP, &hex!("c0")),
        unknown(LesVersion::Les2, codes::STOP)
    );
    assert_eq!(
        decode(LesVersion::Les2, codes::RESUME, &hex!("8405b8d800")),
        unknown(LesVersion::Les2, codes::RESUME)
    );
}

#[test]
fn refuses_oversized_payloads_before_parsing() {
    let payload = vec![0u8; MAX_MESSAGE_SIZE + 1];
    assert_eq!(
        decode(LesVersion::Les4, codes::BLOCK_HEADERS, &payload),
        Err(MsgError::TooLarge { size: MAX_MESSAGE_SIZE + 1 })
    );
    // Just under the limit, a well-formed reply is accepted.
    let mut reply = BlockHeaders { request_id: 1, buffer_value: 2, headers: Vec::new() };
    let big_item = {
        let body_len = MAX_MESSAGE_SIZE - 16;
        let mut item = Vec::with_capacity(body_len + 4);
        Header { list: true, payload_length: body_len }.encode(&mut item);
        item.resize(item.len() + body_len, 0x80);
        Bytes::from(item)
    };
    reply.headers.push(big_item);
    let payload = LesMessage::BlockHeaders(reply.clone()).encode();
    assert!(payload.len() <= MAX_MESSAGE_SIZE);
    assert_eq!(
        decode(LesVersion::Les4, codes::BLOCK_HEADERS, &payload),
        Ok(LesMessage::BlockHeaders(reply))
    );
}

#[test]
fn contract_codes_are_byte_strings() {
    let reply = ContractCodes {
        request_id: 4,
        buffer_value: 5,
        codes: vec![Bytes::from_static(&[0x60, 0x00]), Bytes::new()],
    };
    let message = LesMessage::ContractCodes(reply);
    assert_eq!(message.encode(), hex!("c7 04 05 c4 826000 80"));
    assert_eq!(decode(LesVersion::Les4, codes::CONTRACT_CODES, &message.encode()), Ok(message));
}
