// Builds strategy.js into <package name>.wasm, a component of conclave's
// `strategy` world: `npm install && npm run build`.
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { componentize } from '@bytecodealliance/componentize-js';

const here = dirname(fileURLToPath(import.meta.url));
const { name } = JSON.parse(await readFile(join(here, 'package.json'), 'utf8'));
const witPath = resolve(process.env.CONCLAVE_WIT_DIR ?? join(here, 'wit'));
const out = join(here, `${name.split('/').pop()}.wasm`);

const { component } = await componentize({
  sourcePath: join(here, 'strategy.js'),
  witPath,
  worldName: 'strategy',
  // conclave's strategy sandbox has no network: no fetch, no HTTP handler.
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(out, component);
console.log(`wrote ${out} (${(component.length / 1e6).toFixed(1)} MB)`);
