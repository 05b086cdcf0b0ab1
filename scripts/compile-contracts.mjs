#!/usr/bin/env node
// Compiles contracts/DemoToken.sol with the solc pinned in package.json (npm `solc`, a wasm
// build, so no system compiler is involved) and writes contracts/artifacts/DemoToken.json.
//
// The artifact is committed so the devnet needs no compiler at run time; `--check` recompiles
// and exits non-zero when the committed artifact differs, so CI notices a stale artifact or a
// compiler that is not the pinned one.
//
//   node scripts/compile-contracts.mjs          # (re)write the artifact
//   node scripts/compile-contracts.mjs --check  # verify the committed artifact

import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

/** The contract this script builds and where its artifact lives. */
export const CONTRACT = 'DemoToken';
export const SOURCE_PATH = 'contracts/DemoToken.sol';
export const ARTIFACT_PATH = 'contracts/artifacts/DemoToken.json';

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

/** Compiles the contract and returns the artifact text exactly as it is committed. */
export function compileArtifact() {
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
    // Warnings count too: a demo contract has no excuse for them.
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
  const fresh = compileArtifact();
  const target = join(root, ARTIFACT_PATH);
  if (check) {
    let committed;
    try {
      committed = readFileSync(target, 'utf8');
    } catch (err) {
      console.error(`${ARTIFACT_PATH} is missing (${err.code}): run \`make contracts\``);
      process.exit(1);
    }
    if (committed !== fresh) {
      console.error(`${ARTIFACT_PATH} differs from a fresh compile of ${SOURCE_PATH}: run \`make contracts\` and commit`);
      process.exit(1);
    }
    console.log(`${ARTIFACT_PATH} matches a fresh compile`);
    return;
  }
  mkdirSync(dirname(target), { recursive: true });
  writeFileSync(target, fresh);
  console.log(`wrote ${ARTIFACT_PATH}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    main();
  } catch (err) {
    console.error(err.message);
    process.exit(1);
  }
}
