// Compiles infra/contracts/*.sol with solc-js (pinned in package.json), offline,
// resolving imports from node_modules. Usage: node compile.js <contracts dir> <out dir>
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const [contractsDir, outDir] = process.argv.slice(2);
const sources = {};
for (const name of fs.readdirSync(contractsDir).filter((f) => f.endsWith(".sol"))) {
  sources[name] = { content: fs.readFileSync(path.join(contractsDir, name), "utf8") };
}
const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "paris",
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};
function findImports(importPath) {
  const candidate = path.join(__dirname, "node_modules", importPath);
  if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, "utf8") };
  return { error: `not found: ${importPath}` };
}
const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}
fs.mkdirSync(outDir, { recursive: true });
for (const file of Object.keys(sources)) {
  for (const [name, artifact] of Object.entries(output.contracts[file])) {
    const out = { contractName: name, compiler: solc.version(), abi: artifact.abi,
                  bytecode: "0x" + artifact.evm.bytecode.object };
    fs.writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify(out, null, 2));
    console.log(`compiled ${name} with solc ${solc.version()}`);
  }
}
