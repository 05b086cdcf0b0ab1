// Types of the ulc-light-client package (index.js): an EIP-1193 provider backed by the ulc
// light client in WebAssembly, and the EIP-6963 announcement helper.

/** One trusted LES server: its enode URL (the trust anchor) and the bridge that reaches it. */
export interface ServerConfig {
  /** `enode://<128 hex public key>@host:port`. */
  enode: string;
  /** `ws://bridge/host:port` (devnet.json's `bridgeUrl` is accepted too). */
  bridge?: string;
  bridgeUrl?: string;
  /** Counts towards the ULC quorum (default true). Untrusted servers only serve data. */
  trusted?: boolean;
}

export interface ProviderConfig {
  /** EIP-155 chain ID (number, bigint, or a decimal or 0x-hex string). */
  chainId: number | bigint | string;
  /** Genesis block hash; may be left out for mainnet. */
  genesisHash?: string;
  servers: ServerConfig[];
  /** Percent of trusted servers that must sign a head (default 75). */
  fraction?: number;
  /** Where state is kept (default "indexeddb": a reload resumes at once). */
  storage?: 'indexeddb' | 'memory';
  /** Paying servers for capacity above the free tier (default: free service only). */
  payment?: PaymentConfig;
}

/** What `ulc_setPaymentPolicy` takes (amounts as 0x-hex wei strings). */
export interface PaymentPolicy {
  /** The most wei signed over in all channels together. */
  budgetWei: string;
  /** The most wei signed over within any hour (at most budgetWei). */
  maxSpendWeiPerHour?: string;
  /** Capacity wanted from each paid server (cost units per ms; 1000000 = one thread). */
  targetCapacity: number;
  /** How many of the best servers to pay (default 1), or their node IDs. */
  servers?: number | string[];
  /** Pay when the balance would last less than this many seconds (default 60). */
  lowBalanceSecs?: number;
  /** Each payment buys this many seconds at the target capacity (default 600). */
  topUpSecs?: number;
}

/**
 * How channels are funded: `key` or `wallet`, not both. Either way each channel's cheques are
 * signed by a session key the client generates for it and keeps in its store (the channel's
 * on-chain `signer`); refunds always go to the funding account.
 */
export interface PaymentConfig {
  /**
   * A HOT key (0x + 64 hex secret) that funds channels (`ulc_openChannel`) without asking
   * anyone: fund it with only the deposits you mean to put at risk.
   */
  key?: string;
  /**
   * An EIP-1193 wallet (e.g. `window.ethereum`) whose account funds each channel: the client
   * asks it for the account (`eth_requestAccounts`) and for one `eth_sendTransaction` per
   * `ulc_openChannel`, then verifies the receipt itself. It is never asked to sign cheques.
   */
  wallet?: EIP1193Provider;
  /** The policy to follow from the start; `ulc_setPaymentPolicy` changes it later. */
  policy?: PaymentPolicy;
}

export interface RequestArguments {
  readonly method: string;
  readonly params?: readonly unknown[] | object;
}

/** EIP-1193 error: integer code, message, optional data. */
export class ProviderRpcError extends Error {
  constructor(code: number, message: string, data?: unknown);
  code: number;
  data?: unknown;
}

export interface ProviderConnectInfo {
  readonly chainId: string;
}

export interface ProviderMessage {
  readonly type: string;
  readonly data: unknown;
}

export interface EthSubscription extends ProviderMessage {
  readonly type: 'eth_subscription';
  readonly data: {
    readonly subscription: string;
    readonly result: unknown;
  };
}

export interface ProviderEvents {
  connect: (info: ProviderConnectInfo) => void;
  disconnect: (error: ProviderRpcError) => void;
  chainChanged: (chainId: string) => void;
  accountsChanged: (accounts: string[]) => void;
  message: (message: EthSubscription) => void;
}

/** An EIP-1193 provider. */
export interface EIP1193Provider {
  request(args: RequestArguments): Promise<unknown>;
  on<E extends keyof ProviderEvents>(event: E, listener: ProviderEvents[E]): this;
  removeListener<E extends keyof ProviderEvents>(event: E, listener: ProviderEvents[E]): this;
}

/** The provider createProvider returns (frozen). */
export interface UlcProvider extends EIP1193Provider {
  readonly isUlc: true;
  addListener<E extends keyof ProviderEvents>(event: E, listener: ProviderEvents[E]): this;
  once<E extends keyof ProviderEvents>(event: E, listener: ProviderEvents[E]): this;
  off<E extends keyof ProviderEvents>(event: E, listener: ProviderEvents[E]): this;
  removeAllListeners(event?: keyof ProviderEvents): this;
  listenerCount(event: keyof ProviderEvents): number;
  /** The client's metrics with environment figures (what `ulc_metrics` answers). */
  metrics(): Promise<Record<string, unknown>>;
  /** Disconnects every server; later requests fail with 4900. */
  close(): void;
}

/**
 * Starts a light client and returns its provider. Rejects if the configuration is wrong or
 * the store cannot be opened; `connect` fires once a head is accepted.
 */
export function createProvider(config: ProviderConfig): Promise<UlcProvider>;

/** EIP-6963 provider info. */
export interface EIP6963ProviderInfo {
  readonly uuid: string;
  readonly name: string;
  readonly icon: string;
  readonly rdns: string;
}

export interface EIP6963ProviderDetail {
  readonly info: EIP6963ProviderInfo;
  readonly provider: EIP1193Provider;
}

/** The provider icon: a 96×96 SVG data URI. */
export const ULC_ICON: string;

/**
 * Announces `provider` with EIP-6963 now and on every `eip6963:requestProvider`; returns a
 * function that stops re-announcing.
 */
export function announceEip6963(provider: EIP1193Provider, info?: Partial<EIP6963ProviderInfo>): () => void;

declare global {
  interface WindowEventMap {
    'eip6963:announceProvider': CustomEvent<EIP6963ProviderDetail>;
    'eip6963:requestProvider': Event;
  }
}
