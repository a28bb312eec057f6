import { defineConfig } from "vitest/config";

// The app is plain TypeScript + Preact (JSX through esbuild's automatic runtime): no framework plugin needed.
export default defineConfig({
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    assetsInlineLimit: 0,
    sourcemap: false,
  },
  server: {
    // `npm run dev` against a stack from `./natter up`: the API (and the built-in client) on 8080.
    proxy: { "/api": "http://127.0.0.1:8080", "/.well-known": "http://127.0.0.1:8080" },
  },
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
  },
});
