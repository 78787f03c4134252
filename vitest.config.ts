import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    setupFiles: ['test/worker-marker.ts'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    // Each file gets its own process (LibTorch's thread pool and RSS figures stay per file).
    pool: 'forks',
    // training runs in tests end without Sony's IMX500 toolchain (minutes a run); test/imx500-toolchain.test.ts turns it on
    env: { PENNY_IMX500: 'off' },
  },
});
