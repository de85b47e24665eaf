import { defineConfig } from "vite";

// The gateway embeds dist/ in the binary. During `npm run dev`, API calls go to a running
// `emberline up` (its web origin serves grpc-web).
export default defineConfig({
  build: {
    target: "es2022",
    outDir: "dist",
    emptyOutDir: true,
    reportCompressedSize: false,
    chunkSizeWarningLimit: 400,
  },
  server: {
    proxy: { "/emberline.v1.": "http://127.0.0.1:8080" },
  },
  test: {
    include: ["src/**/*.test.ts"],
  },
});
