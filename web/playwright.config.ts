import { defineConfig } from "@playwright/test";

/**
 * End-to-end tests in real headless Chromium against a real stack (NATS, PostgreSQL, auth API, persister and two
 * gateways on free ports), started by e2e/global-setup.ts. Playwright cannot download its own browsers here:
 * it drives the system's Chromium (`NATTER_CHROMIUM`, default /usr/bin/chromium).
 */
export default defineConfig({
  testDir: "e2e",
  testMatch: "**/*.spec.ts",
  globalSetup: "./e2e/global-setup.ts",
  globalTeardown: "./e2e/global-teardown.ts",
  // The tests kill and restart the shared gateways: one at a time.
  workers: 1,
  fullyParallel: false,
  timeout: 90_000,
  expect: { timeout: 10_000 },
  retries: 0,
  reporter: [["list"], ["json", { outputFile: "test-results/e2e.json" }]],
  use: {
    viewport: { width: 1280, height: 800 },
    trace: "retain-on-failure",
    launchOptions: {
      executablePath: process.env.NATTER_CHROMIUM ?? "/usr/bin/chromium",
      // Root cannot use Chromium's sandbox; the rest keeps it off a network it cannot reach.
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
      ],
    },
  },
});
