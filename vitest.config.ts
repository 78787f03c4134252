import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    // Each file gets its own process (LibTorch's thread pool and RSS figures stay per file).
    pool: 'forks',
  },
});
