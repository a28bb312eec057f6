// Writes a .gz twin of every built JS, CSS, HTML and SVG file, which the auth API serves to clients that accept
// gzip (tower-http's precompressed files): compressed once at build time, never per request.
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync, constants } from "node:zlib";

const dist = new URL("../dist/", import.meta.url).pathname;

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

for (const file of walk(dist)) {
  if (!/\.(js|css|html|svg)$/.test(file)) continue;
  const gz = gzipSync(readFileSync(file), { level: constants.Z_BEST_COMPRESSION });
  writeFileSync(`${file}.gz`, gz);
}
