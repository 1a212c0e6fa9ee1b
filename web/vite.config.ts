import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// Served by voxgate at /ui/; the API is on the same origin under /v1.
export default defineConfig({
  base: "/ui/",
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
  server: { proxy: { "/v1": "http://127.0.0.1:8080" } },
});
