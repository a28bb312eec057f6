// Prints what a first visit downloads: the built JS and CSS, raw and gzip-compressed (level 9, as served).
import { readdirSync, readFileSync } from "node:fs";
import { gzipSync, constants } from "node:zlib";

const assets = new URL("../dist/assets/", import.meta.url).pathname;
let raw = 0;
let gzip = 0;
for (const name of readdirSync(assets).sort()) {
  if (!/\.(js|css)$/.test(name)) continue;
  const bytes = readFileSync(assets + name);
  const packed = gzipSync(bytes, { level: constants.Z_BEST_COMPRESSION }).length;
  raw += bytes.length;
  gzip += packed;
  console.log(`${name.padEnd(28)} ${String(bytes.length).padStart(8)} B  ${String(packed).padStart(7)} B gzip`);
}
console.log(`${"JS + CSS".padEnd(28)} ${String(raw).padStart(8)} B  ${String(gzip).padStart(7)} B gzip (${(gzip / 1024).toFixed(1)} KiB)`);
