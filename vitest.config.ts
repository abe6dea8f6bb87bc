import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30000,
    hookTimeout: 30000,
    // Tests that build network namespaces or start servers share machine-wide resources:
    // files run one at a time in CI to keep timing predictable on 2 cores.
    fileParallelism: !process.env.CI,
  },
});
