// Builds the web app: bundles src/main.js and its CSS with esbuild into
// dist/assets/app-[hash].js and .css, and writes dist/index.html from
// src/index.html with the hashed paths filled in. dist/.gitignore is kept.
//
//   node build.mjs           minified production build
//   node build.mjs --dev     unminified, with inline source maps
import { build } from 'esbuild';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, 'dist');
const assets = join(dist, 'assets');
const dev = process.argv.includes('--dev');

// The element the Go server fills with the page's configuration.
const CONFIG_ELEMENT = '<script id="tg-config" type="application/json">__TG_CONFIG__</script>';

async function main() {
  const template = await readFile(join(root, 'src', 'index.html'), 'utf8');
  if (template.split(CONFIG_ELEMENT).length !== 2) {
    throw new Error('src/index.html must hold the config element exactly once: ' + CONFIG_ELEMENT);
  }

  // Only the build's own outputs go: dist/.gitignore (and anything else
  // beside assets/) stays.
  await mkdir(assets, { recursive: true });
  for (const name of await readdir(assets)) {
    if (name === '.gitignore') continue;
    await rm(join(assets, name), { recursive: true, force: true });
  }

  const result = await build({
    absWorkingDir: root,
    entryPoints: { app: 'src/main.js' },
    bundle: true,
    format: 'esm',
    splitting: false,
    minify: !dev,
    sourcemap: dev ? 'inline' : false,
    target: 'es2020',
    outdir: assets,
    entryNames: '[name]-[hash]',
    assetNames: '[name]-[hash]',
    loader: { '.png': 'file', '.svg': 'file' },
    metafile: true,
    legalComments: 'none',
    logLevel: 'warning',
    define: { 'process.env.NODE_ENV': dev ? '"development"' : '"production"' },
  });

  let js = '';
  let css = '';
  for (const [file, out] of Object.entries(result.metafile.outputs)) {
    if (!out.entryPoint) continue;
    if (file.endsWith('.js')) js = file;
    if (out.cssBundle) css = out.cssBundle;
  }
  if (!js || !css) throw new Error('esbuild gave no app JS or CSS bundle');

  const url = (file) => '/' + relative(dist, join(root, file)).split('\\').join('/');
  const html = template
    .replace('<!--app-css-->', `<link rel="stylesheet" href="${url(css)}">`)
    .replace('<!--app-js-->', `<script type="module" src="${url(js)}"></script>`);
  if (html.includes('<!--app-')) throw new Error('src/index.html has an unknown asset placeholder');
  await writeFile(join(dist, 'index.html'), html);

  const rows = [];
  let totalRaw = 0;
  let totalGzip = 0;
  for (const name of (await readdir(assets)).sort()) {
    const body = await readFile(join(assets, name));
    const gz = gzipSync(body, { level: 9 }).length;
    totalRaw += body.length;
    totalGzip += gz;
    rows.push([name, body.length, gz]);
  }
  rows.push(['index.html', Buffer.byteLength(html), gzipSync(html, { level: 9 }).length]);
  const kb = (n) => (n / 1024).toFixed(1).padStart(7) + ' KiB';
  const width = Math.max(...rows.map((r) => r[0].length));
  console.log(`${'file'.padEnd(width)}     raw          gzip`);
  for (const [name, raw, gz] of rows) console.log(`${name.padEnd(width)} ${kb(raw)} ${kb(gz)}`);
  console.log(`${'assets total'.padEnd(width)} ${kb(totalRaw)} ${kb(totalGzip)}`);
  console.log(`built ${basename(js)} and ${basename(css)} into dist/${dev ? ' (dev)' : ''}`);
}

main().catch((err) => {
  console.error(err.message || err);
  process.exit(1);
});
