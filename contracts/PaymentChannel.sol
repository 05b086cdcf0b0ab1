// SPDX-License-Identifier: MIT
// Unidirectional ETH payment channels for paid LES service (research note §7.2, wire.md): a
// client (payer) locks a deposit for one server (payee) and pays it off-chain with EIP-712
// cheques for a cumulative amount; the payee redeems the highest cheque before expiry, the
// payer reclaims what is left after it. One contract holds every channel. No imports, so the
// pinned solc alone compiles it.
//
// Cheques are signed by the channel's `signer`, which the payer names at `open` and which
// need not be the payer: a wallet account funds the channel with one approved transaction,
// and a session key the client holds signs the many cheques no user could approve one by
// one. The signer can only ever give away the deposit to the payee; refunds always go to the
// payer, and only the payer may extend or reclaim.
pragma solidity 0.8.37;

/// @title PaymentChannel
/// @notice Many unidirectional ETH channels, each paid by signed cumulative cheques.
contract PaymentChannel {
    /// @dev Field order fixes the storage layout, which off-chain code may prove with
    /// eth_getProof: keep it. Four slots: payer, payee, deposit|paidOut (low|high 16 bytes),
    /// expiry|closed|signer (bytes 0-7, 8, 9-28 from the low end). The signer is packed into
    /// the last slot rather than given a fifth, so `open` writes no more slots than before.
    struct Channel {
        address payer;
        address payee;
        uint128 deposit;
        uint128 paidOut;
        uint64 expiry;
        bool closed;
        address signer;
    }

    bytes32 public constant CHEQUE_TYPEHASH =
        keccak256("Cheque(bytes32 channelId,address payee,uint256 cumulativeAmount)");
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("LesPaymentChannel");
    bytes32 private constant VERSION_HASH = keccak256("1");
    /// @dev secp256k1n / 2: a larger s is the malleable twin of a valid signature.
    uint256 private constant HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    /// @notice Shortest lifetime `open` accepts, in seconds. A constructor argument rather than a
    /// literal so one source serves both mainnet (days) and the devnet (seconds).
    uint64 public immutable MIN_LIFETIME;

    // The separator is cached for the deployment chain and recomputed after a fork changes
    // block.chainid, so a cheque can never be replayed on the other side of the fork.
    uint256 private immutable CACHED_CHAIN_ID;
    bytes32 private immutable CACHED_DOMAIN_SEPARATOR;

    /// @notice Every channel ever opened. Records are never deleted (only marked closed), so an
    /// id cannot come back to life with a fresh deposit under old cheques.
    mapping(bytes32 => Channel) public channels;
    /// @notice Channels each payer has opened so far; part of the next channel id.
    mapping(address => uint64) public nonces;

    bool private transient entered;

    /// @dev `signer` is not indexed: three topics are taken, and who looks for a channel looks
    /// by payer or payee.
    event Opened(
        bytes32 indexed id, address indexed payer, address indexed payee, uint256 deposit, uint64 expiry, address signer
    );
    /// @dev `deposit` is the channel's total deposit after the top-up.
    event ToppedUp(bytes32 indexed id, uint256 deposit);
    event Extended(bytes32 indexed id, uint64 expiry);
    /// @dev `paidOut` is the channel's total paid out so far, not this payment.
    event Redeemed(bytes32 indexed id, uint256 paidOut);
    /// @dev Emitted by `close` and by `reclaim`; paidOut + refund == the final deposit.
    event Closed(bytes32 indexed id, uint256 paidOut, uint256 refund);

    error ZeroMinLifetime();
    error ZeroDeposit();
    error InvalidPayee(address payee);
    error InvalidSigner(address signer);
    error ExpiryTooSoon(uint64 expiry, uint256 earliest);
    error DepositOverflow(uint256 deposit);
    error UnknownChannel(bytes32 id);
    error ChannelClosed(bytes32 id);
    error ChannelExpired(bytes32 id, uint64 expiry);
    error ChannelNotExpired(bytes32 id, uint64 expiry);
    error NotPayer(address caller);
    error NotPayee(address caller);
    error ExpiryNotLater(uint64 newExpiry, uint64 expiry);
    error NothingToRedeem(uint256 amount, uint256 paidOut);
    error InvalidSignatureLength(uint256 length);
    error InvalidSignatureV(uint8 v);
    error InvalidSignatureS(bytes32 s);
    error WrongSigner(address recovered, address signer);
    error TransferFailed(address to, uint256 amount);
    error Reentrancy();

    modifier nonReentrant() {
        if (entered) revert Reentrancy();
        entered = true;
        _;
        entered = false;
    }

    constructor(uint64 minLifetime) {
        if (minLifetime == 0) revert ZeroMinLifetime();
        MIN_LIFETIME = minLifetime;
        CACHED_CHAIN_ID = block.chainid;
        CACHED_DOMAIN_SEPARATOR = _domainSeparator();
    }

    /// @notice Opens a channel from msg.sender to `payee` holding msg.value until `expiry`,
    /// paid by cheques that `signer` signs (msg.sender itself, or a key it delegates to).
    function open(address payee, address signer, uint64 expiry) external payable returns (bytes32 id) {
        if (msg.value == 0) revert ZeroDeposit();
        if (payee == msg.sender || payee == address(0)) revert InvalidPayee(payee);
        // ecrecover yields address(0) for an invalid signature: a zero signer would accept it.
        if (signer == address(0)) revert InvalidSigner(signer);
        uint256 earliest = block.timestamp + MIN_LIFETIME;
        if (expiry < earliest) revert ExpiryTooSoon(expiry, earliest);
        if (msg.value > type(uint128).max) revert DepositOverflow(msg.value);
        id = keccak256(abi.encode(block.chainid, address(this), msg.sender, payee, nonces[msg.sender]++));
        channels[id] = Channel({
            payer: msg.sender,
            payee: payee,
            deposit: uint128(msg.value),
            paidOut: 0,
            expiry: expiry,
            closed: false,
            signer: signer
        });
        emit Opened(id, msg.sender, payee, msg.value, expiry, signer);
    }

    /// @notice Adds msg.value to an open, unexpired channel's deposit. Anyone may fund it; what
    /// is not paid out goes back to the payer.
    function topUp(bytes32 id) external payable {
        Channel storage c = _live(id);
        if (msg.value == 0) revert ZeroDeposit();
        uint256 deposit = uint256(c.deposit) + msg.value;
        if (deposit > type(uint128).max) revert DepositOverflow(deposit);
        c.deposit = uint128(deposit);
        emit ToppedUp(id, deposit);
    }

    /// @notice Moves a channel's expiry later; payer only.
    function extend(bytes32 id, uint64 newExpiry) external {
        Channel storage c = _existing(id);
        if (c.closed) revert ChannelClosed(id);
        if (msg.sender != c.payer) revert NotPayer(msg.sender);
        if (newExpiry <= c.expiry) revert ExpiryNotLater(newExpiry, c.expiry);
        c.expiry = newExpiry;
        emit Extended(id, newExpiry);
    }

    /// @notice Pays the payee up to `cumulative` (capped at the deposit) minus what it already
    /// received. Anyone may submit the cheque; the money always goes to the payee.
    function redeem(bytes32 id, uint256 cumulative, bytes calldata sig) external nonReentrant {
        Channel storage c = _live(id);
        uint256 amount = _capped(c, cumulative);
        uint256 paid = c.paidOut;
        if (amount <= paid) revert NothingToRedeem(amount, paid);
        _verify(id, c, cumulative, sig);
        c.paidOut = uint128(amount);
        emit Redeemed(id, amount);
        _send(c.payee, amount - paid);
    }

    /// @notice Payee only: redeems the cheque, refunds the rest to the payer and closes the
    /// channel. A payee with nothing more to claim may pass a cumulative at or below paidOut
    /// (e.g. 0 with an empty signature): then no signature is checked and it only gives up
    /// what it could no longer claim anyway.
    function close(bytes32 id, uint256 cumulative, bytes calldata sig) external nonReentrant {
        Channel storage c = _live(id);
        if (msg.sender != c.payee) revert NotPayee(msg.sender);
        uint256 amount = _capped(c, cumulative);
        uint256 paid = c.paidOut;
        if (amount > paid) {
            _verify(id, c, cumulative, sig);
        } else {
            amount = paid;
        }
        uint256 refund = uint256(c.deposit) - amount;
        c.paidOut = uint128(amount);
        c.closed = true;
        emit Closed(id, amount, refund);
        if (amount > paid) _send(c.payee, amount - paid);
        if (refund > 0) _send(c.payer, refund);
    }

    /// @notice Payer only, at or after expiry: refunds deposit - paidOut and closes the channel.
    function reclaim(bytes32 id) external nonReentrant {
        Channel storage c = _existing(id);
        if (c.closed) revert ChannelClosed(id);
        if (msg.sender != c.payer) revert NotPayer(msg.sender);
        if (block.timestamp < c.expiry) revert ChannelNotExpired(id, c.expiry);
        uint256 paid = c.paidOut;
        uint256 refund = uint256(c.deposit) - paid;
        c.closed = true;
        emit Closed(id, paid, refund);
        if (refund > 0) _send(c.payer, refund);
    }

    /// @notice The EIP-712 digest the channel's signer signs for a cheque.
    function chequeDigest(bytes32 id, address payee, uint256 cumulative) public view returns (bytes32) {
        bytes32 structHash = keccak256(abi.encode(CHEQUE_TYPEHASH, id, payee, cumulative));
        return keccak256(abi.encodePacked(hex"1901", DOMAIN_SEPARATOR(), structHash));
    }

    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() public view returns (bytes32) {
        return block.chainid == CACHED_CHAIN_ID ? CACHED_DOMAIN_SEPARATOR : _domainSeparator();
    }

    function _domainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    function _existing(bytes32 id) private view returns (Channel storage c) {
        c = channels[id];
        if (c.payer == address(0)) revert UnknownChannel(id);
    }

    /// @dev A channel that exists, is not closed and has not expired.
    function _live(bytes32 id) private view returns (Channel storage c) {
        c = _existing(id);
        if (c.closed) revert ChannelClosed(id);
        if (block.timestamp >= c.expiry) revert ChannelExpired(id, c.expiry);
    }

    function _capped(Channel storage c, uint256 cumulative) private view returns (uint256) {
        uint256 deposit = c.deposit;
        return cumulative < deposit ? cumulative : deposit;
    }

    /// @dev Reverts unless `sig` is the channel signer's low-s, v ∈ {27,28} signature of the
    /// cheque.
    function _verify(bytes32 id, Channel storage c, uint256 cumulative, bytes calldata sig) private view {
        if (sig.length != 65) revert InvalidSignatureLength(sig.length);
        bytes32 r = bytes32(sig[0:32]);
        bytes32 s = bytes32(sig[32:64]);
        uint8 v = uint8(sig[64]);
        if (v != 27 && v != 28) revert InvalidSignatureV(v);
        if (uint256(s) > HALF_ORDER) revert InvalidSignatureS(s);
        address signer = c.signer;
        address recovered = ecrecover(chequeDigest(id, c.payee, cumulative), v, r, s);
        // ecrecover gives address(0) for an invalid signature; `open` never stores a zero
        // signer, but say so.
        if (recovered == address(0) || recovered != signer) revert WrongSigner(recovered, signer);
    }

    function _send(address to, uint256 amount) private {
        (bool ok,) = payable(to).call{value: amount}("");
        if (!ok) revert TransferFailed(to, amount);
    }
}
