// Builds critic.js into js-critic.wasm, a component of conclave's `strategy`
// world: `npm install && npm run build`.
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { componentize } from '@bytecodealliance/componentize-js';

const here = dirname(fileURLToPath(import.meta.url));
const { name } = JSON.parse(await readFile(join(here, 'package.json'), 'utf8'));
// The WIT of conclave's repository; CONCLAVE_WIT_DIR points elsewhere.
const witPath = resolve(process.env.CONCLAVE_WIT_DIR ?? join(here, '../../../wit'));
const out = join(here, `${name}.wasm`);

const { component } = await componentize({
  sourcePath: join(here, 'critic.js'),
  witPath,
  worldName: 'strategy',
  // conclave offers a strategy WASI without network: no fetch, no HTTP handler.
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(out, component);
console.log(`wrote ${out} (${(component.length / 1e6).toFixed(1)} MB)`);
