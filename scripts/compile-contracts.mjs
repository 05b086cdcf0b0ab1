#!/usr/bin/env node
// Compiles the contracts in contracts/ (DemoToken, PaymentChannel) with the solc pinned in
// package.json (npm `solc`, a wasm build, so no system compiler is involved) and writes
// contracts/artifacts/<Name>.json for each.
//
// The artifacts are committed so the devnet and the tests need no compiler at run time;
// `--check` recompiles and exits non-zero when a committed artifact differs, so CI notices a
// stale artifact or a compiler that is not the pinned one.
//
//   node scripts/compile-contracts.mjs          # (re)write the artifacts
//   node scripts/compile-contracts.mjs --check  # verify the committed artifacts

import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

/**
 * The contracts this script builds and where their artifacts live. Each is compiled on its own
 * (one source per solc run), so adding a contract cannot change another one's metadata hash
 * and thus its bytecode.
 */
export const CONTRACTS = ['DemoToken', 'PaymentChannel'].map((name) => ({
  name,
  source: `contracts/${name}.sol`,
  artifact: `contracts/artifacts/${name}.json`,
}));

// Fixed compiler settings: part of the artifact, so a change shows up in `--check`.
// evmVersion is pinned rather than left to the compiler default so that a solc bump alone
// cannot emit opcodes the devnet's anvil hardfork lacks.
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: 'cancun',
  outputSelection: {
    '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object', 'evm.methodIdentifiers', 'storageLayout'] },
  },
};

/** Compiles one of CONTRACTS and returns its artifact text exactly as it is committed. */
export function compileArtifact({ name: CONTRACT, source: SOURCE_PATH } = CONTRACTS[0]) {
  const solc = require('solc');
  const pinned = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).devDependencies.solc;
  const version = solc.version();
  if (!version.startsWith(`${pinned}+`)) {
    throw new Error(`solc ${version} is not the pinned ${pinned}: run scripts/setup.sh`);
  }
  const source = readFileSync(join(root, SOURCE_PATH), 'utf8');
  const input = { language: 'Solidity', sources: { [SOURCE_PATH]: { content: source } }, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const problems = (output.errors ?? []).filter((e) => e.severity === 'error' || e.type === 'Warning');
  if (problems.length > 0) {
    // Warnings count too: contracts this small have no excuse for them.
    throw new Error(`solc reported:\n${problems.map((e) => e.formattedMessage).join('\n')}`);
  }
  const contract = output.contracts?.[SOURCE_PATH]?.[CONTRACT];
  if (!contract) throw new Error(`solc produced no ${CONTRACT} in ${SOURCE_PATH}`);
  const storage = contract.storageLayout.storage.map(({ label, slot, offset }) => ({ label, slot, offset }));
  const artifact = {
    contractName: CONTRACT,
    source: SOURCE_PATH,
    solcVersion: version,
    settings: { optimizer: SETTINGS.optimizer, evmVersion: SETTINGS.evmVersion },
    abi: contract.abi,
    // Selectors straight from the compiler, so scripts need no keccak of their own.
    methodIdentifiers: contract.evm.methodIdentifiers,
    bytecode: `0x${contract.evm.bytecode.object}`,
    deployedBytecode: `0x${contract.evm.deployedBytecode.object}`,
    storageLayout: storage,
  };
  return `${JSON.stringify(artifact, null, 2)}\n`;
}

function main() {
  const check = process.argv.includes('--check');
  let stale = 0;
  for (const contract of CONTRACTS) {
    const fresh = compileArtifact(contract);
    const target = join(root, contract.artifact);
    if (!check) {
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, fresh);
      console.log(`wrote ${contract.artifact}`);
      continue;
    }
    let committed;
    try {
      committed = readFileSync(target, 'utf8');
    } catch (err) {
      console.error(`${contract.artifact} is missing (${err.code}): run \`make contracts\``);
      stale++;
      continue;
    }
    if (committed !== fresh) {
      console.error(`${contract.artifact} differs from a fresh compile of ${contract.source}: run \`make contracts\` and commit`);
      stale++;
      continue;
    }
    console.log(`${contract.artifact} matches a fresh compile`);
  }
  if (stale > 0) process.exit(1);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    main();
  } catch (err) {
    console.error(err.message);
    process.exit(1);
  }
}
