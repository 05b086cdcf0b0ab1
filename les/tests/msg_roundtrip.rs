//! Property tests: every LES message variant round-trips through encode/decode, and the
//! decoder only ever accepts the one canonical encoding of a value.

use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_rlp::Header;
use les::msg::*;
use proptest::collection::vec;
use proptest::prelude::*;

fn b256() -> impl Strategy<Value = B256> {
    any::<[u8; 32]>().prop_map(B256::from)
}

fn u256() -> impl Strategy<Value = U256> {
    any::<[u8; 32]>().prop_map(U256::from_be_bytes)
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

/// A byte-string item, encoded.
fn string_item() -> impl Strategy<Value = Bytes> {
    bytes(70).prop_map(|b| Bytes::from(alloy_rlp::encode(b.as_ref())))
}

/// A list item of string items, encoded.
fn list_item() -> impl Strategy<Value = Bytes> {
    vec(string_item(), 0..4).prop_map(|items| {
        let payload_length = items.iter().map(|i| i.len()).sum();
        let mut out = Vec::new();
        Header { list: true, payload_length }.encode(&mut out);
        for item in items {
            out.extend_from_slice(&item);
        }
        Bytes::from(out)
    })
}

fn any_item() -> impl Strategy<Value = Bytes> {
    prop_oneof![string_item(), list_item()]
}

/// Keys that are none of the typed Status keys.
fn kv_list() -> impl Strategy<Value = KvList> {
    vec(("x[a-zA-Z/]{0,12}", any_item()), 0..4).prop_map(|entries| {
        let mut list = KvList::new();
        for (key, value) in entries {
            list.insert_raw(&key, value).unwrap();
        }
        list
    })
}

fn status() -> impl Strategy<Value = Status> {
    let head = (
        any::<u64>(),
        any::<u64>(),
        b256(),
        proptest::option::of(u256()),
        proptest::option::of(b256()),
        proptest::option::of(any::<u64>()),
    );
    let fork = (
        proptest::option::of(
            (any::<[u8; 4]>(), any::<u64>()).prop_map(|(hash, next)| ForkId { hash, next }),
        ),
        proptest::option::of(prop_oneof![
            Just(AnnounceType::None),
            Just(AnnounceType::Simple),
            Just(AnnounceType::Signed)
        ]),
    );
    let serve = (
        any::<bool>(),
        any::<bool>(),
        std::array::from_fn::<_, 5, _>(|_| proptest::option::of(any::<u64>())),
    );
    let flow = (
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(vec((any::<u64>(), any::<u64>(), any::<u64>()), 0..10)),
    );
    (head, fork, serve, flow, kv_list()).prop_map(
        |(
            (version, network, genesis, td, hash, number),
            (fork_id, announce),
            (headers, relay, numbers),
            (bl, mrr, mrc),
            other,
        )| {
            let [chain_since, recent_chain, state_since, recent_state, tx_lookup] = numbers;
            Status {
                protocol_version: version,
                network_id: network,
                head_td: td,
                head_hash: hash,
                head_number: number,
                genesis_hash: genesis,
                fork_id,
                announce_type: announce,
                serve_headers: headers,
                serve_chain_since: chain_since,
                serve_recent_chain: recent_chain,
                serve_state_since: state_since,
                serve_recent_state: recent_state,
                tx_relay: relay,
                recent_tx_lookup: tx_lookup,
                buffer_limit: bl,
                min_recharge: mrr,
                request_costs: mrc.map(|costs| {
                    costs
                        .into_iter()
                        .map(|(code, base_cost, request_cost)| RequestCost {
                            code,
                            base_cost,
                            request_cost,
                        })
                        .collect()
                }),
                other,
            }
        },
    )
}

fn account_key() -> impl Strategy<Value = AccountKey> {
    prop_oneof![
        Just(AccountKey::AccountTrie),
        any::<[u8; 20]>().prop_map(|a| AccountKey::Address(Address::from(a))),
        b256().prop_map(AccountKey::Hashed),
    ]
}

fn tx_status_entry() -> impl Strategy<Value = TxStatusEntry> {
    let state = (0u64..5).prop_map(|v| TxState::from_value(v).unwrap());
    let lookup = proptest::option::of((b256(), any::<u64>(), any::<u64>()).prop_map(
        |(block_hash, block_number, index)| TxLookup { block_hash, block_number, index },
    ));
    (state, lookup, ".{0,20}").prop_map(|(status, lookup, error)| TxStatusEntry {
        status,
        lookup,
        error,
    })
}

fn message() -> impl Strategy<Value = LesMessage> {
    let id = any::<u64>;
    prop_oneof![
        status().prop_map(|s| LesMessage::Status(Box::new(s))),
        (b256(), any::<u64>(), u256(), any::<u64>(), kv_list()).prop_map(
            |(head_hash, head_number, head_td, reorg_depth, params)| {
                LesMessage::Announce(Announce {
                    head_hash,
                    head_number,
                    head_td,
                    reorg_depth,
                    params,
                })
            }
        ),
        (
            id(),
            prop_oneof![b256().prop_map(Into::into), any::<u64>().prop_map(Into::into)],
            any::<u64>(),
            any::<u64>(),
            any::<bool>()
        )
            .prop_map(|(request_id, origin, max_headers, skip, reverse)| {
                LesMessage::GetBlockHeaders(GetBlockHeaders {
                    request_id,
                    origin,
                    max_headers,
                    skip,
                    reverse,
                })
            }),
        (id(), id(), vec(list_item(), 0..4)).prop_map(|(request_id, buffer_value, headers)| {
            LesMessage::BlockHeaders(BlockHeaders { request_id, buffer_value, headers })
        }),
        (id(), vec(b256(), 0..4)).prop_map(
            |(request_id, block_hashes)| LesMessage::GetBlockBodies(GetBlockBodies {
                request_id,
                block_hashes
            })
        ),
        (id(), id(), vec(list_item(), 0..4)).prop_map(|(request_id, buffer_value, bodies)| {
            LesMessage::BlockBodies(BlockBodies { request_id, buffer_value, bodies })
        }),
        (id(), vec(b256(), 0..4)).prop_map(|(request_id, block_hashes)| LesMessage::GetReceipts(
            GetReceipts { request_id, block_hashes }
        )),
        (id(), id(), vec(vec(any_item(), 0..3), 0..3)).prop_map(
            |(request_id, buffer_value, receipts)| {
                LesMessage::Receipts(Receipts { request_id, buffer_value, receipts })
            }
        ),
        (id(), vec((b256(), account_key()), 0..4)).prop_map(|(request_id, entries)| {
            let requests = entries
                .into_iter()
                .map(|(block_hash, account)| CodeRequest { block_hash, account })
                .collect();
            LesMessage::GetContractCodes(GetContractCodes { request_id, requests })
        }),
        (id(), id(), vec(bytes(100), 0..4)).prop_map(|(request_id, buffer_value, codes)| {
            LesMessage::ContractCodes(ContractCodes { request_id, buffer_value, codes })
        }),
        (id(), vec((b256(), account_key(), bytes(40), any::<u64>()), 0..4)).prop_map(
            |(request_id, entries)| {
                let requests = entries
                    .into_iter()
                    .map(|(block_hash, account, key, from_level)| ProofRequest {
                        block_hash,
                        account,
                        key,
                        from_level,
                    })
                    .collect();
                LesMessage::GetProofsV2(GetProofsV2 { request_id, requests })
            }
        ),
        (id(), id(), vec(any_item(), 0..5)).prop_map(|(request_id, buffer_value, nodes)| {
            LesMessage::ProofsV2(ProofsV2 { request_id, buffer_value, nodes })
        }),
        (id(), vec((any::<u64>(), any::<u64>(), bytes(10), any::<u64>(), any::<u64>()), 0..4))
            .prop_map(|(request_id, entries)| {
                let requests = entries
                    .into_iter()
                    .map(|(trie_type, section_index, key, from_level, aux_request)| {
                        HelperTrieRequest { trie_type, section_index, key, from_level, aux_request }
                    })
                    .collect();
                LesMessage::GetHelperTrieProofs(GetHelperTrieProofs { request_id, requests })
            }),
        (id(), id(), vec(any_item(), 0..4), vec(bytes(80), 0..3)).prop_map(
            |(request_id, buffer_value, nodes, aux_data)| {
                LesMessage::HelperTrieProofs(HelperTrieProofs {
                    request_id,
                    buffer_value,
                    nodes,
                    aux_data,
                })
            }
        ),
        (id(), vec(any_item(), 0..4)).prop_map(|(request_id, transactions)| LesMessage::SendTxV2(
            SendTxV2 { request_id, transactions }
        )),
        (id(), vec(b256(), 0..4)).prop_map(|(request_id, tx_hashes)| LesMessage::GetTxStatus(
            GetTxStatus { request_id, tx_hashes }
        )),
        (id(), id(), vec(tx_status_entry(), 0..4)).prop_map(
            |(request_id, buffer_value, statuses)| {
                LesMessage::TxStatus(TxStatus { request_id, buffer_value, statuses })
            }
        ),
        Just(LesMessage::Stop),
        id().prop_map(|buffer_value| LesMessage::Resume(Resume { buffer_value })),
    ]
}

/// Codes whose decoder accepts exactly one encoding per value (Status re-orders keys,
/// TxStatus and ResumeMsg also accept the spec's alternative forms).
fn has_unique_encoding(code: u64) -> bool {
    !matches!(code, codes::STATUS | codes::TX_STATUS | codes::RESUME)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_variant_round_trips(message in message()) {
        let payload = message.encode();
        let decoded = LesMessage::decode(LesVersion::Les4, message.code(), &payload);
        prop_assert_eq!(decoded.as_ref(), Ok(&message));
        prop_assert_eq!(decoded.unwrap().encode(), payload);
    }

    #[test]
    fn mutated_payloads_never_panic_and_stay_canonical(
        message in message(),
        position in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        mode in 0u8..3,
    ) {
        let mut payload = message.encode();
        let index = position.index(payload.len());
        match mode {
            0 => payload[index] = byte,
            1 => payload.truncate(index),
            _ => payload.insert(index, byte),
        }
        let decoded = LesMessage::decode(LesVersion::Les4, message.code(), &payload);
        if let Ok(decoded) = decoded
            && has_unique_encoding(message.code())
        {
            prop_assert_eq!(decoded.encode(), payload);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(code in 0u64..0x20, payload in vec(any::<u8>(), 0..200)) {
        let _ = LesMessage::decode(LesVersion::Les4, code, &payload);
        let _ = LesMessage::decode(LesVersion::Les2, code, &payload);
    }
}
